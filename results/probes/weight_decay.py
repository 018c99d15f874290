"""One-off check: the shipped mulo-m with its decoupled weight decay × M (its
learned log_wd + log M; M = 1 is mulo-m exactly), as one compiled grid per task,
seeds 0..SEEDS-1. Tuning the step multiplier of the LO without its rule on the
held-out breast-cancer MLP picked ×5.6 (0.116 vs tuned AdamW's 0.126): larger
steps, and so more decay. Is it the decay?
Run from results/probes: ../../.venv/bin/python weight_decay.py SUITE [MS [SEEDS]]
(2-core CPU); output: weight_decay_screen8.txt (screen 1,3,10,30 8)."""
import jax, jax.numpy as jnp, numpy as np, lopt
import probe_suites
from training.evaluation import lo_optax
from training.sweep import Sweep

SUITE, ms, seeds = probe_suites.parse_args("1,3,10")
lo, theta = lopt.load_pretrained("mulo-m")
thetas = jax.tree.map(lambda x: jnp.stack([x] * len(ms)), theta)
thetas["scales"]["log_wd"] = theta["scales"]["log_wd"] + jnp.log(jnp.asarray(ms, jnp.float32))
print(f"{SUITE}, mulo-m with its weight decay x M, M in {ms}, {len(seeds)} seeds: test loss / "
      "test accuracy / max spike / train loss (means over seeds)", flush=True)
for e in probe_suites.entries(SUITE):
  task, steps = e.task, e.num_steps
  r = Sweep(lambda th: lo_optax(lo, th, task, steps), task, steps, grid=True)(thetas, seeds)
  acc = r.test_accuracy if r.test_accuracy is not None else np.full(r.test_loss.shape, np.nan)
  print(f"{task.name}@{steps}: " + " | ".join(
      f"x{m:g} {np.mean(r.test_loss[i]):.4f} / {np.nanmean(acc[i]):.4f} / "
      f"{np.max(r.max_spike[i]):.2f} / {np.mean(r.final_train_loss[i]):.2g}"
      for i, m in enumerate(ms)), flush=True)
