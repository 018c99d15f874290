"""Which learned part of mulo-m's θ costs it on unseen_models3's GroupNorm
residual CNN (1.62x tuned AdamW's test loss, with a train loss like AdamW's at
lr 1e-3)? As part_ablation.py: each variant zeroes one part of θ (that part
then does nothing: multiplier 1, no residual, the hand restraint, the base
scales, the plain cosine); theta0 zeroes all (the hand form, μAdamW).
Run from the repo root: .venv/bin/python results/probes/gn_resnet_parts.py [SEEDS] [VARIANTS...]
(variants: theta0, "no adapt", "no residual", "no restraint", "no scales", "no schedule")."""
import os
import sys

variants = sys.argv[2:] or ["theta0", "no adapt"]
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "2"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax  # noqa: E402
import numpy as np  # noqa: E402

import lopt  # noqa: E402
import unseen_models as um  # noqa: E402
import unseen_models3 as um3  # noqa: E402

task = next(t for t in um3.make_tasks() if t["name"] == "gn-resnet")
lo, theta = lopt.load_pretrained("mulo-m")


def variant(name):
  if name == "theta0":
    return jax.tree.map(np.zeros_like, theta)
  part = name.removeprefix("no ")
  return {**theta, part: jax.tree.map(np.zeros_like, theta[part])}


print(f"gn-resnet, {um.SEEDS} seeds: test loss / test accuracy / train loss / max spike",
      flush=True)
for name in variants:
  print(f"  {name}: {um.fmt(um.evaluate(task, um.lo_optax(lo, variant(name))))}", flush=True)
