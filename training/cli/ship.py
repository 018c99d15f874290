"""Ship meta-trained learned optimizers into checkpoints/NAME with their headline
numbers (``lopt-ship``, or ``python scripts/ship_pretrained.py``).

    lopt-ship --results results/pretrained-cpu/results.json \
        --device_hours mulo-m=0.8 --device_hours mulo-s=0.17 \
        --description 'mulo-m=CPU-scale μLO_M: ...' \
        mulo-m=runs/mulo-m-cpu mulo-s=runs/mulo-s-cpu sp-lo=runs/sp-lo-cpu

Each NAME=WORKDIR is exported from the run's newest checkpoint (θ with orbax +
metadata.json); NAME=WORKDIR@STEP exports that checkpoint instead (the one a
screen chose, see scripts/screen_checkpoints.py; @0 is the untrained θ);
NAME=EXPORT re-ships an export such as WORKDIR/export_best (the
meta-validation pick, whose checkpoint may have been rotated away). The
evaluation numbers come from a ``scripts/evaluate.py`` results.json in which the optimizer was labelled NAME. Per suite they are its
average rank (by test loss), the fractions of tasks where it beat tuned AdamW's
test loss and final training loss, and per task its test and train losses,
test accuracy and max loss spike next to AdamW's. ``--label NAME=LABEL`` reads
them from the optimizer labelled LABEL instead (a candidate evaluated under its
own name, shipped under NAME).
"""

from __future__ import annotations

import argparse
import json
import os


def headline(results: dict, label: str) -> dict:
  out = {"source": "scripts/evaluate.py", "command": results.get("command"),
         "device": results.get("device"), "suites": {}}
  for suite, data in results["suites"].items():
    tasks, wins = {}, {"test_loss": 0, "final_train_loss": 0}
    for entry in data["tasks"]:
      mine, ref = entry["results"].get(label), entry["results"].get("adamw")
      if mine is None:
        continue
      keys = ("final_train_loss", "test_loss", "test_accuracy", "max_loss_spike")
      tasks[f"{entry['task']}@{entry['num_steps']}"] = {
          **{k: mine.get(k) for k in keys}, **{f"adamw_{k}": ref and ref.get(k) for k in keys}}
      for k in wins:  # None is a divergence: worse than anything finite
        wins[k] += bool(ref and mine[k] is not None and (ref[k] is None or mine[k] < ref[k]))
    if tasks:
      out["suites"][suite] = {
          "average_rank": data["summary"][label]["average_rank"],
          "num_optimizers": len(data["summary"]),
          "beats_tuned_adamw_test_loss_fraction": wins["test_loss"] / len(tasks),
          "beats_tuned_adamw_train_loss_fraction": wins["final_train_loss"] / len(tasks),
          "tasks": tasks}
  return out


def _reship(source: str, out_dir: str, evaluation: dict) -> str:
  """An export (e.g. WORKDIR/export_best, the meta-validation pick) re-saved to
  ``out_dir`` with its metadata plus ``evaluation``; θ and config as they are."""
  import lopt
  lo, theta = lopt.load_pretrained(source)
  meta = {k: v for k, v in lopt.load_metadata(source).items()
          if k not in ("format", "format_version", "architecture", "config")}
  return str(lopt.save_pretrained(out_dir, lo, theta, {**meta, "evaluation": evaluation}))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("runs", nargs="+", help="NAME=WORKDIR, NAME=WORKDIR@STEP or NAME=EXPORT "
                      "(a directory with metadata.json, e.g. WORKDIR/export_best)")
  parser.add_argument("--results", required=True, help="evaluate.py results.json")
  parser.add_argument("--device_hours", action="append", default=[],
                      help="NAME=HOURS of device time the run took (repeatable)")
  parser.add_argument("--description", action="append", default=[],
                      help="NAME=TEXT: what this optimizer is, e.g. its scale (repeatable)")
  parser.add_argument("--label", action="append", default=[],
                      help="NAME=LABEL: the optimizer's label in --results where it is not "
                      "NAME, e.g. a candidate evaluated beside the LO it replaces (repeatable)")
  parser.add_argument("--out", default="checkpoints")
  args = parser.parse_args(argv)

  from training.export import export_source
  with open(args.results) as f:
    results = json.load(f)
  hours = dict(item.split("=", 1) for item in args.device_hours)
  descriptions = dict(item.split("=", 1) for item in args.description)
  labels = dict(item.split("=", 1) for item in args.label)
  for item in args.runs:
    name, workdir = item.split("=", 1)
    label = labels.get(name, name)
    evaluation = headline(results, label)
    if not evaluation["suites"]:
      parser.error(f"{args.results} has no results for an optimizer labelled {label!r}")
    if os.path.isfile(os.path.join(workdir, "metadata.json")):  # an export (export_best)
      path = _reship(workdir, os.path.join(args.out, name), evaluation)
    else:
      path = export_source(workdir, os.path.join(args.out, name), extra_metadata={
          "evaluation": evaluation})
    meta_path = os.path.join(path, "metadata.json")
    with open(meta_path) as f:
      meta = json.load(f)
    meta["training"]["accelerator_hours"] = float(hours[name]) if name in hours else None
    if name in descriptions:
      meta["description"] = descriptions[name]
    with open(meta_path, "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    from lopt import diskio
    diskio.write_record(path)  # the metadata changed: its integrity record must follow
    print(f"{name}: {path}")
  return 0
