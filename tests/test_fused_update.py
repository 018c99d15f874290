"""The fused Pallas update of MLPLOpt (interpret mode on CPU) equals the XLA reference:
every tensor rank, a small model, vmapped particles, and gradients wrt θ."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from cli_helpers import pallas_grids

jax.config.update("jax_default_matmul_precision", "highest")

# Ranks 0-4 and the layouts of the kernels' views: masked tiles and several
# tiles per axis ("vector", "dense"), factor axes not trailing (T > 1,
# "trailing"), a batch axis and non-adjacent factor axes (A > 1, M > 1,
# "heads"), and a bf16 tensor whose tiles fit exactly, two per row.
SHAPES = {"scalar": (), "vector": (300,), "dense": (40, 33), "trailing": (5, 6, 2),
          "heads": (2, 6, 3, 5)}
BF16 = {"exact_bf16": (4, 512)}
KINDS = {"scalar": "vector", "vector": "vector", "dense": "hidden", "trailing": "output",
         "heads": "hidden", "exact_bf16": "input"}

def _theta(cfg, seed=0):
  """θ with a larger output layer, so steps depend strongly on every feature."""
  theta = cfg.init(jax.random.PRNGKey(seed))
  theta["mlp"]["output"]["w"] = theta["mlp"]["output"]["w"] * 100.0
  return theta


def _tree(key, shapes, dtype=jnp.float32):
  keys = jax.random.split(key, len(shapes))
  return {n: jax.random.normal(k, s).astype(dtype) for k, (n, s) in zip(keys, shapes.items())}


def _params_and_grads(steps=3):
  key_p, key_b, *key_g = jax.random.split(jax.random.PRNGKey(1), 2 + steps)
  params = {**_tree(key_p, SHAPES), **_tree(key_b, BF16, jnp.bfloat16)}
  grads = [{**_tree(k, SHAPES), **_tree(jax.random.fold_in(k, 1), BF16, jnp.bfloat16)}
           for k in key_g]
  return params, jax.tree_util.tree_map(lambda *g: jnp.stack(g), *grads)


def _unroll(cfg, theta, params, grads_seq, mup=None):
  """Apply the LO for each step of ``grads_seq``: per-step updates and states."""
  def step(carry, grads):
    params, state = carry
    updates, state = cfg.update(theta, grads, state, params, num_steps=20, mup=mup)
    return (optax.apply_updates(params, updates), state), (updates, state)
  _, (updates, states) = jax.lax.scan(step, (params, cfg.init_state(params)), grads_seq)
  return updates, states


def _assert_trees_close(got, want, rtol=2e-4):
  flat_got = jax.tree_util.tree_flatten_with_path(got)[0]
  for (path, g), w in zip(flat_got, jax.tree_util.tree_leaves(want)):
    g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
    tol = 2e-2 if jax.tree_util.keystr(path).find("bf16") >= 0 else rtol  # bf16 rounding
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol * (np.abs(w).max() + 1e-30),
                               err_msg=jax.tree_util.keystr(path))


# The shipped robust form (mulo-r, mulo-s): lopt.forms.robust's width-8 network and step rules.
SHIPPED = {k: getattr(lopt.forms.robust(), k) for k in ("hidden_size", "step_mult", "features",
                                                         "step")}


@pytest.mark.parametrize("options", [{}, {"features": lopt.Features(adam=True, absolute_time=False),
                                          "step": (lopt.step_rules.Cosine(),)}, SHIPPED],
                         ids=["reference", "adam_init_cosine", "shipped"])
def test_fused_equals_xla_on_every_rank_over_steps(options):
  xla = lopt.MLPLOpt(backend="xla", **options)
  fused = lopt.MLPLOpt(backend="pallas", **options)
  theta = _theta(xla)
  params, grads_seq = _params_and_grads()
  run = lambda cfg: jax.jit(lambda *args: _unroll(cfg, *args, mup=KINDS))(
      theta, params, grads_seq)
  want, got = run(xla), run(fused)
  _assert_trees_close(got, want)
  assert all(np.abs(np.asarray(u[-1], np.float32)).max() > 0 for u in want[0].values())


class _TinyMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(nn.relu(nn.Dense(16)(x)))


def test_fused_equals_xla_training_a_small_model():
  model = _TinyMLP()
  x = jax.random.normal(jax.random.PRNGKey(0), (32, 5))
  y = jax.random.normal(jax.random.PRNGKey(1), (32, 3))
  params = model.init(jax.random.PRNGKey(2), x)
  loss_fn = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)

  def train(cfg):
    tx = optax.chain(optax.clip_by_global_norm(1.0),
                     cfg.as_optax(_theta(lopt.MLPLOpt(mup=False)), num_steps=10))

    def step(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
      return (optax.apply_updates(params, updates), state), loss_fn(params)
    return jax.lax.scan(step, (params, tx.init(params)), None, length=4)

  want = jax.jit(lambda: train(lopt.MLPLOpt(mup=False, backend="xla")))()
  got = jax.jit(lambda: train(lopt.MLPLOpt(mup=False, backend="pallas")))()
  _assert_trees_close(got, want)


@pytest.mark.parametrize("shared_inner_state", [False, True])
def test_vmapped_particles_equal_per_particle_loop(shared_inner_state):
  """Antithetic θ±ε particles. Either every particle has its own params, grads
  and state, or only θ is per particle (the shared operands are never copied)."""
  xla, fused = lopt.MLPLOpt(mup=False, backend="xla"), lopt.MLPLOpt(mup=False, backend="pallas")
  theta = _theta(xla)
  leaves, treedef = jax.tree_util.tree_flatten(theta)
  keys = jax.random.split(jax.random.PRNGKey(3), len(leaves))
  eps = treedef.unflatten([0.1 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
  thetas = jax.tree_util.tree_map(lambda t, e: jnp.stack([t + e, t - e, t + 2 * e, t - 2 * e]),
                                  theta, eps)
  particles = 4
  shapes = {"w": (5, 6), "b": (6,)}
  inner = 1 if shared_inner_state else particles
  params = jax.vmap(lambda k: _tree(k, shapes))(jax.random.split(jax.random.PRNGKey(4), inner))
  grads = jax.vmap(lambda k: _tree(k, shapes))(jax.random.split(jax.random.PRNGKey(5), inner))
  state = jax.vmap(xla.init_state)(params)
  state = state._replace(acc=jax.tree_util.tree_map(lambda a: a + 0.01, state.acc))  # not all 0

  in_axes = (0, None, None, None) if shared_inner_state else 0
  take = (lambda t, i: jax.tree_util.tree_map(lambda x: x[0], t)) if shared_inner_state else (
      lambda t, i: jax.tree_util.tree_map(lambda x: x[i], t))
  if shared_inner_state:
    params, grads, state = (take(t, 0) for t in (params, grads, state))
  update = lambda cfg: lambda th, g, s, p: cfg.update(th, g, s, p, num_steps=10)
  batched = jax.vmap(update(fused), in_axes=in_axes)
  grids = pallas_grids(jax.make_jaxpr(batched)(thetas, grads, state, params).jaxpr)
  assert len(grids) == 4 and all(g[0] == particles for g in grids)  # 2 passes x 2 tensors

  got = jax.jit(batched)(thetas, grads, state, params)
  one = jax.jit(update(xla))
  for i in range(particles):
    pick = lambda t: t if shared_inner_state else take(t, i)
    want = one(jax.tree_util.tree_map(lambda x: x[i], thetas), pick(grads), pick(state),
               pick(params))
    _assert_trees_close(jax.tree_util.tree_map(lambda x: x[i], got), want, rtol=1e-4)


def test_gradient_wrt_theta_matches_xla():
  """Truncated backprop through two LO steps (the custom VJP's backward pass is
  the XLA reference's VJP, so the gradients agree)."""
  params = _tree(jax.random.PRNGKey(6), {"w": (5, 6), "b": (6,)})
  loss_fn = lambda p: jnp.sum(jnp.sin(p["w"]) ** 2) + jnp.sum(p["b"] ** 2)

  def meta_loss(cfg, theta):
    def step(carry, _):
      p, s = carry
      u, s = cfg.update(theta, jax.grad(loss_fn)(p), s, p, num_steps=10)
      p = optax.apply_updates(p, u)
      return (p, s), loss_fn(p)
    return jnp.sum(jax.lax.scan(step, (params, cfg.init_state(params)), None, length=2)[1])

  theta = _theta(lopt.MLPLOpt(mup=False))
  grad = jax.jit(jax.grad(meta_loss, argnums=1), static_argnums=0)
  want = grad(lopt.MLPLOpt(mup=False, backend="xla"), theta)
  got = grad(lopt.MLPLOpt(mup=False, backend="pallas"), theta)
  _assert_trees_close(got, want, rtol=1e-4)
  assert max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(want)) > 0


def test_kernels_lower_to_triton_for_gpu(monkeypatch):
  """Without a GPU: lower the compiled (non-interpret) kernels for CUDA, which
  runs the Pallas -> Triton lowering (every op supported, every tile a power of
  two), for each layout, a bf16 tensor, and vmapped particles."""
  monkeypatch.setattr(lopt.kernels, "interpret_mode", lambda: False)
  fused = lopt.MLPLOpt(mup=False, backend="pallas")
  theta = fused.init(jax.random.PRNGKey(0))
  params, _ = _params_and_grads(steps=1)
  state = fused.init_state(params)
  update = lambda th, g, s, p: fused.update(th, g, s, p, num_steps=10)
  lowered = jax.jit(update).trace(theta, params, state, params).lower(
      lowering_platforms=("cuda",))
  triton_calls = lowered.as_text().count("xla.gpu.triton")
  assert triton_calls == 2 * len(params), triton_calls
  thetas = jax.tree_util.tree_map(lambda x: jnp.stack([x, -x]), theta)
  batched = jax.vmap(update, in_axes=(0, None, None, None))
  some = lambda tree: {k: tree[k] for k in ("vector", "heads")}
  jax.jit(batched).trace(thetas, some(params), state._replace(acc=some(state.acc)),
                         some(params)).lower(lowering_platforms=("cuda",))


def test_backend_selection():
  assert lopt.kernels.use_pallas("pallas") and not lopt.kernels.use_pallas("xla")
  assert lopt.kernels.use_pallas("auto") == (jax.default_backend() == "gpu")
  with pytest.raises(ValueError, match="backend must be one of"):
    lopt.MLPLOpt(backend="triton")
  assert hash(lopt.MLPLOpt(backend="pallas")) != hash(lopt.MLPLOpt(backend="xla"))
