#!/usr/bin/env python
"""Quick screen of learned optimizers on a screening suite (no LR tuning).

    python scripts/screen_checkpoints.py m=runs/m m400=runs/m@400 \\
        'norm=init:output_norm=true,step_mult=0.003,hidden_step_mult=0.1'

Each argument is LABEL=SOURCE, where SOURCE is a pretrained directory, a
meta-training workdir (its export/), WORKDIR@STEP (that checkpoint, exported to
a temporary directory), a shipped name, or ``init:FIELD=VALUE,...``: an
untrained ``MLPLOpt`` with those fields (θ from PRNGKey(0); with adam_init it
is the Adam-like starting point of meta-training). For each it prints, per
task of ``--suite`` (default ``screen-user-cpu``, the suite for choosing
recipes; never pass a held-out suite here), the mean over seeds of the test
loss, the final train loss and the max loss spike (highest minibatch loss ÷
step-0 loss, max over seeds). It is the fast loop used to compare LO forms,
recipes and checkpoints (results/pretrained-cpu/recipe-ablation.md); use
scripts/evaluate.py for the protocol's comparison against tuned baselines.

It ends with the optimizers ordered by average rank by test loss over the
suite's tasks (ties within a task share the mean rank; equal averages are
ordered by the geometric mean of the test losses): the criterion for choosing
which checkpoint of a run ships (``scripts/ship_pretrained.py NAME=WORKDIR@STEP``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _value(text: str):
  low = text.lower()
  if low in ("true", "false"):
    return low == "true"
  if low == "none":
    return None
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text


def load(source: str):
  """(lo, theta) of a SOURCE (see the module docstring)."""
  import jax
  import lopt
  if source.startswith("init:"):
    fields = dict(kv.split("=", 1) for kv in source[5:].split(",") if kv)
    valid = {f.name for f in dataclasses.fields(lopt.MLPLOpt)} | set(lopt.forms.LEGACY_FIELDS)
    valid -= {"features", "step"}
    unknown = sorted(set(fields) - valid)
    if unknown:
      raise SystemExit(f"error: unknown MLPLOpt fields {unknown}; valid: {sorted(valid)}")
    lo = lopt.forms.from_flat({k: _value(v) for k, v in fields.items()})
    return lo, lo.init(jax.random.PRNGKey(0))
  from training.export import export_source
  if "@" in source:
    source = export_source(source)  # to WORKDIR/export@STEP (or export_init)
  return lopt.load_pretrained(source)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("optimizers", nargs="+", help="LABEL=SOURCE")
  parser.add_argument("--suite", default="screen-user-cpu")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--max_steps", type=int, default=None, help="cap every horizon")
  args = parser.parse_args(argv)

  import numpy as np
  from meta_tasks import get_suite
  from training import task_spec
  from training.evaluation import average_ranks, train_curves
  entries = get_suite(args.suite)
  print("test loss / final train loss / max spike, mean over seeds; "
        f"suite {args.suite}")
  print("| optimizer | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries) + " |")
  print("|---" * (len(entries) + 1) + "|")
  labels, test_losses = [], []
  for item in args.optimizers:
    label, _, source = item.partition("=")
    if not source:
      parser.error(f"expected LABEL=SOURCE, got {item!r}")
    lo, theta = load(source)
    row, losses = [], []
    for e in entries:
      steps = e.num_steps if args.max_steps is None else min(e.num_steps, args.max_steps)
      spec = task_spec.optimizer_spec(e.task)
      c = train_curves(lambda lr: lo.as_optax(theta, num_steps=steps, mup=spec),
                       e.task, steps, range(args.seeds))
      losses.append(float(np.mean(c.test_loss)))
      row.append(f"{np.mean(c.test_loss):.3g} / {np.mean(c.final_train_loss):.3g} / "
                 f"{np.max(c.max_spike):.2g}")
    print(f"| {label} | " + " | ".join(row) + " |", flush=True)
    labels.append(label)
    test_losses.append(losses)
  per_task = [average_ranks(col) for col in zip(*test_losses)]  # rank per task column
  ranks = np.mean(np.array(per_task), axis=0)
  # Tie-break: the geometric mean of the test losses (scale-free across tasks).
  geo = np.exp(np.mean(np.log(np.maximum(np.nan_to_num(test_losses, nan=np.inf), 1e-30)), axis=1))
  order = sorted(range(len(labels)), key=lambda i: (ranks[i], geo[i]))
  print("\naverage rank by test loss (geometric-mean test loss), best first: " + ", ".join(
      f"{labels[i]} {ranks[i]:.2f} ({geo[i]:.3g})" for i in order))
  return 0


if __name__ == "__main__":
  sys.exit(main())
