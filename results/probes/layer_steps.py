"""Where does mulo-m underfit the broad screen's wide plain MLP (digits w512
d2 b32)? Each layer's update size relative to its weights, rms(Δw)/rms(w),
averaged over steps 1-100 and 401-500, for mulo-m and for AdamW at its tuned
LR (3e-3), 4 seeds; with the μP kind the LO gets for each tensor.

    cd results/probes && ../../.venv/bin/python layer_steps.py > layer_steps.txt
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
import probe_suites
from meta_tasks import suites
from training import evaluation, task_spec

entry = next(e for e in suites.get_suite("screen-broad-cpu")
             if e.task.name == "user-mlp_digits_w512_d2_b32")
task, steps = entry.task, entry.num_steps
lo, theta = lopt.load_pretrained("mulo-m")
kinds = task_spec.optimizer_spec(task)
data = task.data()


def run(tx, seed):
  k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
  params = task.init(k_init)
  rel = lambda updates, params, *_: jax.tree.map(
      lambda u, p: jnp.sqrt(jnp.mean(u**2) / jnp.mean(p**2)), updates, params)
  step = probe_suites.train_step(task, tx, data, k_data, record=rel)
  _, (loss, rel) = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
  return loss, rel


txs = {"mulo-m": evaluation.lo_optax(lo, theta, task, steps),
       "adamw 3e-3": optax.adamw(3e-3)}
names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(kinds)]
kind_of = [str(k) for k in jax.tree.leaves(kinds)]
print(f"{task.name}, {steps} steps, 4 seeds: rms(update)/rms(weights), mean over steps 1-100 | "
      "401-500; final minibatch loss (mean of the last 50 steps)")
for label, tx in txs.items():
  loss, rel = jax.jit(jax.vmap(lambda s: run(tx, s)))(jnp.arange(4))
  print(f"{label}: loss {float(jnp.mean(loss[:, -50:])):.4f}")
  for name, kind, r in zip(names, kind_of, jax.tree.leaves(rel)):
    r = np.asarray(r)
    print(f"  {name:32s} {kind:8s} {r[:, :100].mean():.2e} | {r[:, 400:500].mean():.2e}")
