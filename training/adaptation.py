"""The adaptive LO's per-tensor multipliers over a training run, for plots and
probes (``scripts/plot_adaptation.py``, ``results/probes/head_saturation.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lopt.adaptive import AdaptiveLOptState, AdaptiveTensorState
from training.task_spec import optimizer_spec


def multiplier_curves(lo, theta, task, num_steps: int, seed: int = 0, with_loss: bool = False):
  """[num_steps, n_tensors, 2] (step, weight-decay) multipliers and [num_steps] training losses."""
  tx = lo.as_optax(theta, num_steps=num_steps, mup=optimizer_spec(task))
  data = task.data()
  key = jax.random.PRNGKey(seed)
  params = task.init(key)
  state = tx.init(params)

  def step(carry, k):
    params, state = carry
    batch = task.sample_batch(k, data=data)
    loss, g = jax.value_and_grad(task.loss)(params, batch, k)
    u, state = (tx.update(g, state, params, loss=loss) if with_loss
                else tx.update(g, state, params))
    is_ts = lambda x: isinstance(x, AdaptiveTensorState)
    mults = jnp.stack([t.mults for t in jax.tree_util.tree_leaves(state.tensors, is_leaf=is_ts)
                       if is_ts(t)])
    return (optax.apply_updates(params, u), state), (mults, loss)

  if not isinstance(state, AdaptiveLOptState):
    raise SystemExit(f"{type(lo).__name__} has no per-tensor step multiplier to plot "
                     "(only lopt.AdaptiveLOpt does).")
  keys = jax.random.split(jax.random.fold_in(key, 1), num_steps)
  _, (mults, losses) = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))((params, state), keys)
  return jax.device_get(mults), jax.device_get(losses)
