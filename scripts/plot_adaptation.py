#!/usr/bin/env python
"""What the adaptive LO's learned per-tensor step multiplier does over training.

    python scripts/plot_adaptation.py results/meta-runs/mulo-a-cpu@0 \\
        results/meta-runs/mulo-a-cpu --out results/adaptation/adaptation.png

Each source is a pretrained LO (a name, a directory) or ``WORKDIR[@STEP]`` of a
meta-training run (``@0``: its untrained θ). For each source it trains the
held-out breast-cancer MLP and the held-out transformer LM of
``heldout-user-cpu`` (plain flax, μP spec inferred from a narrow copy, as users
get it), without ``loss=`` (as linen's TrainState calls it) and with it, and
records every tensor's step multiplier (``AdaptiveTensorState.mults[0]``:
``TensorAdaptive``'s, within [1/bound, bound], times ``GradientRestraint``'s,
within [1/bound, 1]) at every step. It writes a PNG (one panel per task,
geometric mean over tensors with the min-max band, one line per source) and
a JSON of the curves. If the LO adapts, the two tasks' curves differ; at θ₀
every multiplier is exactly 1 unless the form has ``GradientRestraint``, whose
hand exponents act at θ₀ too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _load(source: str):
  import lopt
  from training import export
  if os.path.isdir(source.rpartition("@")[0] or source) and (
      "@" in source or os.path.exists(os.path.join(source, "config.json"))):
    source = export.export_source(source)
  return lopt.load_pretrained(source)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("sources", nargs="+")
  parser.add_argument("--out", default="results/adaptation/adaptation.png")
  args = parser.parse_args(argv)

  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  import meta_tasks
  from training.adaptation import multiplier_curves

  entries = [e for e in meta_tasks.get_suite("heldout-user-cpu")
             if "breast_cancer" in e.task.name or e.task.name.startswith("user-lm")]
  fig, axes = plt.subplots(1, len(entries), figsize=(6 * len(entries), 4), squeeze=False)
  curves = {}
  for source in args.sources:
    lo, theta = _load(source)
    for ax, entry in zip(axes[0], entries):
      for with_loss in (False, True):
        mults, losses = multiplier_curves(lo, theta, entry.task, entry.num_steps,
                                          with_loss=with_loss)
        mults = mults[..., 0]
        geo = np.exp(np.mean(np.log(mults), axis=1))
        label = f"{source} ({'loss=' if with_loss else 'no loss'})"
        line, = ax.plot(geo, label=label, ls="-" if with_loss else "--")
        ax.fill_between(np.arange(len(geo)), mults.min(1), mults.max(1), alpha=0.15,
                        color=line.get_color())
        curves[f"{entry.task.name} | {label}"] = {
            "geo_mean": geo.tolist(), "min": mults.min(1).tolist(), "max": mults.max(1).tolist(),
            "final_train_loss": float(losses[-1])}
        print(f"{entry.task.name:45s} {label:55s} multiplier: start {geo[0]:.3f}, "
              f"mid {geo[len(geo) // 2]:.3f}, end {geo[-1]:.3f} "
              f"(range at end {mults[-1].min():.3f}-{mults[-1].max():.3f})")
  for ax, entry in zip(axes[0], entries):
    ax.set(title=entry.task.name, xlabel="step", ylabel="step multiplier (geo-mean over tensors)",
           yscale="log")
    ax.legend(fontsize=7)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(args.out, dpi=110)
  with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
    json.dump(curves, f)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
