"""Foundation tests for lopt: features vs NumPy, the μP rule, optax behaviour, bad input."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import features as F

jax.config.update("jax_default_matmul_precision", "highest")

# ------------------------------------------------------------------ NumPy reference
MOM, RMS, FAC = (0.9, 0.99, 0.999), 0.999, (0.9, 0.99, 0.999)
TAUS = (1, 3, 10, 30, 100, 300, 1e3, 3e3, 1e4, 3e4, 1e5)


def np_axes(shape):
  if len(shape) < 2:
    return None
  idx = sorted(range(len(shape)), key=lambda i: (shape[i], i))[-2:]
  return tuple(sorted(idx))


def np_init(shape):
  ax = np_axes(shape)
  if ax is None:
    return dict(mom=np.zeros((3,) + shape), rms=np.zeros(shape),
                row=np.zeros((3,) + shape), col=np.zeros((3,) + shape))
  r, c = ax
  return dict(mom=np.zeros((3,) + shape), rms=np.zeros(shape),
              row=np.zeros((3,) + tuple(d for i, d in enumerate(shape) if i != c)),
              col=np.zeros((3,) + tuple(d for i, d in enumerate(shape) if i != r)))


def np_accumulate(acc, g):
  ax = np_axes(g.shape)
  out = dict(mom=np.stack([b * acc["mom"][i] + (1 - b) * g for i, b in enumerate(MOM)]),
             rms=RMS * acc["rms"] + (1 - RMS) * g**2)
  if ax is None:
    rn = cn = g**2
  else:
    rn = (g**2).mean(axis=ax[1]) + 1e-30
    cn = (g**2).mean(axis=ax[0]) + 1e-30
  out["row"] = np.stack([b * acc["row"][i] + (1 - b) * rn for i, b in enumerate(FAC)])
  out["col"] = np.stack([b * acc["col"][i] + (1 - b) * cn for i, b in enumerate(FAC)])
  return out


def np_features(g, p, acc, raw_ratios=False):
  """[*shape, 28] normalized features, transcribed directly from the design
  (with ``raw_ratios``, m/sqrt(v), g/sqrt(fac) and m/sqrt(fac) stay raw)."""
  shape = g.shape
  ax = np_axes(shape)
  rows, cols, facs = [], [], []
  for i in range(3):
    if ax is None:
      row = col = fac = acc["row"][i]
    else:
      r, c = ax
      row = np.expand_dims(acc["row"][i], c)
      col = np.expand_dims(acc["col"][i], r)
      fac = row * col / np.expand_dims(acc["row"][i].mean(axis=r, keepdims=True), c)
    rows.append(np.broadcast_to(row, shape))
    cols.append(np.broadcast_to(col, shape))
    facs.append(np.broadcast_to(fac, shape))
  rs = lambda x: 1 / np.sqrt(x + 1e-8)
  m, v = acc["mom"], acc["rms"]
  feats = ([g, p, m[0], m[1], m[2], v, rs(v)] + [m[i] * rs(v) for i in range(3)]
           + [g * rs(facs[i]) for i in range(3)] + rows + cols
           + [rs(x) for x in rows] + [rs(x) for x in cols]
           + [m[i] * rs(facs[i]) for i in range(3)])
  feats = [np.broadcast_to(f, shape) for f in feats]
  raw = set(range(7, 13)) | set(range(25, 28)) if raw_ratios else set()
  feats = [f if i in raw else f / np.sqrt(1e-5 + np.mean(f**2)) for i, f in enumerate(feats)]
  return np.stack(feats, axis=-1)


def np_step(theta, feats, t, num_steps, cfg):
  layers = jax.tree_util.tree_map(np.asarray, theta["mlp"])
  tf = np.concatenate([np.tanh(t / np.asarray(TAUS) - 1), [t / num_steps if num_steps else 0.0]])
  h = np.maximum(feats @ layers["layer_0"]["w"] + tf @ layers["layer_0"]["w_time"]
                 + layers["layer_0"]["b"], 0)
  for i in range(1, cfg.hidden_layers):
    h = np.maximum(h @ layers[f"layer_{i}"]["w"] + layers[f"layer_{i}"]["b"], 0)
  out = h @ layers["output"]["w"] + layers["output"]["b"]
  return out[..., 0] * np.exp(cfg.exp_mult * out[..., 1]) * cfg.step_mult


SHAPES = [(), (7,), (5, 6), (4, 3, 6), (3, 3, 4, 5), (6, 6)]


def _rand_tree(key, shapes, scale=1.0):
  keys = jax.random.split(key, len(shapes))
  return {f"t{i}": scale * jax.random.normal(k, s) for i, (k, s) in enumerate(zip(keys, shapes))}


def _np_run(shape, steps=3, seed=0, grad_scale=1.0):
  """Random p and ``steps`` gradients (times ``grad_scale``) through both
  accumulators: (last g, p, acc, np_acc)."""
  rng = np.random.default_rng(seed)
  acc, np_acc = F.init_acc(shape), np_init(shape)
  p = rng.normal(size=shape).astype(np.float32)
  for _ in range(steps):
    g = (grad_scale * rng.normal(size=shape)).astype(np.float32)
    acc = F.update_accumulators(acc, jnp.asarray(g), F.default_decays())
    np_acc = np_accumulate(np_acc, g.astype(np.float64))
  return g, p, acc, np_acc


# ------------------------------------------------------------------ tests
def test_factor_axes():
  assert F.factor_axes(()) is None and F.factor_axes((5,)) is None
  assert F.factor_axes((5, 6)) == (0, 1)
  assert F.factor_axes((3, 3, 16, 32)) == (2, 3)
  assert F.factor_axes((64, 3, 8)) == (0, 2)
  assert F.factor_axes((4, 4, 4)) == (1, 2)  # ties go to later axes


@pytest.mark.parametrize("shape", SHAPES)
def test_features_match_numpy(shape):
  g, p, acc, np_acc = _np_run(shape)
  for name in ("mom", "rms", "row", "col"):
    np.testing.assert_allclose(getattr(acc, name), np_acc[name], rtol=1e-5, atol=1e-7)
  got = F.tensor_features(jnp.asarray(g), jnp.asarray(p), acc)
  want = np_features(g.astype(np.float64), p.astype(np.float64), np_acc)
  assert got.shape == shape + (F.NUM_ELEMENT_FEATURES,)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  # Normalization bounds every feature's second moment over the tensor by 1.
  ms = np.mean(np.square(np.asarray(got)).reshape(-1, F.NUM_ELEMENT_FEATURES), axis=0)
  assert np.all(ms <= 1 + 1e-5)


@pytest.mark.parametrize("shape", [(7,), (5, 6), (3, 3, 4, 5)])
def test_raw_ratio_features_match_numpy(shape):
  g, p, acc, np_acc = _np_run(shape)
  got = np.asarray(F.tensor_features(jnp.asarray(g), jnp.asarray(p), acc, raw_ratios=True))
  want = np_features(g.astype(np.float64), p.astype(np.float64), np_acc, raw_ratios=True)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert [F.ELEMENT_FEATURES[i] for i in F.RATIO_FEATURES] == [
      "mom_rsqrt0", "mom_rsqrt1", "mom_rsqrt2", "fac_g0", "fac_g1", "fac_g2",
      "fac_mom0", "fac_mom1", "fac_mom2"]
  # Scaling the gradients leaves the raw ratios unchanged (they are scale-free).
  g1e3, _, acc1e3, _ = _np_run(shape, grad_scale=1e3)
  scaled = np.asarray(F.tensor_features(jnp.asarray(g1e3), jnp.asarray(p), acc1e3, True))
  np.testing.assert_allclose(scaled[..., F.RATIO_FEATURES], got[..., F.RATIO_FEATURES],
                             rtol=1e-4)


def test_adam_init_steps_like_mu_adam():
  """With the random part's output zeroed, the Adam-initialized LO's update is
  -lr·mult·(½ m/sqrt(v+ε) + ½ m/sqrt(fac_v+ε)) in closed form, at every step."""
  cfg = lopt.MLPLOpt(mup=True, features=lopt.Features(adam=True), step_mult=0.1,
                     output_init_scale=0.0)
  theta = cfg.init(jax.random.PRNGKey(3))
  shapes = {"w_in": (6, 8), "w_hidden": (8, 8), "b": (8,)}
  kinds = {"w_in": "input", "w_hidden": "hidden", "b": "vector"}
  mult = {"w_in": 1.0, "w_hidden": 1 / 8, "b": 1.0}
  params = {k: jnp.asarray(np.random.default_rng(1).normal(size=s), jnp.float32)
            for k, s in shapes.items()}
  state = cfg.init_state(params)
  np_accs = {k: np_init(s) for k, s in shapes.items()}
  update = jax.jit(lambda g, s, p: cfg.update(theta, g, s, p, num_steps=50, mup=kinds))
  rng = np.random.default_rng(2)
  for _ in range(4):
    grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    updates, state = update(grads, state, params)
    for k, s in shapes.items():
      np_accs[k] = np_accumulate(np_accs[k], np.asarray(grads[k], np.float64))
      feats = np_features(np.asarray(grads[k], np.float64), np.asarray(params[k], np.float64),
                          np_accs[k], raw_ratios=True)
      adam = 0.5 * feats[..., 7] + 0.5 * feats[..., 25]   # mom_rsqrt0, fac_mom0
      np.testing.assert_allclose(updates[k], -0.1 * mult[k] * adam, rtol=1e-4, atol=1e-7,
                                 err_msg=k)
    params = optax.apply_updates(params, updates)
  with pytest.raises(ValueError, match="features.adam needs hidden_size"):
    lopt.MLPLOpt(hidden_size=2, features=lopt.Features(adam=True))


def test_time_features():
  tf = np.asarray(F.time_features(jnp.asarray(30), 120))
  np.testing.assert_allclose(tf[:11], np.tanh(30 / np.asarray(TAUS) - 1), rtol=1e-6)
  assert tf[11] == pytest.approx(0.25)
  assert float(F.time_features(jnp.asarray(30), None)[11]) == 0.0


def test_learnable_decays_reparameterization():
  logits = F.Decays(jnp.zeros(3), jnp.zeros(()), jnp.zeros(3))
  d = F.decays_from_logits(logits)
  np.testing.assert_allclose(d.mom, MOM, rtol=1e-6)
  np.testing.assert_allclose(d.rms, RMS, rtol=1e-6)
  d2 = F.decays_from_logits(F.Decays(jnp.full(3, np.log(2.0)), jnp.zeros(()), jnp.zeros(3)))
  np.testing.assert_allclose(1 - np.asarray(d2.mom), 2 * (1 - np.asarray(MOM)), rtol=1e-4)


def test_full_update_matches_numpy_over_steps():
  cfg = lopt.MLPLOpt(mup=False)
  theta = cfg.init(jax.random.PRNGKey(1))
  params = _rand_tree(jax.random.PRNGKey(2), SHAPES)
  state = cfg.init_state(params)
  np_accs = {k: np_init(v.shape) for k, v in params.items()}
  np_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  update = jax.jit(lambda g, s, p: cfg.update(theta, g, s, p, num_steps=50))
  for t in range(1, 4):
    grads = _rand_tree(jax.random.PRNGKey(10 + t), SHAPES)
    updates, state = update(grads, state, params)
    for k in params:
      np_accs[k] = np_accumulate(np_accs[k], np.asarray(grads[k], np.float64))
      want = -np_step(theta, np_features(np.asarray(grads[k], np.float64), np_params[k],
                                         np_accs[k]), t, 50, cfg)
      np.testing.assert_allclose(updates[k], want, rtol=2e-4, atol=1e-7, err_msg=k)
      np_params[k] = np_params[k] + np.asarray(updates[k], np.float64)
    params = optax.apply_updates(params, updates)
  assert int(state.count) == 3


def test_jit_equals_no_jit():
  cfg = lopt.MLPLOpt()
  theta = cfg.init(jax.random.PRNGKey(0))
  params = _rand_tree(jax.random.PRNGKey(1), SHAPES)
  kinds = lopt.mup.kinds_from_paths(params, {r"t[24]": "hidden"}, default="input")
  tx = cfg.as_optax(theta, num_steps=10, mup=kinds)
  grads = _rand_tree(jax.random.PRNGKey(2), SHAPES)
  s0 = tx.init(params)
  u1, s1 = tx.update(grads, s0, params)
  u2, s2 = jax.jit(tx.update)(grads, s0, params)
  for a, b in zip(jax.tree_util.tree_leaves((u1, s1)), jax.tree_util.tree_leaves((u2, s2))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_zero_output_theta_gives_zero_step():
  cfg = lopt.MLPLOpt(mup=False)
  theta = cfg.init(jax.random.PRNGKey(0))
  theta["mlp"]["output"] = jax.tree_util.tree_map(jnp.zeros_like, theta["mlp"]["output"])
  params = _rand_tree(jax.random.PRNGKey(1), SHAPES)
  updates, _ = cfg.update(theta, _rand_tree(jax.random.PRNGKey(2), SHAPES),
                          cfg.init_state(params), params)
  for u in jax.tree_util.tree_leaves(updates):
    assert np.all(np.asarray(u) == 0.0)


def test_mup_scaling_across_widths():
  """Same θ and same normalized gradients: the hidden step scales exactly as
  1/fan_in; input, output and vector steps do not change. Tiling a base
  tensor leaves every normalized feature unchanged, so the unscaled steps are
  identical across widths."""
  cfg = lopt.MLPLOpt(mup=True)
  theta = cfg.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  base = {"inp": rng.normal(size=(10, 64)), "hid": rng.normal(size=(64, 64)),
          "out": rng.normal(size=(64, 10)), "vec": rng.normal(size=(64,))}
  base_g = {k: rng.normal(size=v.shape) for k, v in base.items()}
  kinds = {"inp": "input", "hid": "hidden", "out": "output", "vec": "vector"}

  def steps(width):
    r = width // 64
    tile = {"inp": (1, r), "hid": (r, r), "out": (r, 1), "vec": (r,)}
    p = {k: jnp.asarray(np.tile(v, tile[k]), jnp.float32) for k, v in base.items()}
    g = {k: jnp.asarray(np.tile(v, tile[k]), jnp.float32) for k, v in base_g.items()}
    u, _ = jax.jit(lambda g, p: cfg.update(theta, g, cfg.init_state(p), p, mup=kinds))(g, p)
    return {k: np.asarray(v)[tuple(slice(0, s) for s in base[k].shape)] for k, v in u.items()}

  ref = steps(64)
  tol = lambda x: 1e-4 * np.abs(x).max()  # float32 reduction order differs with size
  for width in (256, 1024):
    got = steps(width)
    np.testing.assert_allclose(got["hid"] * width, ref["hid"] * 64, rtol=1e-3,
                               atol=tol(ref["hid"] * 64))
    for k in ("inp", "out", "vec"):
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=tol(ref[k]))
  # SP mode: no scaling at all.
  sp = lopt.MLPLOpt(mup=False)
  p = {k: jnp.asarray(v, jnp.float32) for k, v in base.items()}
  g = {k: jnp.asarray(v, jnp.float32) for k, v in base_g.items()}
  u_sp, _ = sp.update(theta, g, sp.init_state(p), p, mup=kinds)
  np.testing.assert_allclose(np.asarray(u_sp["hid"]) / 64, ref["hid"], rtol=1e-3, atol=tol(ref["hid"]))


def test_composes_with_optax_chain_and_schedules():
  cfg = lopt.MLPLOpt(mup=False)
  theta = cfg.init(jax.random.PRNGKey(0))
  params = _rand_tree(jax.random.PRNGKey(1), [(4, 5), (5,)])
  grads = _rand_tree(jax.random.PRNGKey(2), [(4, 5), (5,)], scale=100.0)
  lo_tx = cfg.as_optax(theta)
  tx = optax.chain(optax.clip_by_global_norm(1.0), lo_tx,
                   optax.add_decayed_weights(1e-2),
                   optax.scale_by_schedule(optax.linear_schedule(1.0, 0.0, 10)))
  state = tx.init(params)
  u, state = jax.jit(tx.update)(grads, state, params)
  # Reference: clip the gradients by hand and run the bare LO; first schedule value is 1.
  gnorm = optax.tree.norm(grads)
  clipped = jax.tree_util.tree_map(lambda g: g / gnorm, grads)
  u_lo, _ = lo_tx.update(clipped, lo_tx.init(params), params)
  for k in params:
    np.testing.assert_allclose(u[k], u_lo[k] + 1e-2 * params[k], rtol=1e-4, atol=1e-7)
  # Second step: schedule multiplies by 0.9.
  u2, _ = jax.jit(tx.update)(grads, state, params)
  assert np.all(np.isfinite(np.asarray(u2["t0"])))


def test_bf16_params_keep_float32_statistics():
  cfg = lopt.MLPLOpt(mup=False)
  theta = cfg.init(jax.random.PRNGKey(0))
  params = {"w": jnp.ones((8, 4), jnp.bfloat16), "b": jnp.zeros((4,), jnp.bfloat16)}
  tx = cfg.as_optax(theta)
  state = tx.init(params)
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.5), params)
  u, state = jax.jit(tx.update)(grads, state, params, loss=jnp.asarray(1.0))
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(u))
  stats = [x for x in jax.tree_util.tree_leaves(state.acc)]
  assert stats and all(x.dtype == jnp.float32 for x in stats)
  np.testing.assert_allclose(state.acc["w"].mom[0], 0.05, rtol=1e-6)  # (1-0.9)*0.5


def test_theta_is_an_argument_and_differentiable():
  cfg = lopt.MLPLOpt(mup=False)
  theta = cfg.init(jax.random.PRNGKey(0))
  params = {"w": jnp.ones((3, 2))}
  state = cfg.init_state(params)
  assert not any(x.size == theta["mlp"]["layer_1"]["w"].size
                 for x in jax.tree_util.tree_leaves(state))

  def inner_loss(th):
    g = {"w": params["w"] * 2.0}
    u, _ = cfg.update(th, g, state, params)
    new = optax.apply_updates(params, u)
    return jnp.sum(new["w"] ** 2)

  grads = jax.jit(jax.grad(inner_loss))(theta)
  norms = [float(jnp.linalg.norm(x)) for x in jax.tree_util.tree_leaves(grads["mlp"])]
  assert all(np.isfinite(norms)) and max(norms) > 0


class _TinyMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(16)(x))
    return nn.Dense(1)(x)


def _momentum_theta(cfg: lopt.MLPLOpt, lr_scale: float) -> dict:
  """A hand-set θ whose step is lr * normalized momentum (β=0.9): units 0/1
  carry ±mom0 through the ReLUs and the output takes their difference."""
  theta = jax.tree_util.tree_map(jnp.zeros_like, cfg.init(jax.random.PRNGKey(0)))
  mom0 = F.ELEMENT_FEATURES.index("mom0")
  l0 = theta["mlp"]["layer_0"]
  l0["w"] = l0["w"].at[mom0, 0].set(1.0).at[mom0, 1].set(-1.0)
  for i in range(1, cfg.hidden_layers):
    li = theta["mlp"][f"layer_{i}"]
    li["w"] = li["w"].at[0, 0].set(1.0).at[1, 1].set(1.0)
  out = theta["mlp"]["output"]
  out["w"] = out["w"].at[0, 0].set(lr_scale).at[1, 0].set(-lr_scale)
  return theta


def test_handset_momentum_theta_trains_a_flax_mlp():
  cfg = lopt.MLPLOpt(mup=False, step_mult=1.0)
  theta = _momentum_theta(cfg, lr_scale=0.01)
  model = _TinyMLP()
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
  y = jnp.sin(x.sum(axis=1, keepdims=True))
  params = model.init(jax.random.PRNGKey(1), x)
  loss_fn = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)
  tx = cfg.as_optax(theta, num_steps=200)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    loss, g = jax.value_and_grad(loss_fn)(params)
    u, state = tx.update(g, state, params, loss=loss)
    return optax.apply_updates(params, u), state, loss

  first = float(loss_fn(params))
  for _ in range(200):
    params, state, _ = step(params, state)
  final = float(loss_fn(params))
  assert final < 0.5 * first, (first, final)


# ------------------------------------------------------------------ μP specs
def test_infer_kinds_from_base_model():
  def mlp(width):
    return {"in": {"kernel": jnp.zeros((10, width)), "bias": jnp.zeros(width)},
            "h": {"kernel": jnp.zeros((width, width))},
            "out": {"kernel": jnp.zeros((width, 3)), "bias": jnp.zeros(3)},
            "conv": jnp.zeros((3, 3, width, width))}
  kinds = lopt.mup.infer_kinds(mlp(256), mlp(32), readout="mup")
  assert kinds == {"in": {"kernel": "input", "bias": "vector"}, "h": {"kernel": "hidden"},
                   "out": {"kernel": "output", "bias": "vector"}, "conv": "hidden"}
  mults = lopt.mup.multipliers(kinds, mlp(256))
  assert mults["h"]["kernel"] == 1 / 256 and mults["conv"] == 1 / (9 * 256)
  assert mults["in"]["kernel"] == mults["out"]["kernel"] == mults["out"]["bias"] == 1.0
  # The default is a plain (SP) readout: its step gets 1/fan_in.
  sp = lopt.mup.infer_kinds(mlp(256), mlp(32))
  assert sp["out"]["kernel"] == "sp_output"
  assert lopt.mup.multipliers(sp, mlp(256))["out"]["kernel"] == 1 / 256


def test_explicit_float_multipliers_are_used_as_is():
  params = {"a": jnp.zeros((4, 4)), "b": jnp.zeros(4)}
  assert lopt.mup.multipliers({"a": 0.5, "b": "vector"}, params) == {"a": 0.5, "b": 1.0}


# ------------------------------------------------------------------ bad input
def test_bad_input_errors():
  cfg = lopt.MLPLOpt()
  theta = cfg.init(jax.random.PRNGKey(0))
  params = {"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)}
  with pytest.raises(TypeError, match=r"\['w'\].*int32"):
    cfg.as_optax(theta, mup={"w": "hidden"}).init({"w": jnp.zeros((2, 2), jnp.int32)})
  with pytest.raises(ValueError, match="same tree structure"):
    cfg.as_optax(theta, mup={"w": "hidden"}).init(params)
  with pytest.raises(ValueError, match="Unknown μP kind 'hiden'"):
    cfg.as_optax(theta, mup={"w": "hiden", "b": "vector"}).init(params)
  with pytest.raises(ValueError, match="needs to know which tensors"):
    cfg.as_optax(theta).init(params)
  bad = jax.tree_util.tree_map(lambda x: x, theta)
  bad["mlp"]["layer_1"]["w"] = jnp.zeros((16, 16))
  with pytest.raises(ValueError, match=r"\['layer_1'\]\['w'\].*\(16, 16\)"):
    cfg.as_optax(bad)
  with pytest.raises(ValueError, match="missing tensors"):
    lopt.MLPLOpt(hidden_layers=3).as_optax(theta)
  for n in (0, -5):
    with pytest.raises(ValueError, match="num_steps must be a positive int"):
      cfg.as_optax(theta, num_steps=n)
  with pytest.raises(ValueError, match="reads parameter values"):
    tx = lopt.MLPLOpt(mup=False).as_optax(theta)
    tx.update(params, tx.init(params))


def test_without_absolute_time_only_the_fraction_of_training_matters():
  """absolute_time=False: step t of N and step 2t of 2N give the same update
  (same accumulators), while the reference LO tells them apart."""
  params = _rand_tree(jax.random.PRNGKey(5), [(5, 6), (7,)])
  grads = _rand_tree(jax.random.PRNGKey(6), [(5, 6), (7,)])
  outs = {}
  for absolute in (True, False):
    cfg = lopt.MLPLOpt(mup=False, features=lopt.Features(absolute_time=absolute))
    theta = cfg.init(jax.random.PRNGKey(7))
    theta["mlp"]["layer_0"]["w_time"] = theta["mlp"]["layer_0"]["w_time"] * 30.0
    state = cfg.init_state(params)
    run = lambda count, n: cfg.update(theta, grads, state._replace(count=jnp.asarray(count)),
                                      params, num_steps=n)[0]
    outs[absolute] = (run(9, 40), run(19, 80))   # the update is at step count + 1
  for k in params:
    np.testing.assert_allclose(outs[False][0][k], outs[False][1][k], rtol=1e-6)
    assert not np.allclose(outs[True][0][k], outs[True][1][k], rtol=1e-3)


def test_cosine_schedule_scales_the_step_exactly():
  """lr_schedule="cosine": the update is the constant-schedule update times
  0.5 (1 + cos(π t / N)) at update t (same θ and state); without num_steps it
  is the constant one."""
  params = _rand_tree(jax.random.PRNGKey(8), [(5, 6), (7,), ()])
  grads = _rand_tree(jax.random.PRNGKey(9), [(5, 6), (7,), ()])
  const, cos = lopt.MLPLOpt(mup=False), lopt.MLPLOpt(mup=False, step=(lopt.step_rules.Cosine(),))
  theta = const.init(jax.random.PRNGKey(10))
  state = const.init_state(params)
  for count, n in [(0, 10), (4, 10), (9, 10), (30, 1000), (12, None)]:
    s = state._replace(count=jnp.asarray(count))
    want, _ = const.update(theta, grads, s, params, num_steps=n)
    got, _ = cos.update(theta, grads, s, params, num_steps=n)
    factor = 1.0 if n is None else 0.5 * (1 + np.cos(np.pi * (count + 1) / n))
    for k in params:
      np.testing.assert_allclose(got[k], factor * np.asarray(want[k]), rtol=1e-5, atol=1e-9)
  with pytest.raises(ValueError, match="step must be a tuple of lopt.step_rules rules"):
    lopt.MLPLOpt(step=("linear",))
