"""Evaluate optimizers on held-out suites: tuned baselines vs learned optimizers
(``lopt-evaluate``, or ``python scripts/evaluate.py``).

    python scripts/evaluate.py --optimizers adamw,muadam,lion,nesterov \\
        --suite heldout-width-cpu,heldout-horizon-cpu --workdir results/baselines-cpu
    python scripts/evaluate.py --optimizers adamw,mulo=runs/tiny --suite smoke --workdir /tmp/ev

An optimizer is a baseline name (``lopt.baselines.names()``), a learned-optimizer
checkpoint (a pretrained directory, a meta-training workdir, ``WORKDIR@STEP`` for
one of its checkpoints with @0 the untrained θ, or a shipped name), or
``LABEL=`` either. Baselines are tuned on each entry's tuning task and the LR
is transferred (see ``training.evaluation.PROTOCOL``); tuned AdamW is always run
as the speedup reference. Each learned optimizer is reported untuned (as
exported) and as ``LABEL (tuned)``: its step multiplier tuned over as many grid
points as AdamW's LR grid by the same rule (``--no_step_mult_tuning``: untuned only). Writes WORKDIR/results.json, WORKDIR/report.md and
WORKDIR/plots/*.png. Bad input (a bad flag value, unknown optimizer or suite,
missing or corrupt checkpoint, unusable workdir, invalid --tasks regex, dataset
not prepared) prints the reason on one line, naming the flag, and exits with
status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from training.cli import EXIT_BAD_INPUT, OneLineErrors, nonempty, one_line, regex


class _Parser(OneLineErrors, argparse.ArgumentParser):
  pass


def _positive_int(text: str) -> int:
  if not text.strip().isdecimal() or int(text) < 1:  # no sign, point or exponent
    raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
  return int(text)


def _nonnegative_int(text: str) -> int:
  if not text.strip().isdecimal():  # no sign, point or exponent
    raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
  return int(text)


def _csv(text: str) -> list[str]:
  items = [t.strip() for t in text.split(",") if t.strip()]
  if not items:
    raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
  return items


def _existing_dir(text: str) -> str:
  if "://" not in text and not os.path.isdir(text):  # gs:// etc. are left to tfds
    raise argparse.ArgumentTypeError(f"{text!r} is not an existing directory")
  return text


def _cache_dir(text: str) -> str:
  text = nonempty(text)
  if os.path.exists(text) and not os.path.isdir(text):
    raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
  return text


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="evaluate.py", description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--optimizers", type=_csv, required=True,
                      help="comma-separated baseline names and/or [LABEL=]checkpoint paths")
  parser.add_argument("--suite", type=_csv, required=True,
                      help="suite name(s), comma-separated (e.g. heldout-width-cpu)")
  parser.add_argument("--workdir", required=True, help="where results.json, report.md, "
                      "plots/ go")
  parser.add_argument("--seeds", type=_positive_int, default=3,
                      help="reported seeds (FIRST_SEED..FIRST_SEED+N-1)")
  parser.add_argument("--first_seed", type=_nonnegative_int, default=0,
                      help="the first reported seed (default 0): compare on seeds that no "
                      "choice was made on")
  parser.add_argument("--tuning_seeds", type=_positive_int, default=3,
                      help="seeds per LR when tuning (disjoint from the reported ones)")
  parser.add_argument("--data_dir", type=_existing_dir, default=None,
                      help="tfds data_dir for the non-cpu suites")
  parser.add_argument("--max_steps", type=_positive_int, default=None,
                      help="cap every horizon (a reduced run; the report says so)")
  parser.add_argument("--tasks", type=regex, default=None, metavar="REGEX",
                      help="only run suite tasks whose name matches (a reduced run)")
  parser.add_argument("--lr_grid_points", type=_positive_int, default=None,
                      help="use this many evenly spaced points of each default LR grid")
  parser.add_argument("--eval_batches", type=_positive_int, default=4,
                      help="batches per split for the final train/test metrics")
  parser.add_argument("--baseline_cache", type=_cache_dir, default=None, metavar="DIR",
                      help="keep tuned baselines' tuning and runs in DIR and reuse them in "
                      "later invocations (delete DIR after changing task or baseline code)")
  parser.add_argument("--no_step_mult_tuning", action="store_true",
                      help="report learned optimizers untuned only (by default each LO also "
                      "gets an 'LO (tuned)' row: its step multiplier tuned over as many grid "
                      "points as AdamW's LR grid, by the same test-loss rule)")
  parser.add_argument("--note", action="append", default=[],
                      help="a line for the report's notes (repeatable)")
  parser.add_argument("--wandb", action="store_true",
                      help="also log a wandb run (offline unless WANDB_MODE/WANDB_API_KEY)")
  parser.add_argument("--wandb_project", type=nonempty, default="lopt-eval")
  return parser


def main(argv=None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  from training.evaluation import reported_seeds
  try:  # refused before anything loads
    reported_seeds(args.first_seed, args.seeds)
  except ValueError as e:
    parser.error(f"argument --first_seed: {e}")

  def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT

  from meta_tasks import DatasetNotPreparedError
  from training import evaluation, report
  from training.checkpoint import check_workdir

  # Every input is checked, and every checkpoint loaded, before any training
  # and before the workdir is created (a rejected command leaves no folder).
  try:
    suites = evaluation.check_suites(args.suite)
  except ValueError as e:
    return fail(f"argument --suite: {one_line(e)}")
  try:
    optimizers = evaluation.parse_optimizers(args.optimizers,
                                             tune_step_mult=not args.no_step_mult_tuning)
  except Exception as e:  # a checkpoint that does not load fails in many ways
    kind = "" if isinstance(e, (ValueError, FileNotFoundError)) else f"{type(e).__name__}: "
    return fail(f"argument --optimizers: {kind}{one_line(e)}")
  try:  # a WorkdirError is a ValueError
    check_workdir(args.workdir)
    results = evaluation.evaluate(
        optimizers, suites, seeds=args.seeds, tuning_seeds=args.tuning_seeds,
        data_dir=args.data_dir, max_steps=args.max_steps, lr_grid_points=args.lr_grid_points,
        eval_batches=args.eval_batches, task_filter=args.tasks,
        cache_dir=args.baseline_cache, first_seed=args.first_seed)
  except (DatasetNotPreparedError, ValueError) as e:
    return fail(one_line(e))
  results["notes"] = args.note
  results["command"] = ["scripts/evaluate.py", *(sys.argv[1:] if argv is None else argv)]
  path = os.path.join(args.workdir, "results.json")
  with open(path, "w") as f:
    json.dump(results, f, indent=1, allow_nan=False)
  report_path = report.write_report(results, args.workdir)
  print(f"Wrote {path}, {report_path} and {os.path.join(args.workdir, report.PLOTS_DIR)}/")
  if args.wandb:
    report.log_to_wandb(results, args.workdir, args.wandb_project)
  return 0
