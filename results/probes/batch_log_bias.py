"""Is the recipes' meta-objective biased toward memorization?

a16-a21 all moved θ toward larger steps and less restraint, and the moved θ
lost on the meta-training tasks' own test loss at long horizons
(horizon_drift_a21.txt), with or without short episodes. Suspect: the
per-step meta-loss is log(normalized loss of ONE validation batch + 1e-4),
and a validation batch is as small as a training batch (8-64 rows). Once a
table is memorized, most batches hold no misfit row and read ~1e-4, while the
few that do read ~1: the mean of the logs is set by the clean batches, so
memorizing harder looks like progress even when the mean loss (what a user's
test loss is) grows. Jensen: E[log L_batch] <= log E[L_batch].

Test: the recipe's systems (tiny-mix-lm-b8, validation split, the last 30%
of each episode), one full episode of H steps per seed, both θ on the same
task draws, inits and batches. Per task, the difference (θ minus REF) of
  A = mean over seeds and counted steps of log(normalized batch loss + 1e-4)
      (what ES-Single optimizes, before clipping),
  B = mean over seeds of log(mean over counted steps of normalized batch loss)
      (the log of the episode's mean validation loss: no per-batch Jensen gap),
  C = mean over seeds and counted K-step truncations of log(truncation mean + 1e-4)
      (the log of each truncation's mean: what ``log_mean_meta_loss`` optimizes).
If the suspicion holds, A says the moved θ is better (< 0) where B says worse.

    .venv/bin/python results/probes/batch_log_bias.py H SEEDS [LABEL=SOURCE ...]
(run from the repository root)
"""
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lopt
from training import config as config_lib
from training.lo_system import LOG_META_FLOOR
from training.trainer import MetaTrainer

sys.path.insert(0, "results/probes")
import probe_suites  # noqa: E402

H = int(sys.argv[1])
SEEDS = int(sys.argv[2])
SOURCES = probe_suites.sources([("mulo-m", "mulo-m"),
                                ("a21@3100", "results/meta-runs/mulo-a21-cpu/export@3100")],
                               sys.argv[3:])

trainer = MetaTrainer(config_lib.get_preset("mulo-a21-cpu", min_horizon=H, max_horizon=H,
                                            log_meta_loss=False))
data = trainer.data()
systems = [dataclasses.replace(est.system, truncation_length=H, data=None)
           for est in trainer.estimators()]


def episode_losses(system, theta, task_data):
  """[SEEDS, H] normalized validation-batch losses (0 outside the last 30%)."""
  system = dataclasses.replace(system, data=task_data)

  def one(key):
    state = system._fresh(jax.random.fold_in(key, 0), jnp.int32(H))
    _, out = system.unroll(theta, theta, state, jax.random.fold_in(key, 1))
    return out.losses

  return jax.vmap(one)(jax.random.split(jax.random.PRNGKey(1234), SEEDS))


run = jax.jit(episode_losses, static_argnums=0)
stats = {}
for label, source in SOURCES:
  _, theta = lopt.load_pretrained(source)
  for system, task_data in zip(systems, data):
    v = np.asarray(run(system, theta, task_data), np.float64)
    counted = np.arange(1, H + 1) > 0.7 * H
    v = v[:, counted]
    a = np.mean(np.log(v + LOG_META_FLOOR))
    b = np.mean(np.log(v.mean(axis=1)))
    k = trainer.config.truncation_length
    blocks = v[:, : v.shape[1] // k * k].reshape(SEEDS, -1, k).mean(axis=2)
    c = np.mean(np.log(blocks + LOG_META_FLOOR))
    stats[label, system.task.name] = (a, b, c)
  print(f"{label} done", file=sys.stderr, flush=True)

ref = SOURCES[0][0]
print(f"H={H}, {SEEDS} seeds; A = mean log(batch loss + 1e-4), B = log(episode-mean loss); "
      f"differences LO - {ref} (< 0: LO better)")
for label, _ in SOURCES[1:]:
  print(f"| task | A {ref} | A diff | B {ref} | B diff | C diff |")
  print("|---|---|---|---|---|---|")
  da, db, dc = [], [], []
  for system in systems:
    n = system.task.name
    (a0, b0, c0), (a1, b1, c1) = stats[ref, n], stats[label, n]
    da.append(a1 - a0)
    db.append(b1 - b0)
    dc.append(c1 - c0)
    print(f"| {n} | {a0:.3f} | {a1 - a0:+.4f} | {b0:.3f} | {b1 - b0:+.4f} | {c1 - c0:+.4f} |")
  print(f"{label}: mean over tasks A diff {np.mean(da):+.4f}, B diff {np.mean(db):+.4f}, "
        f"C diff {np.mean(dc):+.4f}; "
        f"tasks where A says better and B worse: "
        f"{sum(x < 0 < y for x, y in zip(da, db))} of {len(da)}")
