"""VeLO-style LO: features, controls, the μP and RMS(p) rules, optax use, reference import."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt import common
from lopt import features as F
from lopt import velo as V
from lopt import velo_import as VI

jax.config.update("jax_default_matmul_precision", "highest")

LO = V.VeLOpt()  # SP (VeLO); defaults: LSTM 64, bank of 16 MLPs of width 4
MU_LO = V.VeLOpt(mup=True)
SHAPES = [(), (7,), (5, 6), (4, 3, 6), (3, 3, 4, 5)]


def _tree(seed, shapes, scale=1.0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)  # NumPy: eager jax.random compiles per shape
  return {f"t{i}": jnp.asarray((scale * rng.normal(size=s)).astype(dtype))
          for i, s in enumerate(shapes)}


def _finite(tree):  # in NumPy: eager jnp ops would each compile per shape
  return all(np.all(np.isfinite(np.asarray(x).astype(np.float32)))
             for x in jax.tree_util.tree_leaves(tree))


# ------------------------------------------------------------------ features and controls
def test_every_feature_has_its_shape_and_is_finite():
  theta = LO.init(jax.random.PRNGKey(0))
  params = _tree(1, SHAPES, dtype=jnp.bfloat16)
  state = jax.jit(LO.init_state)(params)

  @jax.jit
  def step(g, s, p, loss):
    updates, new_state = LO.update(theta, g, s, p, num_steps=20, loss=loss)
    return (LO.controls(theta, g, s, p, num_steps=20, loss=loss), updates, new_state,
            optax.apply_updates(p, updates))
  grads_seq = [_tree(10 + t, SHAPES, 0.1, jnp.bfloat16) for t in range(3)]
  grads_seq.append({k: jnp.asarray(np.zeros(v.shape, v.dtype)) for k, v in params.items()})
  for t, grads in enumerate(grads_seq):
    loss = jnp.asarray(3.0 - 0.5 * t)
    ctrl, updates, new_state, new_params = step(grads, state, params, loss)
    T = len(SHAPES)
    assert ctrl.lstm_inputs.shape == (T, V.NUM_LSTM_FEATURES) == (T, 31)
    assert ctrl.mix_weights.shape == (T, LO.num_mlps) and ctrl.lr_mult.shape == (T,)
    assert ctrl.lstm_h.shape == ctrl.lstm_c.shape == (T, LO.lstm_hidden)
    assert _finite(ctrl)
    cols = VI._offsets(V.LSTM_FEATURES)
    stats = np.asarray(ctrl.lstm_inputs)
    np.testing.assert_array_equal(stats[:, cols["rank"]], np.eye(5))  # ranks 0..4
    for name in ("mean_abs_mom", "var_mom", "mean_rms", "var_rms"):
      assert np.all(np.abs(stats[:, cols[name]]) <= 5.0)
    frac = np.tanh(10 * ((t + 1) / 20 - np.asarray(V.FRACTION_CENTERS)))
    np.testing.assert_allclose(stats[:, cols["frac_tanh"]], np.tile(frac, (T, 1)), rtol=1e-5)
    assert np.all(np.abs(stats[:, cols["loss_trend"]]) <= 1.0)
    np.testing.assert_allclose(np.sum(ctrl.mix_weights, axis=-1), 1.0, rtol=1e-6)
    assert np.all(np.asarray(ctrl.mix_weights) >= 0) and np.all(np.asarray(ctrl.lr_mult) > 0)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree_util.tree_leaves(updates))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(
        (new_state.acc, new_state.lstm_h, new_state.lstm_c, new_state.loss)))
    assert _finite((updates, new_state))
    np.testing.assert_array_equal(new_state.lstm_h, ctrl.lstm_h)  # the LSTM state is carried
    params, state = new_params, new_state
  assert int(state.count) == 4
  # Per-element features: lopt.features' 28, exactly, then the two VeLO adds.
  g = grads_seq[0]["t3"].astype(jnp.float32)
  p = params["t3"].astype(jnp.float32)
  acc = jax.jit(F.update_accumulators)(F.init_acc(g.shape), g, F.default_decays())
  feats = np.stack(jax.jit(V.element_features)(g, p, acc), axis=-1)
  assert feats.shape == g.shape + (V.NUM_PARAM_FEATURES,) == (4, 3, 6, 30) and _finite(feats)
  np.testing.assert_allclose(feats[..., :F.NUM_ELEMENT_FEATURES],
                             jax.jit(F.tensor_features)(g, p, acc), rtol=1e-6, atol=1e-7)
  ms = np.mean(np.square(np.asarray(feats)).reshape(-1, V.NUM_PARAM_FEATURES), axis=0)
  assert np.all(ms <= 1 + 1e-5)


def test_fused_mlp_matches_the_stacked_form_and_its_gradient():
  """The per-element MLP runs as fused channel sums and is differentiated
  through the stacked/matmul form: equal outputs make the stacked form's
  gradient the right one (autodiff of the channel form itself compiles for
  minutes, which is why the custom VJP exists)."""
  rng = np.random.default_rng(0)
  arr = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  feats = [arr(5, 4) for _ in range(V.NUM_PARAM_FEATURES)]
  layers = ((arr(30, 4), arr(4)), (arr(4, 4), arr(4)), (arr(4, 2), arr(2)))
  out = jax.jit(common.per_element_mlp)(feats, layers)
  want = jax.jit(common.stacked_mlp)(feats, layers)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
  objective = lambda mlp: lambda f, l: jnp.sum(mlp(f, l)[0] * jnp.tanh(mlp(f, l)[1]))
  got = jax.jit(jax.grad(objective(common.per_element_mlp), argnums=(0, 1)))(feats, layers)
  ref = jax.jit(jax.grad(objective(common.stacked_mlp), argnums=(0, 1)))(feats, layers)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_tensor_stats_match_numpy():
  rng = np.random.default_rng(0)
  shape, decays = (6, 5), F.default_decays()
  acc = F.init_acc(shape)
  for _ in range(3):
    g = rng.normal(size=shape).astype(np.float32)
    acc = F.update_accumulators(acc, jnp.asarray(g), decays)
  got = np.asarray(jax.jit(V.tensor_stats)(jnp.asarray(g), acc, decays, jnp.asarray(3)))
  mom = np.asarray(acc.mom, np.float64) / (1 - np.asarray(F.MOM_DECAYS)[:, None, None] ** 3)
  v = np.asarray(acc.rms, np.float64) / (1 - F.RMS_DECAY ** 3)
  m_hat, v_hat = mom / np.sqrt(v.mean()), v / v.mean()
  lc = lambda x: 0.5 * np.clip(np.log(np.maximum(x, 1e-8)), -10, 10)
  want = np.concatenate([lc(np.abs(m_hat).mean(axis=(1, 2))), lc(m_hat.var(axis=(1, 2))),
                         [lc(v.mean() / np.mean(g.astype(np.float64) ** 2))],
                         [lc(v_hat.var())], np.eye(5)[2]])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_loss_features_follow_the_trend_and_ignore_scale():
  update, features = jax.jit(V.update_loss_stats), jax.jit(V.loss_features)

  def run(losses):
    stats = V.init_loss_stats()
    for t, loss in enumerate(losses, start=1):
      stats = update(stats, jnp.asarray(loss, jnp.float32), jnp.asarray(t))
    return np.asarray(features(stats, jnp.asarray(len(losses))))

  falling = 5.0 * np.exp(-np.arange(60) / 20.0)
  assert np.all(run(falling) < 0)
  assert np.all(run(falling[::-1]) > 0)  # rising
  np.testing.assert_allclose(run(10.0 * falling + 3.0), run(falling), atol=1e-4)
  with_nan = falling.copy()
  with_nan[30] = np.nan
  assert np.all(np.isfinite(run(with_nan)))
  np.testing.assert_array_equal(run(falling[:2]), 0.0)  # too few losses yet


# ------------------------------------------------------------------ the μP and RMS(p) rules
def test_mup_rule_on_hidden_matrices_across_widths():
  """Tile every tensor to a larger width. The LSTM statistics are means of
  scale-free quantities, so every tensor's statistics, hence the max-pooled
  mixing and the controls, are unchanged; so are the normalized per-element
  features. The hidden step must then scale as exactly 1/fan_in and the others
  not at all."""
  theta = MU_LO.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  # No input layer: like the output layer it has multiplier 1, but the output's
  # fan-in grows with width, so it is the case a wrong rule would scale.
  base = {"hid": rng.normal(size=(32, 32)), "out": rng.normal(size=(32, 10)),
          "vec": rng.normal(size=(32,))}
  base_g = [{k: rng.normal(size=v.shape) for k, v in base.items()} for _ in range(2)]
  kinds = {"hid": "hidden", "out": "output", "vec": "vector"}

  @jax.jit
  def step(g, state, params, loss):
    ctrl = MU_LO.controls(theta, g, state, params, num_steps=10, loss=loss)
    return ctrl, MU_LO.update(theta, g, state, params, num_steps=10, mup=kinds, loss=loss)

  def run(width):
    r = width // 32
    tile = {"hid": (r, r), "out": (r, 1), "vec": (r,)}
    big = lambda tree: {k: jnp.asarray(np.tile(v, tile[k]), jnp.float32) for k, v in tree.items()}
    params = big(base)
    state = jax.jit(MU_LO.init_state)(params)
    for t, g in enumerate(base_g):  # two steps: the LSTM state and loss EMAs carry over
      ctrl, (updates, state) = step(big(g), state, params, jnp.asarray(2.0 - t))
    crop = {k: np.asarray(v)[tuple(slice(0, s) for s in base[k].shape)]
            for k, v in updates.items()}
    return crop, ctrl

  ref, ref_ctrl = run(32)
  tol = lambda x: 1e-4 * np.abs(x).max()
  for width in (128, 512):
    got, ctrl = run(width)
    np.testing.assert_allclose(ctrl.lstm_inputs, ref_ctrl.lstm_inputs, atol=2e-5)
    np.testing.assert_allclose(ctrl.lr_mult, ref_ctrl.lr_mult, rtol=1e-4)
    np.testing.assert_allclose(got["hid"] * width, ref["hid"] * 32, rtol=1e-3,
                               atol=tol(ref["hid"] * 32))
    for k in ("out", "vec"):
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=tol(ref[k]))


def test_sp_step_is_proportional_to_rms_of_params():
  """p enters the step only through (a) the normalized p feature, which is
  scale-free up to the 1e-5 inside its normalization, and (b) the RMS(p)
  factor (SP only); the LSTM statistics do not read p at all. So with the same
  gradients, doubling p doubles the SP step and leaves the μP step unchanged."""
  # One (input-kind, multiplier-1) matrix: factored features included, one compile per mode.
  params, grads = _tree(1, [(6, 8)]), _tree(2, [(6, 8)], 0.01)
  double = jax.tree_util.tree_map(lambda p: 2.0 * p, params)
  kinds = {"t0": "input"}
  theta = LO.init(jax.random.PRNGKey(3))

  @jax.jit
  def run(p):  # both modes in one program: one compile
    return {lo.mup: (lo.controls(theta, grads, lo.init_state(p), p, loss=1.0),
                     lo.update(theta, grads, lo.init_state(p), p, mup=kinds, loss=1.0)[0]["t0"])
            for lo in (LO, MU_LO)}

  once, twice = run(params), run(double)
  steps = {}
  for mup, ratio in ((False, 2.0), (True, 1.0)):
    (c1, u1), (c2, u2) = once[mup], twice[mup]
    np.testing.assert_array_equal(c2.lstm_inputs, c1.lstm_inputs)
    np.testing.assert_array_equal(c2.mix_weights, c1.mix_weights)
    np.testing.assert_allclose(np.asarray(u2), ratio * np.asarray(u1), rtol=1e-4,
                               atol=1e-6 * np.abs(np.asarray(u1)).max())
    steps[mup] = np.asarray(u1)
  # Closed form of the SP scale: with the same θ and inputs, the SP step is
  # RMS(p) times the μP step of a tensor whose μP multiplier is 1.
  rms = float(np.sqrt(np.mean(np.square(np.asarray(params["t0"]))) + V.PARAM_SCALE_EPS))
  np.testing.assert_allclose(steps[False], rms * steps[True], rtol=1e-5)


# ------------------------------------------------------------------ optax interface
def test_jit_equals_no_jit_and_composes_with_chain():
  theta = LO.init(jax.random.PRNGKey(0))
  shapes = [(4, 3)]  # eager execution compiles every op: keep it to one tensor
  params, grads = _tree(1, shapes), _tree(2, shapes, 0.1)
  tx = optax.chain(optax.clip_by_global_norm(1.0), LO.as_optax(theta, num_steps=10))
  s0 = tx.init(params)
  u1, s1 = tx.update(grads, s0, params, loss=jnp.asarray(1.5))
  u2, s2 = jax.jit(tx.update)(grads, s0, params, loss=jnp.asarray(1.5))
  for a, b in zip(jax.tree_util.tree_leaves((u1, s1)), jax.tree_util.tree_leaves((u2, s2))):
    # Fusion changes float32 rounding; tolerance relative to each leaf's scale.
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(np.asarray(b)).max()))
  assert any(np.abs(np.asarray(u)).max() > 0 for u in jax.tree_util.tree_leaves(u1))


@pytest.mark.parametrize("lo", [LO, MU_LO], ids=["sp", "mup"])
def test_one_nan_gradient_element_changes_only_itself(lo):
  """A NaN element is zeroed and counted: every tensor steps exactly as if that
  element's gradient were 0 (the LSTM pools over tensors, so without this one
  NaN reaches them all), and the state stays finite afterwards."""
  theta = lo.init(jax.random.PRNGKey(0))
  shapes = [(7,), (5, 6), (4, 3)]
  params, grads = _tree(1, shapes), _tree(2, shapes, 0.1)
  kinds = {"t0": "vector", "t1": "hidden", "t2": "input"}
  tx = lo.as_optax(theta, num_steps=10, mup=kinds if lo.mup else None)
  update = jax.jit(tx.update)
  loss = jnp.asarray(1.5)
  bad = dict(grads, t1=grads["t1"].at[2, 3].set(jnp.nan))
  zeroed = dict(grads, t1=grads["t1"].at[2, 3].set(0.0))
  u_bad, s_bad = update(bad, tx.init(params), params, loss=loss)
  u_zero, _ = update(zeroed, tx.init(params), params, loss=loss)
  for k in params:
    np.testing.assert_array_equal(np.asarray(u_bad[k]), np.asarray(u_zero[k]))
  assert int(s_bad.nonfinite) == 1
  u2, s2 = update(grads, s_bad, params, loss=loss)
  assert _finite((u2, s2)) and int(s2.nonfinite) == 1


def test_missing_loss_and_other_bad_input_fail_clearly():
  theta = LO.init(jax.random.PRNGKey(0))
  params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
  tx = LO.as_optax(theta)
  state = tx.init(params)
  with pytest.raises(ValueError, match=r"pass it as loss=.*tx\.update\(grads, state, params, "
                                       r"loss=loss\)"):
    tx.update(params, state, params)
  with pytest.raises(ValueError, match="loss="):
    LO.update(theta, params, state, params)
  with pytest.raises(ValueError, match="must be a scalar"):
    tx.update(params, state, params, loss=jnp.ones(3))
  with pytest.raises(ValueError, match="reads parameter values"):
    tx.update(params, state, loss=1.0)
  with pytest.raises(ValueError, match=r"VeLOpt\) is in μP mode.*VeLOpt\(mup=False\)"):
    MU_LO.as_optax(theta).init(params)
  with pytest.raises(ValueError, match=r"\['lstm'\]\['[bw]'\]"):
    V.VeLOpt(lstm_hidden=32).as_optax(theta)


# ------------------------------------------------------------------ training, θ
def _regression():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
  y = jnp.sin(x.sum(axis=1, keepdims=True))
  readout = jnp.linspace(-0.5, 0.5, 16)[:, None]  # fixed: two tensors keep compiles short
  # The zero bias exercises RMS(p) = 0 (the SP step then rests on PARAM_SCALE_EPS).
  params = {"w": jnp.asarray(0.5 * rng.normal(size=(3, 16)), jnp.float32), "b": jnp.zeros(16)}
  loss_fn = lambda p: jnp.mean((jnp.tanh(x @ p["w"] + p.get("b", 0.0)) @ readout - y) ** 2)
  return params, loss_fn


def test_short_training_under_scan_and_vmap_over_theta_is_finite():
  params, loss_fn = _regression()

  def train(theta, lo):
    def step(carry, _):
      p, s = carry
      loss, g = jax.value_and_grad(loss_fn)(p)
      u, s = lo.update(theta, g, s, p, num_steps=40, loss=loss)
      return (optax.apply_updates(p, u), s), loss
    (p, s), losses = jax.lax.scan(step, (params, lo.init_state(params)), None, length=40)
    return p, losses

  thetas = jax.vmap(LO.init)(jax.random.split(jax.random.PRNGKey(5), 2))
  p_batch, losses = jax.jit(jax.vmap(lambda th: train(th, LO)))(thetas)
  assert _finite(p_batch) and _finite(losses)
  first = jax.tree_util.tree_map(lambda x: np.asarray(x)[0], thetas)
  p0, losses0 = jax.jit(lambda th: train(th, LO))(first)
  np.testing.assert_allclose(losses[0], losses0, rtol=2e-4)
  moved = max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
      jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(params)))
  assert moved > 0


def test_theta_is_differentiable_through_an_update():
  params, loss_fn = _regression()
  params = {"w": params["w"]}  # one tensor: the backward pass is the slowest compile here
  theta = LO.init(jax.random.PRNGKey(0))

  def meta_loss(th):
    loss, g = jax.value_and_grad(loss_fn)(params)
    u, _ = LO.update(th, g, LO.init_state(params), params, num_steps=10, loss=loss)
    return loss_fn(optax.apply_updates(params, u))

  grads = jax.jit(jax.grad(meta_loss))(theta)
  assert _finite(grads)
  for group in ("lstm_init", "mix", "lstm_in", "lstm", "to_mix", "to_lr", "bank",
                "decay_logits"):
    leaves = jax.tree_util.tree_leaves(grads[group])
    assert max(np.abs(np.asarray(x)).max() for x in leaves) > 0, group


# ------------------------------------------------------------------ reference import
SMALL_REF = V.VeLOpt(lstm_hidden=8, num_mlps=3, reference_heads=True)


def _synthetic_reference(config, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda s: rng.normal(size=s).astype(np.float32),
                                VI.reference_shapes(config),
                                is_leaf=lambda x: isinstance(x, tuple))


def test_reference_loader_round_trips_a_synthetic_file(tmp_path):
  tree = _synthetic_reference(SMALL_REF)
  path = tmp_path / "params"
  # The published layout: flax.serialization.to_bytes(ParameterCheckpoint(θ, gen_id, step)).
  path.write_bytes(flax.serialization.msgpack_serialize({"params": tree, "gen_id": "x",
                                                         "step": 3}))
  theta = VI.load_reference_velo(path, SMALL_REF)
  SMALL_REF.check_theta(theta)
  np.testing.assert_array_equal(theta["lstm"]["w"], tree["rnn_params"]["rnn/linear"]["w"])
  np.testing.assert_array_equal(theta["lstm_init"]["h"], tree["lstm_init_state"]["hidden"][0])
  ff = tree["ff_mod_stack"]["~"]
  np.testing.assert_array_equal(theta["bank"]["w0"][:, V.PARAM_FEATURES.index("g_clip")],
                                ff["w0__1"][:, 0])
  np.testing.assert_array_equal(theta["bank"]["w0"][:, V.PARAM_FEATURES.index("fac_mom2")],
                                ff["w0__13"][:, 2])
  rows = VI._offsets(V.LSTM_FEATURES)
  np.testing.assert_array_equal(theta["mix"]["w"][rows["var_mom"]],
                                tree["rnn_params"]["linear_1"]["w"][24:27])  # ref var_m
  np.testing.assert_array_equal(theta["mix"]["w"][rows["mean_abs_mom"]], 0.0)
  # Back to the reference layout: identical except what we drop.
  back = VI._flatten(VI.reference_tree_from_theta(theta, SMALL_REF))
  for key, value in VI._flatten(tree).items():
    if key in VI.DROPPED:
      np.testing.assert_array_equal(back[key], 0.0)
    elif key[-1] in ("w2", "b2"):
      np.testing.assert_array_equal(back[key][..., :2], value[..., :2])
    else:
      np.testing.assert_array_equal(back[key], value, err_msg="/".join(key))
  # Older files: a (θ, gen_id, step) tuple and flax's old namedtuple encoding.
  old = dict(tree, lstm_init_state={"name": "LSTMState",
                                    "fields": {"0": "hidden", "1": "cell"},
                                    "values": {"0": tree["lstm_init_state"]["hidden"],
                                               "1": tree["lstm_init_state"]["cell"]}})
  path.write_bytes(flax.serialization.msgpack_serialize({"0": old, "1": "", "2": 0}))
  theta_old = VI.load_reference_velo(path, SMALL_REF)
  for a, b in zip(jax.tree_util.tree_leaves(theta_old), jax.tree_util.tree_leaves(theta)):
    np.testing.assert_array_equal(a, b)
  # The loaded θ drives the optimizer.
  params = _tree(1, [(4, 3)])
  u, _ = jax.jit(lambda th, g, p: SMALL_REF.update(th, g, SMALL_REF.init_state(p), p, loss=1.0))(
      theta, _tree(2, [(4, 3)], 0.1), params)
  assert _finite(u)


def test_reference_loader_rejects_a_mismatched_file(tmp_path):
  tree = _synthetic_reference(SMALL_REF)
  ff = tree["ff_mod_stack"]["~"]
  ff["w0__3"] = ff["w0__3"][:, :2]           # wrong shape
  del tree["rnn_params"]["step_size"]        # missing
  tree["rnn_params"]["extra_head"] = {"w": np.zeros((8, 2), np.float32)}  # unexpected
  path = tmp_path / "params"
  path.write_bytes(flax.serialization.msgpack_serialize({"params": tree}))
  with pytest.raises(ValueError) as err:
    VI.load_reference_velo(path, SMALL_REF)
  msg = str(err.value)
  assert "wrong shape: ff_mod_stack/~/w0__3: expected (3, 3, 4), got (3, 2, 4)" in msg
  assert "missing: rnn_params/step_size/w" in msg and "missing: rnn_params/step_size/b" in msg
  assert "unexpected: rnn_params/extra_head/w" in msg
  # A file for another width is rejected too, with the sizes that would load it.
  good = tmp_path / "good"
  good.write_bytes(flax.serialization.msgpack_serialize(_synthetic_reference(SMALL_REF)))
  with pytest.raises(ValueError, match=r"lstm_init_state/hidden: expected \(1, 512\)"):
    VI.load_reference_velo(good, VI.reference_config())
  (tmp_path / "junk").write_bytes(b"\x93not msgpack at all")
  with pytest.raises(ValueError, match="not a flax msgpack file"):
    VI.load_reference_velo(tmp_path / "junk", SMALL_REF)
  with pytest.raises(FileNotFoundError):
    VI.load_reference_velo(tmp_path / "absent", SMALL_REF)


def test_meta_training_passes_the_loss_and_moves_theta(tmp_path):
  """Two PES outer steps of μVeLO on quadratics through the real trainer: the
  inner loop must hand the loss to the LO, and θ must move by a finite step."""
  from training import config as config_lib
  from training import trainer
  config = config_lib.get_preset(
      "muvelo-tiny", distribution="quadratic", num_pairs=2, truncation_length=5,
      min_horizon=10, max_horizon=20, outer_steps=2, warmup_steps=1, log_every=1,
      checkpoint_every=2, wandb_mode="disabled")
  state = trainer.run(config, str(tmp_path / "velo"), progress=False)
  theta0 = trainer.initial_theta(config)
  assert int(state.step) == 2 and int(state.skipped) == 0
  assert _finite(state.theta)
  moved = max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(
      jax.tree_util.tree_leaves(state.theta), jax.tree_util.tree_leaves(theta0)))
  assert 0 < moved < 1
