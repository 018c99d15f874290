"""Each step rule alone (lopt.step_rules), its record, and the composition checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt import step_rules as R


def _ctx(group=0, mult=1.0, count=1, num_steps=None, g=None, p=None):
  rng = np.random.default_rng(0)
  p = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) if p is None else p
  g = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) if g is None else g
  return R.TensorContext(g, p, mult, group, jnp.asarray(count), num_steps)


def _dir():
  return jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)) * 3.0, jnp.float32)


def test_empty_rules_return_the_raw_step_unchanged():
  d, ctx = _dir(), _ctx()
  np.testing.assert_array_equal(R.apply((), {}, R.Step(d), ctx), d)


def test_rms_normalize_gives_unit_rms_and_no_step_without_gradient():
  step = R.RMSNormalize()(None, R.Step(_dir()), _ctx())
  assert float(jnp.sqrt(jnp.mean(step.direction ** 2))) == pytest.approx(1.0, rel=1e-6)
  assert step.lr == 1.0 and step.wd is None
  zero = R.RMSNormalize()(None, R.Step(_dir()), _ctx(g=jnp.zeros((4, 3))))
  assert not np.any(np.asarray(zero.direction))
  np.testing.assert_array_equal(R.rms_normalize(jnp.zeros(3)), np.zeros(3))


def test_group_base_multiplies_lr_by_the_group_base_and_mup_multiplier():
  rule = R.GroupBase(input=0.002, hidden=0.2)
  assert rule(None, R.Step(_dir()), _ctx(group=0, mult=1.0)).lr == 0.002
  assert rule(None, R.Step(_dir(), lr=2.0), _ctx(group=1, mult=0.125)).lr == 2.0 * 0.2 * 0.125
  with pytest.raises(ValueError, match="hidden must be a positive finite float"):
    R.GroupBase(hidden=0.0)


def test_group_base_vector_base_acts_on_input_group_vectors_only_and_is_recorded_when_set():
  rule = R.GroupBase(input=3e-4, hidden=0.25, vector=1e-3)
  assert rule(None, R.Step(_dir()), _ctx(group=0)).lr == 3e-4          # an input matrix
  vec = jnp.ones((3,), jnp.float32)
  assert rule(None, R.Step(vec), _ctx(group=0, g=vec, p=vec)).lr == 1e-3  # a bias
  assert rule(None, R.Step(_dir()), _ctx(group=1, mult=0.5)).lr == 0.25 * 0.5
  # The fused kernels pass no param: the rank comes from ``ndim``.
  bare = R.TensorContext(None, None, 1.0, 0, jnp.asarray(1), None, ndim=1)
  assert rule(None, R.Step(None), bare).lr == 1e-3
  # Unset, vectors take the input base, and the record omits the field (records
  # written before it existed load strictly).
  assert R.GroupBase(3e-4, 0.25)(None, R.Step(vec), _ctx(group=0, g=vec, p=vec)).lr == 3e-4
  assert R.to_record((R.GroupBase(3e-4, 0.25),)) == [
      {"rule": "GroupBase", "input": 3e-4, "hidden": 0.25}]
  assert R.from_record(R.to_record((rule,))) == (rule,)
  with pytest.raises(ValueError, match="vector must be a positive finite float"):
    R.GroupBase(vector=-1.0)


def test_weight_decay_sets_the_coefficient_and_apply_decays_matrices_only():
  d, ctx = _dir(), _ctx()
  u = R.apply((R.RMSNormalize(), R.WeightDecay(0.5), R.GroupBase(0.1, 0.1)), {}, R.Step(d), ctx)
  want = np.asarray(R.rms_normalize(d)) * 0.1 - 0.5 * 0.1 * np.asarray(ctx.p)
  np.testing.assert_allclose(u, want, rtol=1e-6)
  vec = _ctx(p=jnp.ones((3,)), g=jnp.ones((3,)))
  u = R.apply((R.RMSNormalize(), R.WeightDecay(0.5), R.GroupBase(0.1, 0.1)), {},
              R.Step(jnp.ones((3,))), vec)
  np.testing.assert_allclose(u, 0.1 * np.ones(3), rtol=1e-6)


def test_learned_scales_are_exp_theta_and_zero_theta_changes_nothing():
  rule = R.LearnedScales()
  theta = rule.init(jax.random.PRNGKey(0))
  step = rule(theta, R.Step(_dir(), lr=0.3, wd=0.1), _ctx(group=1))
  assert float(step.lr) == pytest.approx(0.3) and float(step.wd) == pytest.approx(0.1)
  theta = {"log_lr": jnp.asarray([0.0, np.log(2.0)]), "log_wd": jnp.asarray(np.log(3.0))}
  step = rule(theta, R.Step(_dir(), lr=0.3, wd=0.1), _ctx(group=1))
  assert float(step.lr) == pytest.approx(0.6) and float(step.wd) == pytest.approx(0.3)
  assert rule(theta, R.Step(_dir()), _ctx()).wd is None  # no decay to scale


def test_cosine_anneals_lr_and_is_constant_without_num_steps():
  rule = R.Cosine()
  for count, n, want in [(1, 4, 0.5 * (1 + np.cos(np.pi / 4))), (4, 4, 0.0), (9, 4, 0.0)]:
    assert float(rule(None, R.Step(_dir()), _ctx(count=count, num_steps=n)).lr) == \
        pytest.approx(want, abs=1e-7)
  assert rule(None, R.Step(_dir()), _ctx(num_steps=None)).lr == 1.0


def test_compositions_that_cannot_work_are_rejected():
  with pytest.raises(ValueError, match="GroupBase needs RMSNormalize"):
    lopt.MLPLOpt(step=(R.GroupBase(),))
  with pytest.raises(ValueError, match="WeightDecay needs GroupBase"):
    lopt.MLPLOpt(step=(R.RMSNormalize(), R.WeightDecay()))
  with pytest.raises(ValueError, match="clashing θ keys"):
    lopt.MLPLOpt(step=(R.LearnedScales(), R.LearnedScales()))


def test_rule_theta_lives_under_its_key_and_records_round_trip():
  lo = lopt.forms.robust()
  theta = lo.init(jax.random.PRNGKey(0))
  assert set(theta) == {"mlp", "decay_logits", "scales"}
  assert not np.any(np.asarray(theta["scales"]["log_lr"]))
  assert lopt.MLPLOpt.from_record(lo.to_record()) == lo
  assert lopt.MLPLOpt.from_record(lopt.MLPLOpt().to_record()) == lopt.MLPLOpt()
  with pytest.raises(ValueError, match="unknown step rule 'Warp'"):
    lopt.MLPLOpt.from_record({"step": [{"rule": "Warp"}]})


def test_old_flat_records_convert_with_a_deprecation_warning():
  flat = dict(hidden_size=8, step_mult=0.002, mup=False, raw_ratios=True, adam_init=True,
              absolute_time=False, lr_schedule="cosine", output_norm=True,
              hidden_step_mult=0.2, weight_decay=0.1, learned_scales=True)
  with pytest.warns(FutureWarning, match="pre-issue-20"):
    assert lopt.MLPLOpt.from_record(flat) == lopt.forms.robust(mup=False)
  with pytest.warns(FutureWarning), pytest.raises(ValueError, match="removed MLPLOpt form"):
    lopt.MLPLOpt.from_record(dict(hidden_step_mult=0.3))
