"""One-off probe: is the meta-loss smooth in θ at the scale ES perturbs it?

At θ = THETA (default mulo-a), a4's objective and a fixed horizon H, FullES
runs the same P pairs per task config (same key: the same tasks, data, inits
and ε directions, only ε's size σ changes) and reports the mean |Δ| =
|L(θ+ε) − L(θ−ε)| per task config. Where the meta-loss is smooth at scale σ,
|Δ| ∝ σ (the directional derivative); a floor as σ falls is the chaotic part
of inner training that no gradient explains, and the ES estimate's signal is
the part of |Δ| above it.

Run from the repository root:
  .venv/bin/python results/probes/sigma_scaling.py [THETA] [H] [P]
(2-core CPU, about 5 minutes for H=300, P=16); output appended to
results/probes/sigma_scaling.txt."""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from training import config as config_lib
from training.trainer import MetaTrainer

THETA = sys.argv[1] if len(sys.argv) > 1 else "mulo-a"
H = int(sys.argv[2]) if len(sys.argv) > 2 else 300
P = int(sys.argv[3]) if len(sys.argv) > 3 else 16
SIGMAS = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

t0 = time.time()
rows = {}
for sigma in SIGMAS:
  cfg = config_lib.get_preset("mulo-a4-cpu", init_theta=THETA, estimator="full_es",
                              min_horizon=H, max_horizon=H, num_pairs=P, sigma=sigma,
                              delta_clip=None)
  tr = MetaTrainer(cfg)

  @jax.jit
  def deltas(theta, key, data):
    out = []
    for i, est in enumerate(tr.estimators(data)):
      _, _, m = est.estimate(theta, est.init(key, theta), jax.random.fold_in(key, i))
      out.append(m["delta_abs"])
    return jnp.stack(out)

  rows[sigma] = np.asarray(deltas(tr.theta0, jax.random.PRNGKey(1000), tr.data()))
  print(sigma, rows[sigma], flush=True)
lines = [f"θ = {THETA}, horizon {H}, {P} pairs per task config, same key for every σ; "
         f"mean |Δ| per task config ({time.time() - t0:.0f} s). Smooth: |Δ| ∝ σ.",
         "task config | " + " | ".join(f"σ={s:g}" for s in SIGMAS)]
tasks = MetaTrainer(config_lib.get_preset("mulo-a4-cpu", init_theta=THETA)).tasks
for i, task in enumerate(tasks):
  lines.append(f"{task.name[:44]:44s} | " + " | ".join(f"{rows[s][i]:.2e}" for s in SIGMAS))
lines.append("|Δ|/σ, mean over task configs: " +
             " ".join(f"{s:g}:{np.mean(rows[s]) / s:.3g}" for s in SIGMAS))
print("\n".join(lines), flush=True)
with open("results/probes/sigma_scaling.txt", "a") as f:
  f.write("\n".join(lines) + "\n\n")
