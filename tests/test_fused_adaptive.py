"""The fused Pallas update of AdaptiveLOpt (interpret mode on CPU) equals the XLA
reference in the shipped mulo-m form: tensors of rank 0, 1 and 2, masked and
exact tiles, bf16, with and without loss=, over steps; vmapped particles;
gradients wrt θ; the Triton lowering; and which backend runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from cli_helpers import pallas_grids
from lopt import step_rules
from lopt.adaptive import AdamDirection, AdaptiveLOpt

# The kernel's update vs XLA's: max |Δ| over each update's RMS (float32
# tensors). The per-tensor scalars (sums over the tensor in another order,
# exp/tanh/pow in other fusions) differ by a few float32 ulps, and every
# element with them; an element where Adam's direction and the residual
# cancel carries its terms' rounding. Measured on the 2-core CPU: 5.5e-7 on
# this test's data; over 12 θ (random and mulo-m's) x 4 steps, up to 2.3e-6;
# XLA's own update vmapped vs not differs by up to 9.6e-7 on the same data.
# So 1e-6 (the issue's target) is float32's noise floor here, not a bound any
# second implementation keeps: the bound is 4e-6.
RMS_RELATIVE = 4e-6
# Ranks 0-2: one masked tile of 16 ("scalar"), one masked tile ("vector"),
# two tiles, the second masked ("dense", 1320 elements), and a bf16 tensor of
# exactly one tile (no mask).
SHAPES = {"scalar": (), "vector": (300,), "dense": (40, 33)}
BF16 = {"exact_bf16": (8, 128)}
KINDS = {"scalar": "vector", "vector": "vector", "dense": "hidden", "exact_bf16": "input"}
SHIPPED = lopt.protocol.from_record("AdaptiveLOpt", lopt.load_metadata("mulo-m")["config"])


# Test data from NumPy: eager jax.random calls would each compile a program.
def _normal(rng, shape, dtype=np.float32):
  return jnp.asarray(rng.standard_normal(shape).astype(np.float32), dtype)


def _theta(lo, seed=0):
  """θ with every leaf 0.3 N(0, 1), zero-initialized parts included, so the
  residual, the head, the learned scales and the schedule's shape all act."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(lambda x: 0.3 * rng.standard_normal(x.shape).astype(np.float32),
                                jax.eval_shape(lo.init, jax.random.PRNGKey(seed)))


def _tree(rng, shapes, dtype=np.float32):
  return {n: _normal(rng, s, dtype) for n, s in shapes.items()}


def _params_and_grads(steps=3):
  rng = np.random.default_rng(1)
  params = {**_tree(rng, SHAPES), **_tree(rng, BF16, jnp.bfloat16)}
  grads = [{**_tree(rng, SHAPES), **_tree(rng, BF16, jnp.bfloat16)} for _ in range(steps)]
  vector = np.array(grads[1]["vector"])
  vector[7] = np.nan                                    # sanitized, and counted
  grads[1]["vector"] = jnp.asarray(vector)
  return params, grads


@jax.jit
def _apply(params, updates):
  return optax.apply_updates(params, updates)


def _unroll(lo, theta, params, grads_seq, losses):
  """The updates and states of ``len(grads_seq)`` steps (one compiled update,
  called once per step: a scan would compile slower)."""
  update = jax.jit(lambda th, g, s, p, loss: lo.update(th, g, s, p, num_steps=20,
                                                       mup=_kinds(p), loss=loss))
  state, out = lo.init_state(params), []
  for i, grads in enumerate(grads_seq):
    updates, state = update(theta, grads, state, params, None if losses is None else losses[i])
    params = _apply(params, updates)
    out.append((updates, state))
  stack = lambda *xs: np.stack(xs)
  return tuple(jax.tree_util.tree_map(stack, *(o[k] for o in out)) for k in range(2))


def _kinds(params):
  return {k: KINDS[k] for k in params}


def _rms_relative(got, want) -> float:
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / np.sqrt(np.mean(want**2)))


def _check_updates(got, want):
  """Every step's update of every tensor; returns the largest float32 error."""
  worst = 0.0
  for name in want:
    if name in BF16:  # the same float32 update, rounded to bf16: at most one ulp apart
      np.testing.assert_allclose(np.asarray(got[name], np.float32),
                                 np.asarray(want[name], np.float32), rtol=2 ** -7, err_msg=name)
      continue
    for step in range(want[name].shape[0]):
      err = _rms_relative(got[name][step], want[name][step])
      assert err <= RMS_RELATIVE, (name, step, err)
      worst = max(worst, err)
  return worst


# Without loss= only the head's loss features change (the same for every
# tensor): one tensor, a matrix of two tiles, keeps that case's compile short.
@pytest.mark.parametrize("with_loss", [True, False], ids=["loss", "no_loss"])
def test_fused_equals_xla_in_the_shipped_form_over_steps(with_loss):
  xla = dataclasses.replace(SHIPPED, backend="xla")
  fused = dataclasses.replace(SHIPPED, backend="pallas")
  theta = _theta(xla)
  params, grads_seq = _params_and_grads()
  names = list(KINDS) if with_loss else ["dense"]
  params, grads_seq = {k: params[k] for k in names}, [{k: g[k] for k in names} for g in grads_seq]
  losses = jnp.asarray([2.0, 1.5, 1.6]) if with_loss else None
  run = lambda lo: _unroll(lo, theta, params, grads_seq, losses)
  (want_u, want_s), (got_u, got_s) = run(xla), run(fused)
  worst = _check_updates(got_u, want_u)
  print(f"max |Δ| / RMS, kernel vs XLA: {worst:.2e}")
  assert all(np.abs(np.asarray(u[-1], np.float32)).max() > 0 for u in want_u.values())
  nonfinite = [0, 1, 1] if with_loss else [0, 0, 0]   # the NaN in "vector" at step 2
  assert np.asarray(want_s.nonfinite).tolist() == nonfinite
  assert np.asarray(got_s.nonfinite).tolist() == nonfinite
  for name in names:  # the state: moments, log-rms at update 1, multipliers
    want_t, got_t = want_s.tensors[name], got_s.tensors[name]
    assert want_t.log_z is None and got_t.log_z is None   # no rule reads the alignment
    for field in (f for f in want_t._fields if f != "log_z"):
      atol = 1e-6 if field.startswith("log") else 1e-7  # logs: absolute errors
      np.testing.assert_allclose(np.asarray(getattr(got_t, field)),
                                 np.asarray(getattr(want_t, field)), rtol=2e-6, atol=atol,
                                 err_msg=f"{name}.{field}")
  # The head and the learned scales act: the multipliers are not 1.
  assert np.abs(np.asarray(want_s.tensors["dense"].mults) - 1.0).min() > 1e-3


def test_fused_equals_xla_with_gradient_restraint():
  """The kernels run GradientRestraint as a per-tensor scalar rule: over steps
  whose gradients shrink (×0.3 per step, so the restraint acts), the fused
  update equals XLA's and the restraint slowed the later steps (hand
  exponents per μP group, as the shipped mulo-m has them)."""
  base = tuple(r for r in SHIPPED.step if not isinstance(r, lopt.adaptive.GradientRestraint))
  form = dataclasses.replace(SHIPPED, step=base + (
      lopt.adaptive.GradientRestraint(alpha=(0.0, 0.5), beta=(0.0, 0.5)),))
  xla, fused = (dataclasses.replace(form, backend=b) for b in ("xla", "pallas"))
  theta = _theta(xla)
  theta["restraint"] = {"alpha": jnp.asarray([0.0, 0.4], jnp.float32),   # hidden: α = 0.9,
                        "beta": jnp.asarray([0.0, -0.3], jnp.float32)}   # β = 0.2
  params, grads_seq = _params_and_grads()
  params = {"dense": params["dense"]}
  grads_seq = [{"dense": g["dense"] * 0.3 ** t} for t, g in enumerate(grads_seq)]
  run = lambda lo: _unroll(lo, theta, params, grads_seq, None)[0]
  want, got = run(xla), run(fused)
  _check_updates(got, want)
  off = dataclasses.replace(xla, step=base)
  plain = _unroll(off, {k: v for k, v in theta.items() if k != "restraint"}, params,
                  grads_seq, None)[0]
  ratio = np.abs(np.asarray(want["dense"][-1])).max() / np.abs(np.asarray(plain["dense"][-1])).max()
  assert ratio < 0.5, ratio


def test_fused_equals_xla_with_horizon_scales():
  """The kernels run HorizonScales as a per-tensor scalar rule (its group's
  multipliers from num_steps): a hidden and an input tensor, with θ moved so
  that the two groups' multipliers differ; the rule changed the update."""
  form = dataclasses.replace(SHIPPED, step=SHIPPED.step + (lopt.adaptive.HorizonScales(),))
  xla, fused = (dataclasses.replace(form, backend=b) for b in ("xla", "pallas"))
  theta = _theta(xla)
  theta["horizon"] = {"w": jnp.asarray([[0.2, -0.1], [-0.3, 0.25]], jnp.float32)}
  params, grads_seq = _params_and_grads(steps=2)
  names = ["dense", "exact_bf16"]   # kinds "hidden" and "input"
  params, grads_seq = {k: params[k] for k in names}, [{k: g[k] for k in names} for g in grads_seq]
  run = lambda lo, th: _unroll(lo, th, params, grads_seq, None)[0]
  want, got = run(xla, theta), run(fused, theta)
  _check_updates(got, want)
  plain = run(dataclasses.replace(xla, step=SHIPPED.step),
              {k: v for k, v in theta.items() if k != "horizon"})
  assert _rms_relative(want["dense"][0], plain["dense"][0]) > 0.1


@pytest.mark.parametrize("rule", ["InvariantDecayCosine", "NormKeepingCosine"])
def test_fused_equals_xla_with_invariant_decay(rule):
  """The kernels run the rules for scale-invariant tensors with the alignment
  of g and p summed beside them: a hidden matrix whose gradient is orthogonal
  to it (as behind BatchNorm) over two updates of a 3-step run, so the cosine
  factor is 0.25 at the second; the fused update equals XLA's, and the rule
  changed it against ShapedCosine's."""
  rule_class = getattr(lopt.adaptive, rule)
  form = dataclasses.replace(SHIPPED, step=tuple(
      rule_class() if type(r) is lopt.adaptive.ShapedCosine else r for r in SHIPPED.step))
  xla, fused = (dataclasses.replace(form, backend=b) for b in ("xla", "pallas"))
  theta = _theta(xla)
  params, grads_seq = _params_and_grads(steps=2)
  p0 = {"dense": params["dense"]}

  def run(lo, states=None):
    update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=3, mup=_kinds(p)))
    p, state, out = p0, lo.init_state(p0), []
    for grads in grads_seq:
      g, w = grads["dense"], p["dense"]
      g = {"dense": g - (jnp.sum(g * w) / jnp.sum(w * w)) * w}   # orthogonal to the param
      u, state = update(g, state, p)
      p = _apply(p, u)
      out.append(u["dense"])
      if states is not None:
        states.append(float(state.tensors["dense"].log_z))
    return out

  want_z, got_z = [], []
  want, got = run(xla, want_z), run(fused, got_z)
  for step in range(2):
    assert _rms_relative(got[step], want[step]) <= RMS_RELATIVE, step
  # The average of log z the rule read: invariant in both paths (its value,
  # about -14, is float error, summed in another order by each).
  assert max(want_z + got_z) < np.log(0.003)
  plain = run(dataclasses.replace(xla, step=tuple(
      lopt.adaptive.ShapedCosine() if type(r) is rule_class else r for r in form.step)))
  assert _rms_relative(want[1], plain[1]) > 0.05   # InvariantDecayCosine: 0.24 on this data


def test_fused_equals_xla_with_a_vector_base():
  """GroupBase's vector base reaches the kernels through the context's rank
  (they get no param): a vector and a matrix of the input group, where the
  vector base differs from the input base."""
  base = step_rules.GroupBase(input=3e-4, hidden=0.25, vector=2e-3)
  form = dataclasses.replace(SHIPPED, step=tuple(
      base if isinstance(r, step_rules.GroupBase) else r for r in SHIPPED.step))
  xla, fused = (dataclasses.replace(form, backend=b) for b in ("xla", "pallas"))
  theta = _theta(xla)
  params, grads_seq = _params_and_grads(steps=2)
  names = ["vector", "exact_bf16"]   # kinds "vector" and "input"
  params, grads_seq = {k: params[k] for k in names}, [{k: g[k] for k in names} for g in grads_seq]
  run = lambda lo: _unroll(lo, theta, params, grads_seq, None)[0]
  want, got = run(xla), run(fused)
  _check_updates(got, want)
  # The vector's step is the vector base's: x(2e-3 / 3e-4) against the input base.
  plain = dataclasses.replace(xla, step=tuple(
      dataclasses.replace(r, vector=None) if isinstance(r, step_rules.GroupBase) else r
      for r in form.step))
  ref = _unroll(plain, theta, params, grads_seq, None)[0]
  ratio = np.asarray(want["vector"][0]) / np.asarray(ref["vector"][0])
  np.testing.assert_allclose(ratio[np.abs(np.asarray(ref["vector"][0])) > 1e-12], 2e-3 / 3e-4,
                             rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(want["exact_bf16"]), np.asarray(ref["exact_bf16"]))


def test_vmapped_particles_equal_per_particle_updates():
  """θ±ε particles with their own params, states (counts too) and losses, as
  in meta-training, and one gradient shared by both (read through the
  kernels' particle-0 index map, never broadcast): the particle axis is the
  kernels' first grid axis, and each particle's update is the XLA one's."""
  xla = dataclasses.replace(SHIPPED, backend="xla")
  fused = dataclasses.replace(SHIPPED, backend="pallas")
  thetas = jax.tree_util.tree_map(lambda t: np.stack([t + 0.1, t - 0.1]), _theta(xla))
  shapes, kinds = {"w": (5, 6), "b": (6,)}, {"w": "hidden", "b": "vector"}
  rng = np.random.default_rng(4)
  params = _tree(rng, {k: (2, *s) for k, s in shapes.items()})
  grads = _tree(rng, shapes)
  one_state = jax.tree_util.tree_map(np.asarray, xla.init_state(_tree(rng, shapes)))
  states = jax.tree_util.tree_map(lambda x: np.stack([x, x + 0.02]), one_state)
  states = states._replace(count=np.asarray([0, 4], np.int32),
                           nonfinite=np.zeros((2,), np.int32))
  losses = np.asarray([1.0, 2.0], np.float32)
  update = lambda lo: lambda th, g, s, p, loss: lo.update(th, g, s, p, num_steps=10, mup=kinds,
                                                          loss=loss)
  batched = jax.vmap(update(fused), in_axes=(0, None, 0, 0, 0))
  args = (thetas, grads, states, params, losses)
  grids = pallas_grids(jax.make_jaxpr(batched)(*args).jaxpr)
  assert len(grids) == 4 and all(g[0] == 2 for g in grids), grids  # 2 passes x 2 tensors
  got = jax.jit(batched)(*args)
  one = jax.jit(update(xla))
  for i in range(2):
    pick = lambda tree: jax.tree_util.tree_map(lambda x: x[i], tree)
    want = one(pick(thetas), grads, pick(states), pick(params), losses[i])
    for name in shapes:
      assert _rms_relative(got[0][name][i], want[0][name]) <= RMS_RELATIVE, (name, i)
      np.testing.assert_allclose(np.asarray(got[1].tensors[name].v[i]),
                                 np.asarray(want[1].tensors[name].v), rtol=1e-6)
      np.testing.assert_allclose(np.asarray(got[1].tensors[name].mults[i]),
                                 np.asarray(want[1].tensors[name].mults), rtol=2e-6)


def test_gradient_wrt_theta_matches_xla():
  """jax.grad through the kernel path is the XLA reference's VJP (custom_vjp)."""
  rng = np.random.default_rng(6)
  params, grads = _tree(rng, {"w": (5, 6)}), _tree(rng, {"w": (5, 6)})

  def loss_after_update(lo, theta):
    u, _ = lo.update(theta, grads, lo.init_state(params), params, num_steps=10,
                     mup={"w": "hidden"})
    return jnp.sum(jnp.sin(params["w"] + 100.0 * u["w"]))

  theta = _theta(SHIPPED)
  grad = jax.jit(jax.grad(loss_after_update, argnums=1), static_argnums=0)
  want = grad(dataclasses.replace(SHIPPED, backend="xla"), theta)
  got = grad(dataclasses.replace(SHIPPED, backend="pallas"), theta)
  for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0],
                          jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4,
                               atol=1e-4 * float(np.abs(w).max() + 1e-30),
                               err_msg=jax.tree_util.keystr(path))
  assert float(jnp.abs(want["residual"]["w1"]).max()) > 0


def test_kernels_lower_to_triton_for_gpu(monkeypatch):
  """Without a GPU: lower the compiled (non-interpret) kernels for CUDA, which
  runs the Pallas -> Triton lowering (every op supported, every block a power
  of two), for masked and exact tiles, bf16, and vmapped particles."""
  monkeypatch.setattr(lopt.kernels, "interpret_mode", lambda: False)
  fused = dataclasses.replace(SHIPPED, backend="pallas")
  theta = _theta(fused)
  params, _ = _params_and_grads()
  state = fused.init_state(params)
  update = lambda th, g, s, p: fused.update(th, g, s, p, num_steps=10, mup=_kinds(p))
  lowered = jax.jit(update).trace(theta, params, state, params).lower(
      lowering_platforms=("cuda",))
  triton_calls = lowered.as_text().count("xla.gpu.triton")
  assert triton_calls == 2 * len(params), triton_calls
  thetas = jax.tree_util.tree_map(lambda x: np.stack([x, -x]), theta)
  some = lambda tree: {k: tree[k] for k in ("scalar", "dense")}
  jax.jit(jax.vmap(update, in_axes=(0, None, None, None))).trace(
      thetas, some(params), state._replace(tensors=some(state.tensors)), some(params)).lower(
          lowering_platforms=("cuda",))


def test_backend_selection_record_and_fallback():
  with pytest.raises(ValueError, match="backend must be one of"):
    AdaptiveLOpt(backend="triton")
  assert hash(AdaptiveLOpt(backend="pallas")) != hash(AdaptiveLOpt(backend="xla"))
  # "auto" stays out of the record (records written before the field load
  # strictly); another backend is recorded and round-trips.
  assert "backend" not in SHIPPED.to_record() and SHIPPED.backend == "auto"
  record = AdaptiveLOpt(backend="xla").to_record()
  assert record["backend"] == "xla"
  assert AdaptiveLOpt.from_record(record) == AdaptiveLOpt(backend="xla")
  lo, _ = lopt.load_pretrained("mulo-m")
  assert lo == SHIPPED and lo.to_record() == lopt.load_metadata("mulo-m")["config"]

  assert lopt.kernels.adaptive_supports(SHIPPED.step)
  assert lopt.kernels.adaptive_supports(lopt.adaptive.default_rules())
  # A rule the kernels do not run: the LO runs in XLA whatever the backend.
  normalized = (AdamDirection(), step_rules.RMSNormalize(), step_rules.GroupBase(1e-3, 0.1))
  assert not lopt.kernels.adaptive_supports(normalized)

  @dataclasses.dataclass(frozen=True)
  class OtherDirection(AdamDirection):
    pass
  assert not lopt.kernels.adaptive_supports((OtherDirection(),) + SHIPPED.step[1:])
  params = {"w": jnp.ones((4, 4))}
  count = lambda lo: len(pallas_grids(jax.make_jaxpr(
      lambda th, p: lo.update(th, p, lo.init_state(p), p, num_steps=5, mup={"w": "hidden"})
  )(_theta(lo), params).jaxpr))
  assert count(AdaptiveLOpt(step=normalized, backend="pallas")) == 0
  assert count(AdaptiveLOpt(backend="pallas")) == 2
  if jax.default_backend() != "gpu":
    assert count(AdaptiveLOpt()) == 0
