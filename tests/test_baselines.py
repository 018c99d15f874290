"""Tests for lopt.baselines: registry, schedules, and our optimizers vs their papers.

The reference implementations below are plain NumPy transcriptions of each
paper's update equations (or of the authors' code where the docstring says
so), in float32 so that both sides round alike.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt import baselines as B

f32 = np.float32


# --------------------------------------------------------------------------
# A 3-step example: a matrix and a vector, fixed gradients.

def _example(seed=0, w_scale=1.0, b_scale=0.1):
  rng = np.random.default_rng(seed)
  p0 = {"w": rng.normal(size=(3, 4)).astype(f32),
        "b": (0.5 * rng.normal(size=4)).astype(f32)}
  grads = [{"w": (w_scale * rng.normal(size=(3, 4))).astype(f32),
            "b": (b_scale * rng.normal(size=4)).astype(f32)} for _ in range(3)]
  return p0, grads


def _run_optax(tx, p0, grads):
  """Updates of ``tx`` over the fixed gradients (eager; params updated each step)."""
  params = jax.tree.map(jnp.asarray, p0)
  state = tx.init(params)
  out = []
  for g in grads:
    u, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
    out.append(jax.tree.map(np.asarray, u))
    params = optax.apply_updates(params, u)
  return out


def _run_numpy(step_fn, p0, grads):
  """Apply a NumPy reference ``step_fn(p, g, t, st) -> (update, st)`` to each
  tensor (or ``step_fn[name]`` when it is a dict)."""
  out = [{} for _ in grads]
  for k in p0:
    fn = step_fn[k] if isinstance(step_fn, dict) else step_fn  # per-tensor rules
    p, st = p0[k].copy(), None
    for t, g in enumerate(grads, start=1):
      u, st = fn(p, g[k], t, st)
      out[t - 1][k] = u
      p = (p + u).astype(f32)
  return out


def _assert_close(got, want, rtol=2e-6):
  for step, (g, w) in enumerate(zip(got, want)):
    for k in w:
      scale = float(np.max(np.abs(w[k]))) or 1.0
      np.testing.assert_allclose(g[k], w[k], rtol=rtol, atol=1e-7 * scale,
                                 err_msg=f"step {step + 1}, tensor {k}")


# Constants are rounded as optax rounds them: (1−β) is computed in double and
# then cast, 1−β^t in float32. This matters at the 1e-5 level because 1−β2^t
# cancels in float32; it is rounding, not a different algorithm.

def _ema(old, new, b):
  """β·old + (1−β)·new."""
  return (f32(b) * old + f32(1 - b) * new).astype(f32)


def _bc(b, t):
  """Bias correction 1 − β^t."""
  return f32(1) - f32(b) ** t


def _adam_moments(st, g, b1, b2):
  m, v = st if st is not None else (np.zeros_like(g), np.zeros_like(g))
  return _ema(m, g, b1), _ema(v, g * g, b2)


# --------------------------------------------------------------------------
# μAdam.

def _muadam_np(lr, mult, b1=0.9, b2=0.999, eps=f32(1e-8)):
  def step(p, g, t, st):
    m, v = _adam_moments(st, g, b1, b2)
    mhat, vhat = m / _bc(b1, t), v / _bc(b2, t)
    return (-lr * mult * mhat / (np.sqrt(vhat) + eps)).astype(f32), (m, v)
  return step


def test_muadam_matches_numpy():
  # w is (3, 4) and hidden: its step is lr/fan_in = lr/3 times Adam's.
  p0, grads = _example()
  got = _run_optax(B.get("muadam", 1e-2, mup={"w": "hidden", "b": "vector"}), p0, grads)
  want = _run_numpy({"w": _muadam_np(f32(1e-2), f32(1 / 3)),
                     "b": _muadam_np(f32(1e-2), f32(1))}, p0, grads)
  _assert_close(got, want)


def test_muadam_is_adam_times_inverse_fan_in():
  rng = np.random.default_rng(1)
  # Few distinct shapes: this test runs eagerly (see below), compiling per shape.
  shapes = {"w_in": (3, 5), "w_h": (3, 5), "conv": (3, 3, 1, 5), "w_out": (3, 5), "b": (5,),
            "custom": (3, 5)}
  spec = {"w_in": "input", "w_h": "hidden", "conv": "hidden", "w_out": "output",
          "b": "vector", "custom": 0.25}
  p0 = {k: rng.normal(size=s).astype(f32) for k, s in shapes.items()}
  grads = [{k: rng.normal(size=s).astype(f32) for k, s in shapes.items()} for _ in range(3)]
  # Eager, so that bit equality holds (under jit XLA may fuse differently: 1 ulp).
  mu = _run_optax(B.get("muadam", 3e-3, mup=spec), p0, grads)
  # Adam's updates do not depend on the params, so the two runs see the same grads.
  ad = _run_optax(B.get("adam", 3e-3), p0, grads)
  expected = {"w_in": 1.0, "w_h": 1 / 3, "conv": 1 / 9, "w_out": 1.0, "b": 1.0, "custom": 0.25}
  for t in range(3):
    for k, mult in expected.items():
      np.testing.assert_array_equal(mu[t][k], ad[t][k] * f32(mult), err_msg=k)
  # mup=None is exactly Adam.
  plain = _run_optax(B.get("muadam", 3e-3), p0, grads)
  for t in range(3):
    for k in p0:
      np.testing.assert_array_equal(plain[t][k], ad[t][k])


def test_muadam_bad_spec_fails_at_init():
  tx = B.get("muadam", 1e-2, mup={"w": "hidden"})
  with pytest.raises(ValueError, match="tree structure"):
    tx.init({"w": jnp.ones((3, 3)), "b": jnp.ones(3)})


# --------------------------------------------------------------------------
# Grams.

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_grams_matches_numpy(wd):
  lr, b1, b2, eps = f32(1e-2), 0.9, 0.999, f32(1e-8)

  def step(p, g, t, st):
    m, v = _adam_moments(st, g, b1, b2)
    u = (m / _bc(b1, t)) / (np.sqrt(v / _bc(b2, t)) + eps)
    return (-lr * (np.sign(g) * np.abs(u) + f32(wd) * p)).astype(f32), (m, v)

  p0, grads = _example()
  _assert_close(_run_optax(B.get("grams", 1e-2, weight_decay=wd), p0, grads),
                _run_numpy(step, p0, grads))


def test_grams_sign_follows_current_gradient():
  # After a sign flip, Adam's momentum still points the old way; Grams must not.
  tx = B.get("grams", 1e-2)
  p = jnp.zeros(3)
  s = tx.init(p)
  _, s = tx.update(jnp.array([1.0, 1.0, 1.0]), s, p)
  u, _ = tx.update(jnp.array([-0.1, 0.2, -0.3]), s, p)
  np.testing.assert_array_equal(np.sign(u), [1, -1, 1])


# --------------------------------------------------------------------------
# Cautious.

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_cautious_adamw_matches_numpy(wd):
  # C-AdamW as in Liang et al.'s code: decay outside the mask; mask on m·g > 0.
  lr, b1, b2, eps = f32(1e-2), 0.9, 0.999, f32(1e-8)

  def step(p, g, t, st):
    m, v = _adam_moments(st, g, b1, b2)
    mask = (m * g > 0).astype(f32)
    mask = mask * (f32(mask.size) / (mask.sum() + f32(1)))
    u = (m / _bc(b1, t)) * mask / (np.sqrt(v / _bc(b2, t)) + eps)
    return (-lr * (u + f32(wd) * p)).astype(f32), (m, v)

  p0, grads = _example()
  _assert_close(_run_optax(B.get("cautious-adamw", 1e-2, weight_decay=wd), p0, grads),
                _run_numpy(step, p0, grads))


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_cautious_lion_matches_numpy(wd):
  lr, b1, b2 = f32(1e-3), 0.9, 0.99

  def step(p, g, t, st):
    m = st if st is not None else np.zeros_like(g)
    u = np.sign(_ema(m, g, b1))
    mask = (u * g > 0).astype(f32)
    mask = mask * (f32(mask.size) / (mask.sum() + f32(1)))
    m = _ema(m, g, b2)
    return (-lr * (u * mask + f32(wd) * p)).astype(f32), m

  p0, grads = _example()
  _assert_close(_run_optax(B.get("cautious-lion", 1e-3, weight_decay=wd), p0, grads),
                _run_numpy(step, p0, grads))


def test_cautious_wrapper_sign_convention():
  # Wrapping a full optimizer (updates = −lr·trace) must mask where the *descent*
  # direction disagrees with g, i.e. keep u·g < 0.
  lr, mom = f32(0.1), f32(0.9)

  def step(p, g, t, st):
    tr = g if st is None else (g + mom * st).astype(f32)
    u = -lr * tr
    mask = (u * g < 0).astype(f32)
    return (u * mask * (f32(mask.size) / (mask.sum() + f32(1)))).astype(f32), tr

  p0, grads = _example()
  want = _run_numpy(step, p0, grads)
  _assert_close(_run_optax(B.cautious(optax.sgd(0.1, momentum=0.9)), p0, grads), want)
  # The same through the direction convention.
  direction = optax.chain(B.cautious(optax.trace(0.9), direction=True), optax.scale(-0.1))
  _assert_close(_run_optax(direction, p0, grads), want)
  # And the mask did bite (else the test would not see a sign error).
  assert any((w[k] == 0).any() for w in want for k in w)


def test_cautious_passes_extra_args():
  seen = {}

  def init(params):
    return optax.EmptyState()

  def update(updates, state, params=None, **extra):
    seen.update(extra)
    return updates, state

  tx = B.cautious(optax.GradientTransformationExtraArgs(init, update), direction=True)
  p = jnp.ones(2)
  tx.update(p, tx.init(p), p, obj_fn="x")
  assert seen == {"obj_fn": "x"}


# --------------------------------------------------------------------------
# MARS-AdamW.

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_mars_adamw_matches_numpy(wd):
  lr, b1, b2, eps, gamma = f32(3e-3), 0.95, 0.99, f32(1e-8), 0.025
  clipped = []

  def step(p, g, t, st):
    mv, prev = st if st is not None else (None, g)   # x_0 = x_1: no correction at t = 1
    c = (g + f32(gamma * b1 / (1 - b1)) * (g - prev)).astype(f32)
    norm = np.sqrt(np.sum(c * c))
    clipped.append(bool(norm > 1))
    if norm > 1:
      c = (c / norm).astype(f32)
    m, v = _adam_moments(mv, c, b1, b2)
    u = (m / _bc(b1, t)) / (np.sqrt(v / _bc(b2, t)) + eps)
    return (-lr * (u + f32(wd) * p)).astype(f32), ((m, v), g)

  p0, grads = _example()
  _assert_close(_run_optax(B.get("mars-adamw", 3e-3, weight_decay=wd), p0, grads),
                _run_numpy(step, p0, grads))
  assert any(clipped) and not all(clipped)  # both branches of the clip were used


# --------------------------------------------------------------------------
# AdaBound.

def _adabound_np(lrs, peak, final_lr, gamma, wd=f32(0), b1=0.9, b2=0.999,
                 eps=f32(1e-8), regimes=None):
  # Transcription of the authors' reference code (Luolc/AdaBound).
  def step(p, g, t, st):
    g = (g + wd * p).astype(f32)  # L2
    m, v = _adam_moments(st, g, b1, b2)
    lr = f32(lrs[t - 1])
    step_size = lr * np.sqrt(_bc(b2, t)) / _bc(b1, t)
    final = f32(final_lr) * lr / f32(peak)
    lower = final * (f32(1) - f32(1) / (f32(gamma) * t + f32(1)))
    upper = final * (f32(1) + f32(1) / (f32(gamma) * t))
    raw = step_size / (np.sqrt(v) + eps)
    if regimes is not None:
      regimes.update({"lower": (raw < lower).any() or regimes.get("lower", False),
                      "upper": (raw > upper).any() or regimes.get("upper", False),
                      "inside": ((raw > lower) & (raw < upper)).any() or regimes.get("inside", False)})
    return (-(np.clip(raw, lower, upper) * m)).astype(f32), (m, v)
  return step


def test_adabound_default_matches_numpy():
  p0, grads = _example()
  _assert_close(_run_optax(B.get("adabound", 1e-3), p0, grads),
                _run_numpy(_adabound_np([1e-3] * 3, 1e-3, 0.1, 1e-3), p0, grads))


def test_adabound_bounds_bite_matches_numpy():
  # gamma=0.5 makes the bounds tight within 3 steps; gradients of mixed scale
  # put some coordinates below, inside and above them.
  p0, grads = _example(seed=3, w_scale=3.0, b_scale=0.05)
  regimes = {}
  want = _run_numpy(_adabound_np([1e-2] * 3, 1e-2, 0.1, 0.5, wd=f32(0.01), regimes=regimes),
                    p0, grads)
  got = _run_optax(B.get("adabound", 1e-2, gamma=0.5, weight_decay=0.01), p0, grads)
  _assert_close(got, want)
  assert regimes == {"lower": True, "upper": True, "inside": True}


def test_adabound_schedule_scales_bounds():
  sched = B.schedule("warmup_cosine", 1e-2, num_steps=5, warmup_steps=2)
  lrs = [float(sched(i)) for i in range(3)]
  p0, grads = _example()
  got = _run_optax(B.get("adabound", 1e-2, schedule="warmup_cosine", num_steps=5,
                         warmup_steps=2, gamma=0.5), p0, grads)
  _assert_close(got, _run_numpy(_adabound_np(lrs, 1e-2, 0.1, 0.5), p0, grads))
  with pytest.raises(ValueError, match="base_lr"):
    B.adabound(sched)


# --------------------------------------------------------------------------
# diffGrad.

@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_diffgrad_matches_numpy(wd):
  lr, b1, b2, eps = f32(1e-2), 0.9, 0.999, f32(1e-8)

  def step(p, g, t, st):
    g = (g + f32(wd) * p).astype(f32)  # L2, as in the reference code
    mv, prev = st if st is not None else (None, np.zeros_like(g))  # g_0 = 0
    m, v = _adam_moments(mv, g, b1, b2)
    xi = f32(1) / (f32(1) + np.exp(-np.abs(prev - g)))
    u = xi * (m / _bc(b1, t)) / (np.sqrt(v / _bc(b2, t)) + eps)
    return (-lr * u).astype(f32), ((m, v), g)

  p0, grads = _example()
  _assert_close(_run_optax(B.get("diffgrad", 1e-2, weight_decay=wd), p0, grads),
                _run_numpy(step, p0, grads))


# --------------------------------------------------------------------------
# Our transforms on awkward pytrees: scalars, 4-D kernels, bf16.

@pytest.mark.parametrize("name", ["muadam", "grams", "cautious-adamw", "cautious-lion",
                                  "mars-adamw", "adabound", "diffgrad"])
def test_ours_keep_dtypes_and_shapes(name):
  params = {"s": jnp.array(0.5, jnp.float32), "k": jnp.full((2, 2, 3, 4), 0.1, jnp.bfloat16)}
  kw = {"mup": {"s": "vector", "k": "hidden"}} if name == "muadam" else {}
  tx = B.get(name, 1e-2, **kw)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for i in range(2):
    g = jax.tree.map(lambda p: jnp.full_like(p, 0.3 * (-1) ** i), params)
    u, state2 = step(g, state, params)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), u) == \
        jax.tree.map(lambda x: (x.shape, x.dtype), params)
    # The state keeps its types across steps (needed inside lax.scan).
    assert jax.tree.map(lambda x: x.dtype, state2) == jax.tree.map(lambda x: x.dtype, state)
    state = state2
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


# --------------------------------------------------------------------------
# Sophia: the Hessian estimate really comes from obj_fn.

def test_sophia_uses_obj_fn():
  # f(x) = ½ Σ a x²: H = diag(a), and Hutchinson with Rademacher probes is exact.
  rng = np.random.default_rng(4)
  a = rng.uniform(0.5, 2.0, size=5).astype(f32)
  x0 = rng.normal(size=5).astype(f32)
  lr, b1, b2, gamma, wd = f32(0.1), 0.965, 0.99, f32(100.0), f32(1e-4)
  obj = lambda x: 0.5 * jnp.sum(jnp.asarray(a) * x * x)
  tx = B.get("sophia", 0.1, gamma=100.0, update_interval=2)
  x = jnp.asarray(x0)
  state = tx.init(x)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=obj))
  xn, m, h = x0.copy(), np.zeros(5, f32), np.zeros(5, f32)
  n_clipped = 0
  for t in range(1, 5):
    g = (a * xn).astype(f32)
    u, state = update(jnp.asarray(g), state, x)
    m = _ema(m, g, b1)
    r = (m / _bc(b1, t)) / np.maximum(gamma * h, f32(1e-8))
    n_clipped += int((np.abs(r) >= 1).sum())
    want = -lr * (np.clip(r, -1, 1) + wd * xn)
    if (t - 1) % 2 == 0:  # the Hessian EMA is refreshed every update_interval steps
      h = _ema(h, a, b2)
    np.testing.assert_allclose(np.asarray(u), want, rtol=2e-6, atol=1e-8)
    x = optax.apply_updates(x, u)
    xn = np.asarray(x)
  assert 0 < n_clipped < 20  # both clipped and Newton-like coordinates


def test_sophia_without_obj_fn_fails_clearly():
  tx = B.get("sophia", 1e-3)
  p = jnp.ones(3)
  with pytest.raises(ValueError, match="obj_fn"):
    tx.update(p, tx.init(p), p)


# --------------------------------------------------------------------------
# Schedule-free evaluation params.

def test_eval_params_schedule_free():
  p = {"w": jnp.array([1.0, -2.0, 3.0])}
  grad = jax.grad(lambda q: jnp.sum(q["w"] ** 2))
  for tx in (B.get("schedule-free-adamw", 0.1),
             optax.chain(optax.clip_by_global_norm(10.0), B.get("schedule_free_adamw", 0.1))):
    params, state = p, tx.init(p)
    for _ in range(3):
      u, state = tx.update(grad(params), state, params)
      params = optax.apply_updates(params, u)
    sf_state = state if isinstance(state, optax.contrib.ScheduleFreeState) else state[1]
    want = optax.contrib.schedule_free_eval_params(sf_state, params)
    got = jax.jit(lambda s, q: B.eval_params("schedule-free-adamw", s, q))(state, params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)
    assert not np.allclose(got["w"], params["w"])
  adam = B.get("adam", 1e-2)
  assert B.eval_params("adam", adam.init(p), p) is p
  with pytest.raises(ValueError, match="valid names"):
    B.eval_params("nope", None, p)


# --------------------------------------------------------------------------
# Schedules.

def test_schedules():
  c = B.schedule("constant", 0.1)
  assert float(c(0)) == pytest.approx(0.1) and float(c(10**6)) == pytest.approx(0.1)
  cw = B.schedule("constant", 0.1, warmup_steps=10)
  assert [float(cw(i)) for i in (0, 5, 10, 1000)] == pytest.approx([0.0, 0.05, 0.1, 0.1])
  cos = B.schedule("warmup_cosine", 1.0, num_steps=110, warmup_steps=10, end_frac=0.1)
  assert [float(cos(i)) for i in (0, 5, 10, 60, 110)] == \
      pytest.approx([0.0, 0.5, 1.0, 0.55, 0.1], abs=1e-6)
  lin = B.schedule("warmup_linear", 1.0, num_steps=110, warmup_steps=10)
  assert [float(lin(i)) for i in (0, 5, 10, 60, 110, 200)] == \
      pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0], abs=1e-6)
  lin0 = B.schedule("warmup_linear", 1.0, num_steps=100)
  assert float(lin0(0)) == pytest.approx(1.0) and float(lin0(50)) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="valid schedules"):
    B.schedule("cosine", 1.0, 10)
  with pytest.raises(ValueError, match="num_steps"):
    B.schedule("warmup_cosine", 1.0)
  with pytest.raises(ValueError, match="warmup_steps"):
    B.schedule("warmup_linear", 1.0, num_steps=10, warmup_steps=10)


def test_get_with_schedule_equals_manual_schedule():
  p0, grads = _example()
  sched = B.schedule("warmup_cosine", 1e-2, num_steps=10, warmup_steps=2)
  want = _run_optax(B.get("adamw", sched), p0, grads)
  got = _run_optax(B.get("adamw", 1e-2, schedule="warmup_cosine", num_steps=10,
                         warmup_steps=2), p0, grads)
  _assert_close(got, want, rtol=0)
  # warmup_steps alone means a warmup to a constant LR; the first step is 0.
  first = _run_optax(B.get("adam", 1e-2, warmup_steps=5), p0, grads)[0]
  assert all(np.all(first[k] == 0) for k in first)


# --------------------------------------------------------------------------
# Registry: names, grids, errors.

EXPECTED = {"adam", "adamw", "sgd", "nesterov", "lion", "adabelief", "amsgrad", "adafactor",
            "nadamw", "adan", "ademamix", "sophia", "muon", "schedule-free-adamw", "dog",
            "prodigy", "muadam", "grams", "cautious-adamw", "cautious-lion", "mars-adamw",
            "adabound", "diffgrad"}


def test_names_and_grids():
  assert set(B.names()) == EXPECTED
  for name in B.names():
    grid = B.default_lr_grid(name)
    assert 7 <= len(grid) <= 9, name
    ratios = np.diff(np.log10(grid))
    assert np.all((ratios > 0.45) & (ratios < 0.55)), (name, grid)  # half decades
  assert B.default_lr_grid("adam") == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
  assert max(B.default_lr_grid("sgd")) > max(B.default_lr_grid("adam"))
  assert max(B.default_lr_grid("lion")) < max(B.default_lr_grid("adam"))
  assert 1.0 in B.default_lr_grid("dog") and 1.0 in B.default_lr_grid("prodigy")


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError) as e:
    B.get("adamm", 1e-3)
  assert "adamm" in str(e.value) and all(n in str(e.value) for n in B.names())
  with pytest.raises(ValueError, match="valid names"):
    B.default_lr_grid("nope")


def test_unknown_hparam_is_named_with_accepted_ones():
  with pytest.raises(ValueError) as e:
    B.get("adam", 1e-3, beta1=0.9)
  msg = str(e.value)
  assert "beta1" in msg and "b1" in msg and "eps" in msg
  with pytest.raises(ValueError, match="gamma"):
    B.get("grams", 1e-3, gamma=0.1)
  # schedule-free's own warmup_steps is replaced by get(..., warmup_steps=).
  assert "warmup_steps" not in B.hparams("schedule-free-adamw")


def test_learning_rate_rules():
  with pytest.raises(ValueError, match="learning_rate"):
    B.get("adam")
  B.get("dog")       # LR-free: a multiplier defaulting to 1
  B.get("prodigy")
  with pytest.raises(ValueError, match="callable"):
    B.get("adam", optax.constant_schedule(1e-3), schedule="warmup_cosine", num_steps=10)
  with pytest.raises(ValueError, match="num_steps"):
    B.get("adam", 1e-3, schedule="warmup_cosine")


# --------------------------------------------------------------------------
# Every registry entry trains a tiny MLP, jitted, through one calling convention.

def _mlp_problem():
  # Three matrices (input, hidden, output) and one bias: few leaves keep the
  # 23 compilations below cheap.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 4)).astype(f32))
  y = jnp.sin(x.sum(axis=1, keepdims=True))
  params = {f"w{i}": jnp.asarray(rng.normal(size=(a, b)).astype(f32) / math.sqrt(a))
            for i, (a, b) in enumerate([(4, 16), (16, 16), (16, 1)])}
  params["b0"] = jnp.zeros(16, jnp.float32)

  def loss(p):
    h = jnp.tanh(x @ p["w0"] + p["b0"])
    h = jnp.tanh(h @ p["w1"])
    return jnp.mean((h @ p["w2"] - y) ** 2)

  spec = {"w0": "input", "b0": "vector", "w1": "hidden", "w2": "output"}
  return params, loss, spec


_PARAMS, _LOSS, _SPEC = _mlp_problem()
# Compiled once for all names, so each name only compiles its own update.
_LOSS_AND_GRAD = jax.jit(jax.value_and_grad(_LOSS))
_APPLY = jax.jit(optax.apply_updates)

# A reasonable LR per name for 25 full-batch steps (any LR from its grid would do
# for "finite and nonzero"; these also make the loss go down).
_SMOKE_LR = {"sgd": 0.3, "nesterov": 0.1, "lion": 3e-3, "cautious-lion": 3e-3, "sophia": 3e-3,
             "adafactor": 0.1, "muon": 0.03, "muadam": 0.3, "dog": 1.0, "prodigy": 1.0}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_registry_entry_trains_tiny_mlp(name):
  params = _PARAMS
  kw = {"mup": _SPEC} if name == "muadam" else {}
  tx = B.get(name, _SMOKE_LR.get(name, 1e-2), **kw)
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  state = jax.jit(tx.init)(params)  # one compile instead of many eager ops
  # One calling convention for all: obj_fn is used by sophia and ignored by the rest.
  update = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=_LOSS))

  l0 = float(_LOSS(params))
  for i in range(25):
    _, g = _LOSS_AND_GRAD(params)
    u, state = update(g, state, params)
    params = _APPLY(params, u)
    if i == 0:
      leaves = jax.tree.leaves(u)
      assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves), name
      assert any(bool(jnp.any(x != 0)) for x in leaves), name
  final = float(_LOSS(jax.jit(B.eval_params, static_argnums=0)(name, state, params)))
  assert np.isfinite(final) and final < l0, (name, l0, final)
