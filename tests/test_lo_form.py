"""The robust LO form (lopt.forms.robust: RMS-normalized step, group base steps,
weight decay, learned scales) and NaN isolation, against a NumPy reference
built on test_lopt_core's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt import features as F
from test_lopt_core import np_accumulate, np_features, np_init, np_step

jax.config.update("jax_default_matmul_precision", "highest")

KINDS = {"inp": "input", "hid": "hidden", "out": "sp_output", "vec": "vector"}
SHAPES = {"inp": (5, 8), "hid": (8, 8), "out": (8, 3), "vec": (8,)}
FAN_IN = {"hid": 8, "out": 8}


def _np_robust(cfg, theta, params, grads_seq, num_steps, hidden=None, weight_decay=0.0,
               learned_scales=False, adam=False):
  """NumPy transcription of the module docstring's robust update, step by step."""
  acc = {k: np_init(s) for k, s in SHAPES.items()}
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  sc = theta.get("scales")
  lr_scale = np.exp(np.asarray(sc["log_lr"])) if sc else np.ones(2)
  wd = weight_decay * (np.exp(float(sc["log_wd"])) if sc else 1.0)
  base = [cfg.step_mult * lr_scale[0], (hidden or cfg.step_mult) * lr_scale[1]]
  out = []
  for t, grads in enumerate(grads_seq, start=1):
    sched = 0.5 * (1 + np.cos(np.pi * min(t / num_steps, 1.0)))
    ups = {}
    for k in SHAPES:
      g = np.where(np.isfinite(grads[k]), grads[k], 0.0).astype(np.float64)
      acc[k] = np_accumulate(acc[k], g)
      u = np_step(theta, np_features(g, p[k], acc[k], adam), t, num_steps, cfg)
      group = int(KINDS[k] in ("hidden", "sp_output"))
      lr = base[group] * (1.0 / FAN_IN[k] if k in FAN_IN else 1.0) * sched
      u = u / np.sqrt(np.mean(u ** 2)) * lr if np.any(g != 0) else np.zeros_like(u)
      if p[k].ndim >= 2:
        u = u + wd * lr * p[k]
      ups[k] = -u
    out.append(ups)
    p = {k: p[k] + ups[k] for k in p}
  return out


def _setup(cfg, seed=0, steps=3):
  rng = np.random.default_rng(seed)
  params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
  grads = [{k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
           for _ in range(steps)]
  theta = cfg.init(jax.random.PRNGKey(seed))
  if "scales" in theta:
    theta["scales"] = {"log_lr": jnp.asarray([0.3, -0.2]), "log_wd": jnp.asarray(0.5)}
  return params, grads, theta


@pytest.mark.parametrize("options", [
    dict(),
    dict(hidden=0.5, weight_decay=0.1),
    dict(hidden=0.5, weight_decay=0.1, learned_scales=True, adam=True),
])
def test_robust_form_matches_numpy(options):
  opts = dict(dict(hidden=None, weight_decay=0.0, learned_scales=False, adam=False), **options)
  cfg = lopt.forms.robust(input=0.01, hidden=opts["hidden"] or 0.01,
                          weight_decay=opts["weight_decay"],
                          learned_scales=opts["learned_scales"], adam=opts["adam"],
                          absolute_time=True, hidden_size=32, backend="xla")
  params, grads, theta = _setup(cfg)
  tx = cfg.as_optax(theta, num_steps=5, mup=KINDS)
  state, p = tx.init(params), params
  want = _np_robust(cfg, theta, params, grads, num_steps=5, **opts)
  for g, w in zip(grads, want):
    u, state = jax.jit(tx.update)({k: jnp.asarray(v) for k, v in g.items()}, state, p)
    for k in SHAPES:  # atol: float32 cancellation where the MLP's output is near 0
      np.testing.assert_allclose(u[k], w[k], rtol=2e-4, atol=1e-3 * np.abs(w[k]).max())
    p = jax.tree_util.tree_map(lambda a, b: a + b, p, u)


def test_robust_step_rms_is_the_base_step_whatever_theta():
  """The bound by construction: scaling θ's output layer by 1e4 leaves every
  tensor's step RMS at base * μP multiplier * schedule."""
  cfg = lopt.forms.robust(input=0.003, hidden=0.2, weight_decay=0.0, learned_scales=False,
                          cosine=False, adam=False, absolute_time=True, hidden_size=32,
                          backend="xla")
  params, grads, theta = _setup(cfg)
  theta["mlp"]["output"]["w"] = theta["mlp"]["output"]["w"] * 1e4
  u, _ = cfg.update(theta, {k: jnp.asarray(v) for k, v in grads[0].items()},
                    cfg.init_state(params), params, mup=KINDS)
  want = {"inp": 0.003, "vec": 0.003, "hid": 0.2 / 8, "out": 0.2 / 8}
  for k, r in want.items():
    assert float(jnp.sqrt(jnp.mean(u[k] ** 2))) == pytest.approx(r, rel=1e-5)


def test_zero_gradient_tensor_gets_no_step():
  cfg = lopt.MLPLOpt(step=(lopt.step_rules.RMSNormalize(),), backend="xla")
  params, grads, theta = _setup(cfg)
  g = {k: jnp.asarray(v) for k, v in grads[0].items()}
  g["hid"] = jnp.zeros_like(g["hid"])
  u, _ = cfg.update(theta, g, cfg.init_state(params), params, mup=KINDS)
  assert not np.any(np.asarray(u["hid"])) and np.all(np.asarray(u["inp"]) != 0)


@pytest.mark.parametrize("form", ["reference", "robust"])
def test_one_nan_gradient_element_changes_only_itself(form):
  """A NaN element is zeroed and counted: the rest of the tensor steps as if
  that element's gradient were 0, and the state stays finite afterwards."""
  cfg = (lopt.MLPLOpt(backend="xla") if form == "reference" else
         lopt.forms.robust(input=0.01, hidden=0.01, learned_scales=False, cosine=False,
                           adam=False, absolute_time=True, hidden_size=32, backend="xla"))
  params, grads, theta = _setup(cfg)
  tx = cfg.as_optax(theta, num_steps=10, mup=KINDS)
  g = {k: jnp.asarray(v) for k, v in grads[0].items()}
  bad = dict(g, hid=g["hid"].at[2, 3].set(jnp.nan))
  zeroed = dict(g, hid=g["hid"].at[2, 3].set(0.0))
  u_bad, s_bad = tx.update(bad, tx.init(params), params)
  u_zero, _ = tx.update(zeroed, tx.init(params), params)
  for k in SHAPES:
    np.testing.assert_array_equal(np.asarray(u_bad[k]), np.asarray(u_zero[k]))
  assert int(s_bad.nonfinite) == 1
  u2, s2 = tx.update(g, s_bad, params)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves((u2, s2)))
  assert int(s2.nonfinite) == 1


def test_bad_robust_options():
  with pytest.raises(ValueError, match="hidden must be a positive finite float"):
    lopt.forms.robust(hidden=-1.0)
  with pytest.raises(ValueError, match="coef must be a positive finite float"):
    lopt.forms.robust(weight_decay=float("nan"))
  with pytest.raises(ValueError, match="step_mult"):
    lopt.MLPLOpt(step_mult=float("inf"))
