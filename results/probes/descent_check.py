"""One-off probe: does a step along the ES meta-gradient lower the meta-loss,
on the tasks it was estimated on and on fresh ones?

At θ = THETA (default mulo-a; "init": the untrained θ₀ that mulo-a2-cpu started from), with a4's objective (log validation loss over
the last 30% of each episode, ± Δ clipped at 0.5) and a fixed horizon H, FullES
estimates the meta-gradient with P pairs per task config on keys A, B, C
(independent task draws, data, inits and ε). Then:

* the cosines between the three estimates (their signal-to-noise: two
  independent estimates of one gradient have cosine ≈ SNR²/(1 + SNR²));
* the meta-loss at θ − α·d, d = ĝ_ABC / rms(ĝ_ABC) (so α is the per-coordinate
  RMS move; an outer Adam step at LR 3e-4 moves each coordinate ~3e-4), on key
  A (in sample: A's tasks are in the estimate) and on fresh keys D, E, F
  (out of sample), every α on the same draws (common random numbers). The
  meta-loss is FullES's, the mean over pairs of L(θ'+ε) and L(θ'−ε), with
  ε of size 1e-5 (θ' itself; results/probes/sigma_scaling.txt).
SIGMA (default 0.01, the recipes') is the estimates' perturbation size.
With a fifth argument COMPARE (a θ), only the fresh meta-loss of COMPARE
minus THETA's is computed (keys D, E, F). UNIT_TASK_GRADS=1 in the
environment: each task config's estimate is scaled to unit norm before the
mean (the recipes' unit_task_grads), one vote per task config.

Run from the repository root:
  .venv/bin/python results/probes/descent_check.py [THETA] [H] [P] [SIGMA] [COMPARE]
(2-core CPU: about 15 minutes for H=300, P=16); output appended to
results/probes/descent_check.txt."""
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from training import config as config_lib
from training import trainer as trainer_lib
from training.trainer import MetaTrainer, combine_task_grads, initial_theta

THETA = sys.argv[1] if len(sys.argv) > 1 else "mulo-a"
H = int(sys.argv[2]) if len(sys.argv) > 2 else 300
P = int(sys.argv[3]) if len(sys.argv) > 3 else 16
SIGMA = float(sys.argv[4]) if len(sys.argv) > 4 else 0.01
UNIT = os.environ.get("UNIT_TASK_GRADS") == "1"
ALPHAS = (0.0, 0.003, 0.01, 0.03, 0.1)



def estimator_fn(sigma):
  """jitted (θ, key, data) -> (meta-gradient averaged over task configs, [tasks] meta-losses)."""
  tr = MetaTrainer(config_lib.get_preset(
      "mulo-a4-cpu", init_theta=None if THETA == "init" else THETA, estimator="full_es",
      min_horizon=H, max_horizon=H, num_pairs=P, sigma=sigma))

  @jax.jit
  def estimate(theta, key, data):
    grads, losses = [], []
    for i, est in enumerate(tr.estimators(data)):
      g, _, m = est.estimate(theta, est.init(key, theta), jax.random.fold_in(key, i))
      grads.append(g)
      losses.append(m["meta_loss"])
    alive = [jnp.isfinite(l) for l in losses]
    return combine_task_grads(grads, alive, UNIT), jnp.stack(losses)
  return tr, estimate


tr, estimate = estimator_fn(SIGMA)
_, evaluate = estimator_fn(1e-5)
theta0 = initial_theta(tr.config)  # THETA "init": the untrained θ₀ of a2 (and a4's lo)
data = tr.data()


if len(sys.argv) > 5:  # COMPARE: only the fresh meta-loss of another θ against THETA's
  other = trainer_lib.load_init_theta(tr.config.replace(init_theta=sys.argv[5]))
  diffs = [np.asarray(evaluate(other, jax.random.PRNGKey(1000 + i), data)[1])
           - np.asarray(evaluate(theta0, jax.random.PRNGKey(1000 + i), data)[1]) for i in (3, 4, 5)]
  line = (f"fresh meta-loss (keys D, E, F; horizon {H}, {P} pairs) of {sys.argv[5]} minus "
          f"{THETA}'s: " + " ".join(f"{d.mean():+.4f}" for d in diffs) + "; per task config: "
          + " ".join(f"{x:+.3f}" for x in np.mean(diffs, axis=0)))
  print(line)
  with open("results/probes/descent_check.txt", "a") as f:
    f.write(line + "\n\n")
  sys.exit()
flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
keys = {name: jax.random.PRNGKey(1000 + i) for i, name in enumerate("ABCDEF")}
t0 = time.time()
est = {k: estimate(theta0, keys[k], data) for k in "ABC"}
g = {k: flat(v[0]) for k, v in est.items()}
lines = [f"θ = {THETA}, horizon {H}, {P} pairs x {len(tr.tasks)} task configs per estimate, "
         f"FullES, σ {SIGMA}, a4's objective{', unit task votes' if UNIT else ''}; {time.time() - t0:.0f} s for 3 estimates",
         f"cosines: A·B {cos(g['A'], g['B']):+.3f}  A·C {cos(g['A'], g['C']):+.3f}  "
         f"B·C {cos(g['B'], g['C']):+.3f}"]
g_sum = jax.tree.map(lambda *x: sum(x) / 3, *[est[k][0] for k in "ABC"])
rms = np.sqrt(np.mean(np.square(flat(g_sum))))
print("\n".join(lines), flush=True)
per_task = {}
for alpha in ALPHAS:
  theta = jax.tree.map(lambda t, d: t - alpha * d / rms, theta0, g_sum)
  row = {k: np.asarray(evaluate(theta, keys[k], data)[1]) for k in "ADEF"}
  per_task[alpha] = row
ref = per_task[0.0]
lines.append("meta-loss change vs α = 0 (mean over task configs; negative = lower):")
lines.append("alpha | in sample (A) | fresh D | fresh E | fresh F | fresh mean")
for alpha in ALPHAS[1:]:
  d = {k: float(np.mean(per_task[alpha][k] - ref[k])) for k in "ADEF"}
  lines.append(f"{alpha:<5} | {d['A']:+.4f} | {d['D']:+.4f} | {d['E']:+.4f} | {d['F']:+.4f} | "
               f"{np.mean([d['D'], d['E'], d['F']]):+.4f}")
lines.append("per task config, fresh mean at each α (vs α = 0):")
for i, task in enumerate(tr.tasks):
  cells = " ".join(f"{a}:{np.mean([per_task[a][k][i] - ref[k][i] for k in 'DEF']):+.4f}"
                   for a in ALPHAS[1:])
  lines.append(f"  {task.name[:44]:44s} {cells}")
lines.append(f"total {time.time() - t0:.0f} s")
print("\n".join(lines[2:]), flush=True)
with open("results/probes/descent_check.txt", "a") as f:
  f.write("\n".join(lines) + "\n\n")
