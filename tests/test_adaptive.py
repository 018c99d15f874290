"""The adaptive LO: θ = 0 is μAdamW with a cosine schedule (NumPy reference),
the learned multipliers stay bounded for any θ and any input, and it runs
with and without ``loss=``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt import step_rules
from lopt.adaptive import (AdaptiveLOpt, InvariantDecayCosine, NormKeepingCosine, ShapedCosine,
                           TensorStats, alignment_z, bounded, default_rules)

SPEC = {"w_in": "input", "w_h": "hidden", "b": "vector", "head": "sp_output"}
SHAPES = {"w_in": (5, 4), "w_h": (4, 4), "b": (4,), "head": (4, 3)}


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {k: rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}


def _grads(step, seed=1):
  rng = np.random.default_rng(seed + 100 * step)
  return {k: (rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1)).astype(np.float32)
          for k, s in SHAPES.items()}


def numpy_mu_adamw(lo: AdaptiveLOpt, params, steps: int, num_steps: int,
                   lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2, input_matrix_scale=1.0,
                   decay_exponent=1, orthogonal=(), record=None, step_exponent=1):
  """μAdamW, float64: Adam (bias-corrected) × base step of the tensor's role ×
  its μP multiplier × cosine(t/T)^f (f = ``step_exponent``, a float or a dict
  per tensor), decoupled weight decay on matrices (lr · wd · cosine^(e - 1) per
  update, e = ``decay_exponent``, or ``decay_exponent[k]`` per tensor);
  ``input_matrix_scale`` multiplies the input matrix's step. The
  gradients of the tensors in ``orthogonal`` have their component along the
  current param removed (a scale-invariant tensor's); ``record`` (a list)
  receives each step's gradients."""
  p = {k: v.astype(np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  base = {"w_in": lr_input * input_matrix_scale, "w_h": lr_hidden / 4, "b": lr_input,
          "head": lr_hidden / 4}
  out = []
  for t in range(1, steps + 1):
    g = _grads(t)
    for k in orthogonal:
      g[k] = g[k] - (np.sum(g[k] * p[k]) / np.sum(p[k] * p[k])) * p[k]
    if record is not None:
      record.append({k: x.astype(np.float32) for k, x in g.items()})
    sched = 0.5 * (1 + math.cos(math.pi * min(t / num_steps, 1.0)))
    upd = {}
    for k in p:
      m[k] = lo.b1 * m[k] + (1 - lo.b1) * g[k]
      v[k] = lo.b2 * v[k] + (1 - lo.b2) * g[k].astype(np.float64) ** 2
      a = (m[k] / (1 - lo.b1 ** t)) / (np.sqrt(v[k] / (1 - lo.b2 ** t)) + lo.eps)
      per = lambda x: x[k] if isinstance(x, dict) else x
      lr = base[k] * sched ** per(step_exponent)
      e = per(decay_exponent)
      wd = weight_decay * sched ** (e - 1)
      upd[k] = -lr * a - (lr * wd * p[k] if p[k].ndim >= 2 else 0.0)
      p[k] = p[k] + upd[k]
    out.append(upd)
  return out


@pytest.mark.parametrize("with_loss", [False, True])
def test_theta_zero_is_mu_adamw(with_loss):
  lo = AdaptiveLOpt(step=default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2))
  theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  params = _params()
  expected = numpy_mu_adamw(lo, params, steps=6, num_steps=8)
  state = lo.init_state(params)
  p = jax.tree_util.tree_map(jnp.asarray, params)
  update = jax.jit(lambda g, s, p, loss: lo.update(theta, g, s, p, num_steps=8, mup=SPEC,
                                                   loss=loss if with_loss else None))
  for t in range(1, 7):
    u, state = update(_grads(t), state, p, jnp.float32(2.0 / t))
    for k in SHAPES:
      np.testing.assert_allclose(np.asarray(u[k]), expected[t - 1][k], rtol=1e-4, atol=1e-8)
    p = optax.apply_updates(p, u)


def test_decay_exponent_anneals_the_decay_by_the_schedule_squared_against_numpy():
  """ShapedCosine(decay_exponent=2) at θ = 0: μAdamW whose decoupled decay is
  lr · wd · cosine per update (lr itself ∝ cosine); the step is unchanged."""
  rules = tuple(ShapedCosine(decay_exponent=2.0) if isinstance(r, ShapedCosine) else r
                for r in default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2))
  lo = AdaptiveLOpt(step=rules)
  theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  params = _params()
  expected = numpy_mu_adamw(lo, params, steps=6, num_steps=8, decay_exponent=2)
  plain = numpy_mu_adamw(lo, params, steps=6, num_steps=8)
  state, p = lo.init_state(params), jax.tree_util.tree_map(jnp.asarray, params)
  update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=8, mup=SPEC))
  for t in range(1, 7):
    u, state = update(_grads(t), state, p)
    for k in SHAPES:
      np.testing.assert_allclose(np.asarray(u[k]), expected[t - 1][k], rtol=1e-4, atol=1e-8)
    p = optax.apply_updates(p, u)
  # It differs from the plain form only through the matrices' decay.
  assert not np.allclose(expected[3]["w_h"], plain[3]["w_h"], rtol=1e-3)
  np.testing.assert_array_equal(expected[0]["b"], plain[0]["b"])


def test_decay_exponent_closed_form_record_and_checks():
  ctx = step_rules.TensorContext(None, None, 1.0, 0, jnp.asarray(3), 10, ndim=2)
  log_shape = 0.3
  s = (0.5 * (1 + math.cos(math.pi * 0.3))) ** math.exp(log_shape)
  for e in (None, 1.0, 2.0, 3.5):
    out = ShapedCosine(decay_exponent=e)({"log_shape": jnp.float32(log_shape)},
                                         step_rules.Step(None, lr=0.5, wd=0.1), ctx)
    assert float(out.lr) == pytest.approx(0.5 * s, rel=1e-6)
    assert float(out.wd) == pytest.approx(0.1 * s ** ((e or 1.0) - 1.0), rel=1e-6)
  # Without num_steps there is no schedule: nothing changes.
  bare = ctx._replace(num_steps=None)
  assert ShapedCosine(decay_exponent=2.0)({"log_shape": jnp.float32(0)},
                                          step_rules.Step(None, 0.5, 0.1), bare).wd == 0.1
  # The record omits the field when unset (older records load strictly).
  assert step_rules.to_record((ShapedCosine(),)) == [{"rule": "ShapedCosine"}]
  rec = step_rules.to_record((ShapedCosine(decay_exponent=2.0),))
  assert rec == [{"rule": "ShapedCosine", "decay_exponent": 2.0}]
  assert step_rules.from_record(rec) == (ShapedCosine(decay_exponent=2.0),)
  with pytest.raises(ValueError, match="decay_exponent must be None"):
    ShapedCosine(decay_exponent=0.5)
  base = default_rules()
  late = tuple(r for r in base if not isinstance(r, ShapedCosine))
  with pytest.raises(ValueError, match="WeightDecay rule must come before it"):
    AdaptiveLOpt(step=(ShapedCosine(decay_exponent=2.0),) + late)


# The hidden matrix's gradients are orthogonal to it (as behind BatchNorm); the
# other tensors' are unrelated to them. Per rule: the hidden matrix's exponent
# of the cosine on its step and the decay exponent e (wd · cosine^(e - 1)).
INVARIANT_RULES = {
    # the decay anneals by the cosine squared (lr · wd · cosine per update)
    "InvariantDecayCosine": (InvariantDecayCosine, 1, 2),
    # step and decay by cosine^(1/2) each, so lr · wd per update is μAdamW's
    "NormKeepingCosine": (NormKeepingCosine, 0.5, 1.5),
}


@pytest.mark.parametrize("name", sorted(INVARIANT_RULES))
def test_invariant_rules_change_only_scale_invariant_tensors_against_numpy(name):
  """InvariantDecayCosine and NormKeepingCosine at θ = 0: the scale-invariant
  hidden matrix gets the rule's schedule; the input matrix, the vector and the
  readout, with unrelated gradients, are μAdamW's exactly."""
  rule, step_e, decay_e = INVARIANT_RULES[name]
  rules = tuple(rule() if isinstance(r, ShapedCosine) else r
                for r in default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2))
  lo = AdaptiveLOpt(step=rules)
  theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  params, grads = _params(), []
  expected = numpy_mu_adamw(lo, params, steps=6, num_steps=8, orthogonal=("w_h",),
                            step_exponent={"w_in": 1, "w_h": step_e, "b": 1, "head": 1},
                            decay_exponent={"w_in": 1, "w_h": decay_e, "b": 1, "head": 1},
                            record=grads)
  plain = numpy_mu_adamw(lo, params, steps=6, num_steps=8, orthogonal=("w_h",))
  assert not np.allclose(expected[4]["w_h"], plain[4]["w_h"], rtol=1e-3)
  np.testing.assert_array_equal(expected[4]["w_in"], plain[4]["w_in"])
  state, p = lo.init_state(params), jax.tree_util.tree_map(jnp.asarray, params)
  update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=8, mup=SPEC))
  for t in range(1, 7):
    u, state = update(grads[t - 1], state, p)
    for k in SHAPES:   # atol: float32 rounding of lr · a - lr · wd · p where the two cancel
      np.testing.assert_allclose(np.asarray(u[k]), expected[t - 1][k], rtol=1e-4, atol=1e-7)
    p = optax.apply_updates(p, u)


def test_invariance_reads_z_averaged_over_updates_so_one_dip_changes_nothing():
  """An ordinary tensor whose gradient is orthogonal to it at one late update
  (z ≈ 0 there, as one update's test misfires on a few percent of updates):
  NormKeepingCosine's update equals ShapedCosine's, since the rules read log z
  averaged over updates; a tensor orthogonal at every update reads z ≲ 1e-3
  and gets the rule. The state holds the average only for forms that read it."""
  base = default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2)
  forms = {name: AdaptiveLOpt(step=tuple(rule() if isinstance(r, ShapedCosine) else r
                                         for r in base))
           for name, rule in (("plain", ShapedCosine), ("keep", NormKeepingCosine))}
  theta = jax.tree_util.tree_map(jnp.zeros_like, forms["plain"].init(jax.random.PRNGKey(0)))
  params = _params()
  assert forms["plain"].init_state(params).tensors["w_in"].log_z is None
  out = {}
  for name, lo in forms.items():
    state, p = lo.init_state(params), jax.tree_util.tree_map(jnp.asarray, params)
    update = jax.jit(lambda g, s, p, lo=lo: lo.update(theta, g, s, p, num_steps=8, mup=SPEC))
    for t in range(1, 8):
      g = _grads(t)
      if t == 6:   # one dip: w_in's gradient orthogonal to it at this update only
        w = np.asarray(p["w_in"], np.float64)
        g["w_in"] = (g["w_in"] - (np.sum(g["w_in"] * w) / np.sum(w * w)) * w).astype(np.float32)
        dip_z = float(alignment_z(jnp.sum(g["w_in"] * p["w_in"]), jnp.sum(g["w_in"] ** 2),
                                  jnp.sum(p["w_in"] ** 2), g["w_in"].size))
      u, state = update(g, state, p)
      p = optax.apply_updates(p, u)
      if t == 6:
        out[name] = (u, state)
  (u_plain, _), (u_keep, s_keep) = out["plain"], out["keep"]
  np.testing.assert_allclose(np.asarray(u_keep["w_in"]), np.asarray(u_plain["w_in"]),
                             rtol=1e-6, atol=1e-9)
  # The dip moved the average (from about log 0.5) but left it far above z_hi = 0.03.
  z_avg = float(np.exp(s_keep.tensors["w_in"].log_z))
  assert 0.03 < z_avg < 0.5
  # One update's z at the dip would have read invariant (below z_lo = 0.003).
  assert dip_z < 0.003


def test_norm_keeping_keeps_an_invariant_tensors_norm_and_its_angular_schedule():
  """The claim behind NormKeepingCosine, on the update equations of a
  scale-invariant tensor (steps of lr per entry orthogonal to it, decay lr ·
  wd · p): under ShapedCosine its norm² tracks n · lr / (2 wd) ∝ cosine, so it
  shrinks as the step anneals; under NormKeepingCosine it stays within a few
  percent, while the angle turned per update, lr / |p|, anneals about as
  ShapedCosine's does (∝ sqrt(cosine) at equilibrium)."""
  n, steps, lr0, wd0 = 256, 2000, 0.02, 2.0
  rng = np.random.default_rng(0)
  stats = TensorStats(None, None, 1e-8, None, jnp.float32(1e-5))   # z: behind BatchNorm
  results = {}
  for rule in (ShapedCosine(), NormKeepingCosine()):
    p = rng.standard_normal(n) * math.sqrt(lr0 / (2 * wd0))   # at the start's equilibrium
    norms, angles = [], []
    for t in range(1, steps + 1):
      ctx = step_rules.TensorContext(None, None, 1.0, 1, jnp.asarray(t), steps, acc=stats,
                                     ndim=2)
      out = rule({"log_shape": jnp.float32(0)}, step_rules.Step(None, lr0, wd0), ctx)
      lr, wd = float(out.lr), float(out.wd)
      d = np.sign(rng.standard_normal(n))
      d -= (d @ p) / (p @ p) * p
      new = p * (1 - lr * wd) + lr * d
      angles.append(math.acos(np.clip(new @ p / np.linalg.norm(new) / np.linalg.norm(p), -1, 1)))
      p = new
      norms.append(np.linalg.norm(p))
    results[type(rule).__name__] = (np.asarray(norms), np.asarray(angles))
  shaped, keep = results["ShapedCosine"], results["NormKeepingCosine"]
  at = lambda x, frac: x[int(frac * steps) - 1]
  # ShapedCosine: the norm falls with the schedule (cosine(0.9) ≈ 0.024).
  assert at(shaped[0], 0.9) / shaped[0][0] < 0.4
  # NormKeepingCosine: it stays put to the end.
  assert np.all(np.abs(keep[0] / keep[0][0] - 1) < 0.05)
  # The angle per update at 20-80% of training: the same schedule within 25%.
  for frac in (0.2, 0.5, 0.8):
    mean = lambda a: np.mean(a[int(frac * steps) - 20:int(frac * steps) + 20])
    assert mean(keep[1]) / mean(shaped[1]) == pytest.approx(1.0, abs=0.25), frac


def test_norm_keeping_closed_form_record_and_checks():
  log_shape = 0.3
  s = (0.5 * (1 + math.cos(math.pi * 0.3))) ** math.exp(log_shape)
  rule = NormKeepingCosine()
  for z, w in ((1e-6, 1.0), (1.0, 0.0), (0.03 / math.sqrt(10.0), 0.5)):
    ctx = step_rules.TensorContext(None, None, 1.0, 0, jnp.asarray(3), 10, ndim=2,
                                   acc=TensorStats(None, None, 1e-8, None, jnp.float32(z)))
    out = rule({"log_shape": jnp.float32(log_shape)}, step_rules.Step(None, 0.5, 0.1), ctx)
    assert float(out.lr) == pytest.approx(0.5 * s ** (1 - w / 2), rel=1e-5)
    assert float(out.wd) == pytest.approx(0.1 * s ** (w / 2), rel=1e-5)
    assert float(out.lr * out.wd) == pytest.approx(0.05 * s, rel=1e-5)   # the decay per update
    bare = rule({"log_shape": jnp.float32(log_shape)}, step_rules.Step(None, 0.5, None), ctx)
    assert bare.wd is None and float(bare.lr) == pytest.approx(0.5 * s, rel=1e-5)
  rec = step_rules.to_record((rule,))
  assert rec == [{"rule": "NormKeepingCosine", "z_lo": 0.003, "z_hi": 0.03}]
  assert step_rules.from_record(rec) == (rule,)
  with pytest.raises(ValueError, match="leave decay_exponent unset"):
    NormKeepingCosine(decay_exponent=2.0)
  with pytest.raises(ValueError, match="0 < z_lo < z_hi"):
    NormKeepingCosine(z_lo=0.1, z_hi=0.01)
  late = tuple(r for r in default_rules() if not isinstance(r, ShapedCosine))
  with pytest.raises(ValueError, match="WeightDecay rule must come before it"):
    AdaptiveLOpt(step=(NormKeepingCosine(),) + late)


def test_alignment_z_closed_form_and_invariance_weight():
  rng = np.random.default_rng(3)
  g, p = rng.standard_normal(500), rng.standard_normal(500)
  z = alignment_z(jnp.float32(g @ p), jnp.float32(g @ g), jnp.float32(p @ p), 500)
  assert float(z) == pytest.approx(abs(g @ p) / np.sqrt((g @ g) * (p @ p)) * np.sqrt(500),
                                   rel=1e-5)
  assert float(alignment_z(jnp.float32(np.inf), jnp.float32(1.0), jnp.float32(1.0), 4)) == np.inf
  rule = InvariantDecayCosine(z_lo=0.003, z_hi=0.03)
  weight = lambda z: float(rule.weight(step_rules.TensorContext(
      None, None, 1.0, 0, jnp.asarray(1), None, acc=TensorStats(None, None, 1e-8, None,
                                                                 jnp.float32(z)))))
  assert weight(1e-6) == 1.0 and weight(0.003) == pytest.approx(1.0, abs=1e-6)
  assert weight(0.03) == pytest.approx(0.0, abs=1e-6) and weight(1.0) == 0.0
  assert weight(np.inf) == 0.0
  assert weight(0.03 / np.sqrt(10.0)) == pytest.approx(0.5, abs=1e-5)   # log-linear between
  with pytest.raises(ValueError, match="0 < z_lo < z_hi"):
    InvariantDecayCosine(z_lo=0.1, z_hi=0.01)
  rec = step_rules.to_record((InvariantDecayCosine(),))
  assert step_rules.from_record(rec) == (InvariantDecayCosine(),)


def test_input_fan_in_scales_the_input_matrix_by_ref_over_fan_in_against_numpy():
  # θ = 0 with input_fan_in = 2: μAdamW whose input matrix (fan_in 5) steps
  # x 2/5; the vector, the hidden matrix and the readout as before.
  lo = AdaptiveLOpt(step=default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2),
                    input_fan_in=2.0)
  theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  params = _params()
  expected = numpy_mu_adamw(lo, params, steps=3, num_steps=8, input_matrix_scale=2.0 / 5)
  state, p = lo.init_state(params), jax.tree_util.tree_map(jnp.asarray, params)
  for t in range(1, 4):
    u, state = lo.update(theta, _grads(t), state, p, num_steps=8, mup=SPEC)
    for k in SHAPES:
      np.testing.assert_allclose(np.asarray(u[k]), expected[t - 1][k], rtol=1e-4, atol=1e-8)
    p = optax.apply_updates(p, u)
  # The record carries it when set, and omits it at None (older records load as they did).
  assert AdaptiveLOpt.from_record(lo.to_record()) == lo
  assert "input_fan_in" not in AdaptiveLOpt().to_record()
  for bad in (0.0, -1.0, float("inf"), True, "64"):
    with pytest.raises(ValueError, match="input_fan_in must be a positive finite float"):
      AdaptiveLOpt(input_fan_in=bad)


def test_random_theta_init_is_also_the_hand_designed_form():
  """θ from init (random first layers, zero output layers) changes nothing."""
  lo = AdaptiveLOpt()
  theta = lo.init(jax.random.PRNGKey(3))
  zero = jax.tree_util.tree_map(jnp.zeros_like, theta)
  params = _params()
  s1 = s0 = lo.init_state(params)
  for t in range(1, 4):
    u1, s1 = lo.update(theta, _grads(t), s1, params, num_steps=10, mup=SPEC, loss=1.0 / t)
    u0, s0 = lo.update(zero, _grads(t), s0, params, num_steps=10, mup=SPEC, loss=1.0 / t)
    for k in SHAPES:
      np.testing.assert_array_equal(np.asarray(u1[k]), np.asarray(u0[k]))


@pytest.mark.parametrize("scale,bound", [(1e-30, 10.0), (1.0, 10.0), (1e30, 10.0),
                                         (1.0, (10.0, 100.0))])
def test_multipliers_bounded_for_adversarial_inputs(scale, bound):
  """Huge head weights and extreme gradients, params and losses: the per-tensor
  step and weight-decay multipliers stay within [1/bound, bound] and finite,
  and so the step is at most bound × the learned-scalar form's."""
  lo = AdaptiveLOpt(step=default_rules(bound=bound))
  hi = np.asarray(bound if isinstance(bound, tuple) else (bound, bound))
  theta = lo.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  theta["adapt"]["w1"] = jnp.asarray(rng.standard_normal((16, 2)) * 1e6, jnp.float32)
  theta["adapt"]["b1"] = jnp.asarray([1e6, -1e6], jnp.float32)
  theta["residual"]["w1"] = jnp.asarray(rng.standard_normal(8) * 1e6, jnp.float32)
  params = {k: v * scale for k, v in _params().items()}
  state = lo.init_state(params)
  for t, loss in enumerate([1e30, 1e-30, float("nan"), 3.0], start=1):
    with np.errstate(over="ignore"):  # scale 1e30 × 1e20 is meant to reach inf
      grads = {k: g * scale * (1e20 if t == 2 else 1.0) for k, g in _grads(t).items()}
    u, state = lo.update(theta, grads, state, params, num_steps=5, mup=SPEC, loss=loss)
    for k in SHAPES:
      mults = np.asarray(state.tensors[k].mults)
      assert np.all(np.isfinite(mults))
      assert np.all(mults >= (1 - 1e-6) / hi) and np.all(mults <= hi * (1 + 1e-6)), mults
      assert np.all(np.isfinite(np.asarray(u[k])))


def test_bounded_closed_form():
  x = jnp.asarray([-1e9, -1.0, 0.0, 0.5, 1e9], jnp.float32)
  np.testing.assert_allclose(np.asarray(bounded(x, 10.0)),
                             10.0 ** np.tanh(np.asarray(x, np.float64)), rtol=1e-6)
  assert float(bounded(jnp.float32(0.0), 10.0)) == 1.0
  pair = np.asarray(bounded(jnp.stack([x, x], -1), (10.0, 100.0)))
  np.testing.assert_allclose(pair[:, 1], 100.0 ** np.tanh(np.asarray(x, np.float64)), rtol=1e-6)
  np.testing.assert_allclose(pair[:, 0], 10.0 ** np.tanh(np.asarray(x, np.float64)), rtol=1e-6)


def test_pair_bound_record_round_trip():
  """A (step, weight decay) bound survives the JSON record (where it is a list)
  and a bad one is refused with a message that names the field."""
  import json
  lo = AdaptiveLOpt(step=default_rules(bound=(10.0, 100.0)))
  again = AdaptiveLOpt.from_record(json.loads(json.dumps(lo.to_record())))
  assert again == lo and hash(again) == hash(lo)
  for bad in ((10.0, 0.5), (1.0, 2.0, 3.0), "10"):
    with pytest.raises(ValueError, match="TensorAdaptive: bound"):
      default_rules(bound=bad)


def test_head_reads_gradients_without_loss():
  """Without loss= the multiplier still moves with gradient statistics: a
  head that reads only the gradient-norm trend gives a smaller step once the
  gradients have shrunk."""
  lo = AdaptiveLOpt()
  theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  w0 = np.zeros((10, 16), np.float32)
  w0[1, 0] = -1.0                           # hidden unit 0 = relu(-grad_trend)
  w1 = np.zeros((16, 2), np.float32)
  w1[0, 0] = -1.0                           # step multiplier shrinks with it
  theta["adapt"]["w0"], theta["adapt"]["w1"] = jnp.asarray(w0), jnp.asarray(w1)
  params = _params()
  state = lo.init_state(params)
  _, state = lo.update(theta, _grads(1), state, params, num_steps=100, mup=SPEC)
  assert float(state.tensors["w_h"].mults[0]) == 1.0
  small = {k: g * 1e-3 for k, g in _grads(2).items()}
  _, state = lo.update(theta, small, state, params, num_steps=100, mup=SPEC)
  expected = 10.0 ** np.tanh(-np.log(1e3) / 3.0)  # grad trend feature = log(1e-3)/3
  got = float(state.tensors["w_h"].mults[0])
  assert got < 1.0 and abs(got - expected) < 0.25 * expected


def test_as_optax_in_chain_and_requires_num_steps():
  lo = AdaptiveLOpt()
  theta = lo.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="num_steps"):
    lo.as_optax(theta, mup=SPEC)
  tx = optax.chain(optax.clip_by_global_norm(1.0), lo.as_optax(theta, num_steps=10, mup=SPEC))
  params = _params()
  state = tx.init(params)
  u, state = jax.jit(tx.update)(_grads(1), state, params)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(u))


def test_config_record_round_trip_and_rule_checks():
  from lopt import step_rules
  lo = AdaptiveLOpt()
  again = AdaptiveLOpt.from_record(lo.to_record())
  assert again == lo and hash(again) == hash(lo)
  with pytest.raises(ValueError, match="AdamDirection"):
    AdaptiveLOpt(step=(step_rules.RMSNormalize(),))
  with pytest.raises(ValueError, match="size-free"):  # no unit-direction rule
    step_rules.check((step_rules.GroupBase(0.1, 0.1),))


def test_mean_free_residual_is_the_residual_minus_its_tensor_mean():
  """MeanFreeAdamDirection adds the residual minus its mean over each
  tensor: the same update as the plain residual, less that mean times the step
  size (closed form), and no mean shift of a tensor's entries."""
  from lopt.adaptive import AdamDirection, MeanFreeAdamDirection
  rules = lambda mf: ((MeanFreeAdamDirection() if mf else AdamDirection()),) + default_rules()[1:]
  lo_plain, lo_mf = AdaptiveLOpt(step=rules(False)), AdaptiveLOpt(step=rules(True))
  theta = lo_plain.init(jax.random.PRNGKey(3))
  theta["residual"] = {**theta["residual"], "w1": jnp.linspace(-1.0, 1.0, 8), "b1": jnp.float32(0.4)}
  no_residual = {**theta, "residual": {**theta["residual"], "w1": jnp.zeros(8), "b1": jnp.float32(0)}}
  params, grads = _params(), _grads(1)

  def update(lo, th):
    u, _ = lo.update(th, grads, lo.init_state(params), params, num_steps=8, mup=SPEC)
    return {k: np.asarray(v, np.float64) for k, v in u.items()}
  base = update(lo_plain, no_residual)
  plain, mean_free = update(lo_plain, theta), update(lo_mf, theta)
  assert update(lo_mf, no_residual).keys() == base.keys()
  for k in SHAPES:
    r_plain, r_mf = plain[k] - base[k], mean_free[k] - base[k]
    assert abs(r_plain.mean()) > 1e-2 * np.abs(base[k]).mean()   # a real mean to remove
    np.testing.assert_allclose(r_mf, r_plain - r_plain.mean(), rtol=1e-4, atol=1e-9)
    assert abs(r_mf.mean()) < 1e-6 * np.abs(r_plain).max()
    np.testing.assert_array_equal(update(lo_mf, no_residual)[k], base[k])  # θ = 0 part unchanged
  record = lo_mf.to_record()
  assert record["step"][0] == {"rule": "MeanFreeAdamDirection"}
  assert AdaptiveLOpt.from_record(record) == lo_mf != lo_plain


def test_multiplier_curves_read_one_per_tensor_and_step_and_are_1_at_theta0():
  """training.adaptation.multiplier_curves: [steps, tensors, (step, wd)]; with the
  head's output layer at 0 every multiplier is exactly 1, and with a bias of
  +1e6 on the step output every step multiplier is the bound."""
  import meta_tasks
  from training.adaptation import multiplier_curves
  task = meta_tasks.get_distribution("quadratic").configs()[0]
  lo = AdaptiveLOpt(step=default_rules(bound=(10.0, 100.0)))
  theta = lo.init(jax.random.PRNGKey(0))
  mults, losses = multiplier_curves(lo, theta, task, 6)
  n_tensors = len(jax.tree_util.tree_leaves(task.init(jax.random.PRNGKey(0))))
  assert mults.shape == (6, n_tensors, 2) and losses.shape == (6,)
  np.testing.assert_array_equal(mults, 1.0)
  theta["adapt"]["b1"] = jnp.asarray([1e6, 0.0], jnp.float32)
  mults, _ = multiplier_curves(lo, theta, task, 6)
  np.testing.assert_allclose(mults[..., 0], 10.0, rtol=1e-6)
  np.testing.assert_array_equal(mults[..., 1], 1.0)


def test_epoch_scales_closed_form_identity_at_zero_and_bounded():
  """EpochScales: θ = 0 (or no epochs=) changes nothing; otherwise the update is
  exactly the rule-free one with lr × bound^tanh(w₀ · x) and weight decay ×
  bound^tanh(w₁ · x), x = log1p([epochs, epochs · t/T]) (NumPy), within
  [1/bound, bound] for any w and epochs; bad epochs get an error naming the fix."""
  from lopt.adaptive import EpochScales
  base = AdaptiveLOpt()
  lo = AdaptiveLOpt(step=base.step + (EpochScales(),))
  assert lo.reads_epochs and not base.reads_epochs
  theta = lo.init(jax.random.PRNGKey(0))
  theta_base = {k: v for k, v in theta.items() if k != "epochs"}
  params, grads = _params(), _grads(1)
  run = lambda l, th, **kw: l.update(th, grads, l.init_state(params), params, num_steps=10,
                                     mup=SPEC, **kw)[0]
  plain = run(base, theta_base)
  for kw in ({}, {"epochs": 37.0}):  # θ = 0: identical with and without epochs
    for k, u in run(lo, theta, **kw).items():
      np.testing.assert_array_equal(np.asarray(u), np.asarray(plain[k]))
  w = np.array([[0.3, -0.2], [-0.5, 0.4]], np.float32)
  theta["epochs"]["w"] = jnp.asarray(w)
  x = np.log1p(np.array([37.0, 37.0 * 1 / 10]))
  m_lr, m_wd = 10.0 ** np.tanh(w.astype(np.float64) @ x)
  got = run(lo, theta, epochs=37.0)
  no_wd = AdaptiveLOpt(step=tuple(r for r in base.step if type(r).__name__ != "WeightDecay"))
  adam_part = run(no_wd, theta_base)  # -lr·a; the decay part is the rest of `plain`
  for k in SHAPES:
    decay = np.asarray(plain[k], np.float64) - np.asarray(adam_part[k], np.float64)
    want = m_lr * np.asarray(adam_part[k], np.float64) + m_lr * m_wd * decay
    np.testing.assert_allclose(np.asarray(got[k]), want, rtol=2e-5, atol=1e-9)
  rule = EpochScales(bound=10.0)
  for epochs in (0.0, 1e-30, 5.0, 1e30):
    for w in (np.full((2, 2), 1e6), np.full((2, 2), -1e6)):
      mult = np.asarray(rule.multipliers({"w": jnp.asarray(w, jnp.float32)}, epochs, 5, 10))
      assert np.all(np.isfinite(mult)) and np.all(mult >= 0.1 * (1 - 1e-6))
      assert np.all(mult <= 10 * (1 + 1e-6))
  np.testing.assert_array_equal(np.asarray(rule.multipliers({"w": jnp.ones((2, 2))}, None, 5, 10)),
                                [1.0, 1.0])
  for bad in (-1.0, float("nan"), "10", True):
    with pytest.raises(ValueError, match="epochs must be a finite number >= 0"):
      lo.as_optax(theta, num_steps=10, mup=SPEC, epochs=bad)


def test_horizon_scales_closed_form_identity_at_zero_and_bounded():
  """HorizonScales: θ = 0 changes nothing (bit for bit), and neither does any θ
  at num_steps = reference; otherwise each tensor's update is the rule-free
  one with lr × bound^tanh(w[g, 0] · x) and decay × bound^tanh(w[g, 1] · x),
  x = log(num_steps / reference), g its μP group (NumPy); within
  [1/bound, bound] for any w and horizon; the record round-trips; bad fields
  and a missing num_steps get errors naming the fix."""
  from lopt import protocol
  from lopt.adaptive import HorizonScales
  base = AdaptiveLOpt()
  lo = AdaptiveLOpt(step=base.step + (HorizonScales(reference=100.0),))
  theta = lo.init(jax.random.PRNGKey(0))
  theta_base = {k: v for k, v in theta.items() if k != "horizon"}
  params, grads = _params(), _grads(1)
  run = lambda l, th, n: l.update(th, grads, l.init_state(params), params, num_steps=n,
                                  mup=SPEC)[0]
  no_wd = AdaptiveLOpt(step=tuple(r for r in base.step if type(r).__name__ != "WeightDecay"))
  w = np.array([[0.3, -0.2], [-0.5, 0.4]], np.float32)   # [group (input, hidden), (step, decay)]
  group = {"w_in": 0, "b": 0, "w_h": 1, "head": 1}
  for n in (10, 100, 3000):
    plain = run(base, theta_base, n)
    for k, u in run(lo, theta, n).items():   # θ = 0
      np.testing.assert_array_equal(np.asarray(u), np.asarray(plain[k]))
    moved = dict(theta, horizon={"w": jnp.asarray(w)})
    got, adam_part = run(lo, moved, n), run(no_wd, theta_base, n)
    x = np.log(n / 100.0)
    for k in SHAPES:
      m_lr, m_wd = 10.0 ** np.tanh(w[group[k]].astype(np.float64) * x)
      decay = np.asarray(plain[k], np.float64) - np.asarray(adam_part[k], np.float64)
      want = m_lr * np.asarray(adam_part[k], np.float64) + m_lr * m_wd * decay
      np.testing.assert_allclose(np.asarray(got[k]), want, rtol=2e-5, atol=1e-9)
      if n == 100:
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(plain[k]))
  rule = HorizonScales(bound=10.0)
  for n in (1, 7, 1000, 1e9):
    for w in (np.full((2, 2), 1e6), np.full((2, 2), -1e6)):
      for g in (0, 1):
        mult = np.asarray(rule.multipliers({"w": jnp.asarray(w, jnp.float32)}, n, g))
        assert np.all(np.isfinite(mult)) and np.all(mult >= 0.1 * (1 - 1e-6))
        assert np.all(mult <= 10 * (1 + 1e-6))
  np.testing.assert_array_equal(np.asarray(rule.multipliers({"w": jnp.ones((2, 2))}, None, 1)),
                                [1.0, 1.0])
  assert protocol.from_record("AdaptiveLOpt", lo.to_record()) == lo
  for bad in (dict(reference=0.5), dict(reference=True), dict(bound=0.5)):
    with pytest.raises(ValueError, match="HorizonScales: (reference|bound) must be"):
      HorizonScales(**bad)
  with pytest.raises(ValueError, match="HorizonScales"):
    lo.as_optax(theta, num_steps=None, mup=SPEC)


def test_gradient_restraint_closed_form_identity_at_zero_and_bounded():
  """GradientRestraint: alpha = beta = 0 with θ = 0 changes nothing (bit for
  bit); otherwise each update's gradient step is the rule-free one ×
  clip((rms g_t / rms g_1)^α, 1/bound, 1) and its decay the rule-free one ×
  clip((rms g_t / rms g_1)^β, ...), α = alpha + θ.alpha[μP group] and β
  likewise, with alpha and beta one float or an (input, hidden) pair (NumPy,
  over steps whose gradient scales differ by up to 10⁴, so both clip ends are
  hit); the state records them; a pair survives the JSON record; both multipliers stay in
  [1/bound, 1] for any θ and any gradient trend; bad fields are refused."""
  from lopt import mup as mup_lib
  from lopt.adaptive import TENSOR_FEATURES, GradientRestraint
  base = AdaptiveLOpt(step=default_rules(lr_input=3e-3, lr_hidden=0.5, weight_decay=0.2))
  params, steps = _params(), 5
  theta_base = base.init(jax.random.PRNGKey(0))

  def run(lo, theta, seen=None):
    state, out = lo.init_state(params), []
    for t in range(1, steps + 1):  # params held fixed: Adam's moments do not see lr
      u, state = lo.update(theta, _grads(t), state, params, num_steps=10, mup=SPEC)
      out.append(u)
      if seen is not None:  # the state's (step, wd) multipliers (the head's are 1 here)
        seen.append({k: np.asarray(state.tensors[k].mults) for k in SHAPES})
    return out

  plain = run(base, theta_base)
  off = AdaptiveLOpt(step=base.step + (GradientRestraint(alpha=0.0, beta=0.0),))
  theta = {**theta_base, "restraint": off.step[-1].init(None)}
  for got, want in zip(run(off, theta), plain):
    for k in SHAPES:
      np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]))

  theta["restraint"] = {"alpha": jnp.asarray([0.25, -0.2], jnp.float32),
                        "beta": jnp.asarray([-0.5, 0.0], jnp.float32)}
  groups = mup_lib.step_groups(SPEC, params)
  assert groups == {"w_in": 0, "w_h": 1, "b": 0, "head": 1}
  rms = lambda x: np.sqrt(np.mean(np.square(x.astype(np.float64))))
  no_wd = AdaptiveLOpt(step=tuple(r for r in base.step if type(r).__name__ != "WeightDecay"))
  # Hand exponents for every tensor, then per μP group (input, hidden), θ added.
  for rule, alpha, beta in ((GradientRestraint(alpha=0.5, beta=0.5, bound=10.0),
                             (0.75, 0.3), (0.0, 0.5)),
                            (GradientRestraint(alpha=(0.0, 1.0), beta=[0.25, 0.5], bound=10.0),
                             (0.25, 0.8), (0.0, 0.5))):
    lo = AdaptiveLOpt(step=base.step + (rule,))
    assert AdaptiveLOpt.from_record(lo.to_record()) == lo and hash(lo)  # a pair survives JSON
    hit, seen = set(), []
    for t, (got, want, step_part) in enumerate(zip(run(lo, theta, seen), plain,
                                                   run(no_wd, theta_base)), start=1):
      for k in SHAPES:
        ratio = rms(_grads(t)[k]) / rms(_grads(1)[k])
        m_step, m_decay = (np.clip(ratio ** e[groups[k]], 0.1, 1.0) for e in (alpha, beta))
        np.testing.assert_allclose(seen[t - 1][k], [m_step, m_decay / m_step], rtol=2e-5)
        hit |= {"low"} if m_step == 0.1 else {"high"} if m_step == 1.0 else {"between"}
        step_k = np.asarray(step_part[k], np.float64)
        decay = np.asarray(want[k], np.float64) - step_k   # the rest of `plain`
        np.testing.assert_allclose(np.asarray(got[k], np.float64),
                                   m_step * step_k + m_decay * decay, rtol=2e-5, atol=1e-12)
    assert hit == {"low", "high", "between"}, rule

  rule = GradientRestraint(alpha=0.5, beta=0.5, bound=10.0)
  i = TENSOR_FEATURES.index("grad_trend")
  for trend in (-10 / 3, -1e-3, 0.0, 1e-3, 10 / 3):
    feats = jnp.zeros((len(TENSOR_FEATURES),), jnp.float32).at[i].set(trend)
    for a in (-1e6, 0.0, 1e6):
      for group in (0, 1):
        th = {"alpha": jnp.full((2,), a, jnp.float32), "beta": jnp.full((2,), -a, jnp.float32)}
        m = np.asarray(rule.multipliers(th, feats, group))
        assert np.all(m >= 0.1 * (1 - 1e-6)) and np.all(m <= 1.0), (trend, a, m)
        if trend >= 0:
          np.testing.assert_array_equal(m, [1.0, 1.0])
        if a <= -0.5:
          assert m[0] == 1.0
  for bad in ({"alpha": -0.1}, {"beta": -1.0}, {"bound": 0.5}, {"alpha": True}, {"bound": "10"},
              {"alpha": (0.5,)}, {"beta": (0.5, -0.1)}, {"alpha": (0.1, 0.2, 0.3)}):
    with pytest.raises(ValueError, match="GradientRestraint: alpha and beta must each be"):
      GradientRestraint(**bad)
