"""Quick screen of learned optimizers on a screening suite (no LR tuning):
``lopt-screen``, or ``python scripts/screen_checkpoints.py``.

    lopt-screen m=runs/m m400=runs/m@400 \\
        'norm=init:output_norm=true,step_mult=0.003,hidden_step_mult=0.1'

Each argument is LABEL=SOURCE, read by ``training.evaluation.parse_optimizer``:
SOURCE is a pretrained directory, a meta-training workdir (its export/),
WORKDIR@STEP (that checkpoint, exported to WORKDIR/export@STEP), a shipped name,
or ``init:FIELD=VALUE,...``: an untrained ``MLPLOpt`` with those fields (θ from
PRNGKey(0); with adam_init it is the Adam-like starting point of
meta-training). Each runs untuned through the library's ``Evaluator``. For each it prints, per
task of ``--suite`` (default ``screen-user-cpu``, the suite for choosing
recipes; never pass a held-out suite here), the mean over seeds of the test
loss, the final train loss and the max loss spike (highest minibatch loss ÷
step-0 loss, max over seeds), and the lowest point of the seed-median test
loss along training with its step (``best@step``: far below the final test
loss, the optimizer memorizes past where it generalized best). It is the fast loop used to compare LO forms,
recipes and checkpoints (results/pretrained-cpu/recipe-ablation.md); use
scripts/evaluate.py for the protocol's comparison against tuned baselines.

It ends with the optimizers ordered by average rank by test loss over the
suite's tasks (ties within a task share the mean rank; equal averages are
ordered by the geometric mean of the test losses): the criterion for choosing
which checkpoint of a run ships (``scripts/ship_pretrained.py NAME=WORKDIR@STEP``).
"""

from __future__ import annotations

import argparse
import time

from training.cli import regex


def best_along_training(result: dict) -> tuple[float, int]:
  """(lowest seed-median test loss along training, its step) of an
  ``Evaluator.run`` result; (inf, 0) if every point diverged."""
  import numpy as np
  curve = result["test_curve"]
  median = np.array(curve["test_loss_median"], np.float64)  # None (non-finite) -> nan
  if not np.any(np.isfinite(median)):
    return float("inf"), 0
  i = int(np.nanargmin(np.where(np.isfinite(median), median, np.nan)))
  return float(median[i]), int(curve["step"][i])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("optimizers", nargs="+", help="LABEL=SOURCE")
  parser.add_argument("--suite", default="screen-user-cpu")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--first_seed", type=int, default=0,
                      help="run seeds FIRST_SEED .. FIRST_SEED+SEEDS-1: a candidate chosen on "
                      "seeds 0..S-1 reads optimistically there, so confirm on fresh ones")
  parser.add_argument("--max_steps", type=int, default=None, help="cap every horizon")
  parser.add_argument("--tasks", type=regex, default=None, metavar="REGEX",
                      help="only the suite's tasks whose name matches this regex")
  args = parser.parse_args(argv)
  if args.seeds < 1 or args.first_seed < 0:
    parser.error(f"--seeds must be >= 1 and --first_seed >= 0, got {args.seeds} and "
                 f"{args.first_seed}.")

  import numpy as np
  from training.evaluation import Evaluator, parse_optimizer, suite_entries
  from training.stats import average_ranks
  try:
    entries = suite_entries(args.suite, args.tasks)
  except ValueError as e:
    parser.error(str(e))
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  evaluator = Evaluator(seeds, max_steps=args.max_steps, log=lambda line: None)
  print(f"test loss / final train loss / max spike, mean over seeds {seeds.start}..{seeds.stop - 1}"
        f" / best@step: lowest seed-median test loss along training; suite {args.suite}")
  print("| optimizer | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries) + " |")
  print("|---" * (len(entries) + 1) + "|")
  labels, test_losses, seconds = [], [], []
  for item in args.optimizers:
    try:
      opt = parse_optimizer(item)
    except (ValueError, FileNotFoundError) as e:
      parser.error(f"{item!r}: {e}")
    start = time.perf_counter()
    results = [evaluator.run(opt, e) for e in entries]
    seconds.append(time.perf_counter() - start)
    row = [f"{r['test_loss']:.3g} / {r['final_train_loss']:.3g} / {r['max_loss_spike']:.2g} / "
           + "{:.3g}@{}".format(*best_along_training(r)) for r in results]
    print(f"| {opt.label} | " + " | ".join(row) + " |", flush=True)
    labels.append(opt.label)
    test_losses.append([r["test_loss"] for r in results])
  per_task = [average_ranks(col) for col in zip(*test_losses)]  # rank per task column
  ranks = np.mean(np.array(per_task), axis=0)
  # Tie-break: the geometric mean of the test losses (scale-free across tasks).
  geo = np.exp(np.mean(np.log(np.maximum(np.nan_to_num(test_losses, nan=np.inf), 1e-30)), axis=1))
  order = sorted(range(len(labels)), key=lambda i: (ranks[i], geo[i]))
  print("\naverage rank by test loss (geometric-mean test loss), best first: " + ", ".join(
      f"{labels[i]} {ranks[i]:.2f} ({geo[i]:.4g})" for i in order))
  # LOs of one form after the first reuse its compiled programs (θ is an argument).
  print("wall-clock per optimizer, compiles included: " + ", ".join(
      f"{label} {s:.0f} s" for label, s in zip(labels, seconds)))
  return 0
