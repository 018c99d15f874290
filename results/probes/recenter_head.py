"""Un-saturate mulo-a's adaptive head (issue 19), keeping what it does.

results/probes/head_saturation.txt: on every screen task 80-98% of mulo-a's
(tensor, step) step multipliers sit at |tanh| > 0.9 of the ×10 bound (median
×9.4-×10), and its weight-decay multipliers flip between the two bounds by
task. At |tanh| = 0.99 the head passes on 2% of a perturbation, so σ=0.01 ES
sees almost no meta-gradient through it: that is a4-a8's plateau.

This writes a θ whose function is mulo-a's to within a fitted error but whose
head sits in tanh's linear range:
  * the step head's common level moves into LearnedScales (log_lr += s·ln 10,
    s = the median of tanh over the collected features), and the head is fit
    to tanh' = clip(tanh - s, ±0.95) under the same ×10 bound;
  * the weight-decay head gets the bound ×100 and is fit to tanh' = tanh / 2
    (100 ** (t/2) = 10 ** t: the same multiplier).
Features are collected (jax.debug.callback) from full runs of mulo-a on the
screen suite and the tiny-mix meta-training tasks, with and without loss=.
Run from the repository root:
  .venv/bin/python results/probes/recenter_head.py [OUT]
(default OUT results/meta-runs/mulo-a-recentered; 2-core CPU, ~10 minutes);
log: results/probes/recenter_head.txt."""
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
import meta_tasks
from lopt import adaptive
from lopt.pretrained import load_metadata, save_pretrained
from training.adaptation import multiplier_curves

OUT = sys.argv[1] if len(sys.argv) > 1 else "results/meta-runs/mulo-a-recentered"

lo, theta = lopt.load_pretrained("mulo-a")
head = next(r for r in lo.step if isinstance(r, adaptive.TensorAdaptive))
assert head.bound == 10.0, head.bound

# ---- collect the head's input features over real runs
rows = []
_orig = adaptive.TensorAdaptive.multipliers


def _recording(self, th, feats):
  jax.debug.callback(lambda f: rows.append(np.asarray(f)), feats)
  return _orig(self, th, feats)


adaptive.TensorAdaptive.multipliers = _recording
runs = [(e.task, e.num_steps) for e in meta_tasks.get_suite("screen-user-cpu")]
runs += [(t, 1000) for t in meta_tasks.get_distribution("tiny-mix").configs()]
for task, n in runs:
  for with_loss in (False, True):
    multiplier_curves(lo, theta, task, n, with_loss=with_loss)
  print(f"collected {len(rows)} feature rows after {task.name}", flush=True)
adaptive.TensorAdaptive.multipliers = _orig
feats = jnp.asarray(np.stack(rows))

# ---- targets in tanh units
out0 = jax.nn.relu(feats @ theta["adapt"]["w0"] + theta["adapt"]["b0"]) @ theta["adapt"]["w1"] \
    + theta["adapt"]["b1"]
t0 = np.asarray(jnp.tanh(out0))
s = float(np.median(t0[:, 0]))
target = np.stack([np.clip(t0[:, 0] - s, -0.95, 0.95), t0[:, 1] / 2], -1)
print(f"{len(t0)} rows; step head: median tanh {s:.3f}, share > 0.9: {(t0[:, 0] > 0.9).mean():.2f}; "
      f"wd head: share |tanh| > 0.9: {(np.abs(t0[:, 1]) > 0.9).mean():.2f}")


# ---- fit the new head (same architecture) by full-batch Adam from mulo-a's
def fit_loss(h):
  out = jax.nn.relu(feats @ h["w0"] + h["b0"]) @ h["w1"] + h["b1"]
  return jnp.mean(jnp.square(jnp.tanh(out) - target))


h = dict(theta["adapt"])
opt = optax.adam(3e-3)
ostate = opt.init(h)


@jax.jit
def fit_step(h, ostate):
  loss, g = jax.value_and_grad(fit_loss)(h)
  u, ostate = opt.update(g, ostate, h)
  return optax.apply_updates(h, u), ostate, loss


for i in range(4001):
  h, ostate, loss = fit_step(h, ostate)
  if i % 1000 == 0:
    print(f"fit step {i}: mse (tanh units) {float(loss):.5f}", flush=True)

out1 = jax.nn.relu(feats @ h["w0"] + h["b0"]) @ h["w1"] + h["b1"]
t1 = np.asarray(jnp.tanh(out1))
# the total multipliers before and after, in log10 (what the update sees)
before = np.stack([t0[:, 0], t0[:, 1]], -1)
after = np.stack([t1[:, 0] + s, 2 * t1[:, 1]], -1)
err = np.abs(after - before)
print(f"|log10 multiplier error|: step median {np.median(err[:, 0]):.3f} p99 "
      f"{np.quantile(err[:, 0], 0.99):.3f}; wd median {np.median(err[:, 1]):.3f} p99 "
      f"{np.quantile(err[:, 1], 0.99):.3f}")
print(f"new head: share |tanh| > 0.9: step {(np.abs(t1[:, 0]) > 0.9).mean():.3f}, "
      f"wd {(np.abs(t1[:, 1]) > 0.9).mean():.3f}; mean 1 - tanh²: step "
      f"{(1 - t1[:, 0] ** 2).mean():.3f} (was {(1 - t0[:, 0] ** 2).mean():.3f}), wd "
      f"{(1 - t1[:, 1] ** 2).mean():.3f} (was {(1 - t0[:, 1] ** 2).mean():.3f})")

# ---- the new LO and θ
new_lo = dataclasses.replace(lo, step=tuple(
    dataclasses.replace(r, bound=(10.0, 100.0)) if r is head else r for r in lo.step))
new_theta = jax.tree_util.tree_map(lambda x: x, theta)
new_theta["adapt"] = {k: jnp.asarray(v) for k, v in h.items()}
new_theta["scales"] = dict(theta["scales"])
new_theta["scales"]["log_lr"] = theta["scales"]["log_lr"] + s * np.log(10.0)
meta = load_metadata("mulo-a")
meta = {"description": f"mulo-a with its adaptive head re-centred (step level {s:.3f}·ln10 "
                       "moved into LearnedScales, weight-decay bound ×100): "
                       "results/probes/recenter_head.py",
        "training": meta["training"]}
save_pretrained(OUT, new_lo, new_theta, metadata=meta)
print(f"wrote {OUT}")
