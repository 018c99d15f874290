"""Does a learned optimizer transfer in width? Test loss of a plain-flax MLP
trained by each learned optimizer at several widths, as a ratio to the first
one's (μP promises that what works at the meta-training width works wider).

    python scripts/width_transfer.py theta0=results/meta-runs/mulo-a-cpu@0 \\
        trained=results/meta-runs/mulo-a-cpu/export_best \\
        meanfree=results/meta-runs/mulo-a-cpu/export_50000_meanfree

Each argument is LABEL=SOURCE as in ``lopt-evaluate`` (a pretrained directory,
WORKDIR@STEP, a shipped name). Every optimizer trains the same seeds (same
inits and batches) of ``PlainMLPTask`` (default: augmented 8x8 digits, depth 3,
batch 128, 2000 steps) at each width, untuned, with the μP spec inferred as
users get it. Widths above the meta-training width are the point; note that
the default task at width 256 is also in the held-out suite.
"""

from __future__ import annotations

import argparse

import numpy as np

from meta_tasks.user_tasks import PlainMLPTask
from training import task_spec
from training.evaluation import parse_optimizer
from training.sweep import Sweep


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("optimizers", nargs="+", help="LABEL=SOURCE; the first is the reference")
  ap.add_argument("--widths", default="32,64,128,256")
  ap.add_argument("--dataset", default="digits")
  ap.add_argument("--depth", type=int, default=3)
  ap.add_argument("--batch_size", type=int, default=128)
  ap.add_argument("--steps", type=int, default=2000)
  ap.add_argument("--seeds", type=int, default=2)
  args = ap.parse_args(argv)
  opts = [parse_optimizer(t) for t in args.optimizers]
  if any(o.baseline is not None for o in opts):
    ap.error("every optimizer must be a learned one (a baseline has an LR to tune: "
             "use lopt-evaluate for those)")
  seeds = list(range(args.seeds))
  print(f"{args.dataset} MLP depth {args.depth}, batch {args.batch_size}, {args.steps} steps, "
        f"seeds {seeds}: mean test loss (ratio to {opts[0].label})")
  for width in (int(w) for w in args.widths.split(",")):
    task = PlainMLPTask(dataset=args.dataset, augment=args.dataset == "digits", width=width,
                        depth=args.depth, batch_size=args.batch_size)
    spec = task_spec.optimizer_spec(task)
    make_tx = lambda lo: lambda theta: lo.as_optax(theta, num_steps=args.steps, mup=spec)
    losses = [float(np.mean(Sweep(make_tx(o.lo), task, args.steps)(o.theta, seeds).test_loss))
              for o in opts]
    print(f"width {width:5d}: " + "  ".join(
        f"{o.label} {loss:.4f} ({loss / losses[0]:.2f}x)" for o, loss in zip(opts, losses)),
        flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
