"""How much of mulo-m's update is Adam's direction and how much the learned
per-element residual, per layer, on broad-screen tasks (the wide plain MLP,
the digits MLP, the long-trained wine table, batch 8). Along mulo-m's own trajectory,
each step's update is recomputed from the same state with the residual's
output layer zeroed: that is lr·(Adam's direction) (+ decay); the difference is
lr·residual. Printed: rms of each relative to rms(w), means over steps 1-10%
and 90-100% of the run, 4 seeds (kernels only).

    cd results/probes && ../../.venv/bin/python residual_share.py > residual_share.txt
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lopt
import probe_suites
from meta_tasks import suites
from training import evaluation, task_spec

NAMES = sys.argv[1:] or ["user-mlp_digits_w512_d2_b32", "user-mlp_digits_w64_d3_b64",
                         "user-mlp_wine_w128_d3_b16", "user-mlp_digits_w128_d3_b8"]
lo, theta = lopt.load_pretrained(probe_suites.BEFORE_FAN_IN)
no_res = {**theta, "residual": {**theta["residual"],
                                "w1": jnp.zeros_like(theta["residual"]["w1"]),
                                "b1": jnp.zeros_like(theta["residual"]["b1"])}}
broad = suites.get_suite("screen-broad-cpu")

for name in NAMES:
  entry = next(e for e in broad if e.task.name == name)
  task, steps = entry.task, entry.num_steps
  data = task.data()
  tx = evaluation.lo_optax(lo, theta, task, steps)
  tx0 = evaluation.lo_optax(lo, no_res, task, steps)

  def shares(u, params, grads, state, loss):
    """rms(lr·Adam) and rms(lr·residual) over rms(w): the same state's update
    recomputed with the residual's output layer zeroed."""
    u0, _ = tx0.update(grads, state, params, loss=loss)
    rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x)))
    return jax.tree.map(lambda a, b, p: jnp.stack([rms(b), rms(a - b)]) / rms(p), u, u0, params)

  def run(seed):
    k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init(k_init)
    step = probe_suites.train_step(task, tx, data, k_data, record=shares)
    _, out = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return out

  loss, rec = jax.jit(jax.vmap(run))(jnp.arange(4))
  kinds = task_spec.optimizer_spec(task)
  kind_of = [str(k) for k in jax.tree.leaves(kinds)]
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(rec)]
  a, b = max(1, steps // 10), steps - steps // 10
  print(f"{name}, {steps} steps, 4 seeds; final minibatch loss {float(jnp.mean(loss[:, -50:])):.4f}")
  print("  tensor                          kind       adam/w early | late    residual/w early | late")
  for path, kind, r in zip(paths, kind_of, jax.tree.leaves(rec)):
    r = np.asarray(r)
    if "kernel" not in path:
      continue
    print(f"  {path:32s} {kind:9s} {r[:, :a, 0].mean():.2e} | {r[:, b:, 0].mean():.2e}     "
          f"{r[:, :a, 1].mean():.2e} | {r[:, b:, 1].mean():.2e}")
  sys.stdout.flush()
