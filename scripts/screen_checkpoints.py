#!/usr/bin/env python
"""Quick screen of learned-optimizer checkpoints on a fixed set of CPU tasks.

    python scripts/screen_checkpoints.py init=runs/m/export_init m400=runs/m@400 m=runs/m

Each argument is LABEL=PATH: a pretrained directory, a meta-training workdir
(its export/), or WORKDIR@STEP (that checkpoint, exported to a temporary
directory). For each it prints the final training loss, mean over seeds 0-2,
on the tasks below. It is the fast loop used to compare recipes and
checkpoints (results/pretrained-cpu/recipe-ablation.md); it does no LR tuning,
so use scripts/evaluate.py for the protocol's comparison against baselines.
Several of these tasks are also in the held-out -cpu suites: a recipe chosen by
this screen has seen them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def screen_tasks():
  from meta_tasks import ImageCNNTask, ImageMLPTask
  tiny = ImageMLPTask(dataset="digits", width=32, depth=3, batch_size=128)
  return [("w32@300", tiny, 300), ("w32@1000", tiny, 1000), ("w32@5000", tiny, 5000),
          ("depth12@300", dataclasses.replace(tiny, depth=12), 300),
          ("cnn@300", ImageCNNTask(dataset="digits", width=32, depth=2, batch_size=128), 300),
          ("teacher@300", dataclasses.replace(tiny, dataset="teacher"), 300),
          ("digits16@300", dataclasses.replace(tiny, image_size=16), 300)]


def load(path: str):
  import lopt
  from training.export import export_workdir
  if "@" in path:
    workdir, step = path.rsplit("@", 1)
    path = export_workdir(workdir, tempfile.mkdtemp(prefix="screen-"), step=int(step))
  return lopt.load_pretrained(path)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("checkpoints", nargs="+", help="LABEL=PATH or LABEL=WORKDIR@STEP")
  parser.add_argument("--seeds", type=int, default=3)
  args = parser.parse_args(argv)

  import numpy as np
  from training.evaluation import train_curves
  tasks = screen_tasks()
  print("| checkpoint | " + " | ".join(name for name, _, _ in tasks) + " |")
  print("|---" * (len(tasks) + 1) + "|")
  for item in args.checkpoints:
    label, _, path = item.partition("=")
    if not path:
      parser.error(f"expected LABEL=PATH, got {item!r}")
    lo, theta = load(path)
    row = []
    for _, task, steps in tasks:
      curves = train_curves(lambda lr: lo.as_optax(theta, num_steps=steps, mup=task.kinds),
                            task, steps, range(args.seeds))
      row.append(f"{np.mean(curves.final_train_loss):.3g}")
    print(f"| {label} | " + " | ".join(row) + " |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
