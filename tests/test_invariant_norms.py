"""keep_invariant_norms: the norm of a scale-invariant tensor is held while
training is what the wrapped optimizer gives (float64: to 1e-9), and on
tensors that are not scale-invariant it is the wrapped optimizer bit for bit."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt.invariant_norms import InvariantNormsState, keep_invariant_norms, kept_norm_ratios

STEPS = 80


def _x64():
  if hasattr(jax, "enable_x64"):
    return jax.enable_x64(True)
  from jax.experimental import enable_x64  # older jax
  return enable_x64()


def _data(dtype=jnp.float32):
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (128, 6), dtype)
  y = (x[:, 0] * x[:, 1] > 0).astype(jnp.int32)
  return x, y


def _params(dtype=jnp.float32, readout_zero=False):
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  w2 = jax.random.normal(k2, (16, 2), dtype) / 4
  return {"w1": jax.random.normal(k1, (6, 16), dtype) / np.sqrt(6),
          "w2": jnp.zeros_like(w2) if readout_zero else w2,
          "b2": jnp.zeros((2,), dtype)}


def _loss(params, x, y, normalize):
  h = x @ params["w1"]
  if normalize:  # batch standardization per unit: the loss cannot see w1's scale
    h = (h - h.mean(0)) / jnp.sqrt(h.var(0))  # (no eps: an eps makes it nearly so)
  logits = jax.nn.relu(h) @ params["w2"] + params["b2"]
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _train(tx, params, x, y, normalize, steps=STEPS):
  """(final params, final state, per-step losses, per-step updates of w1)."""
  def step(carry, _):
    p, s = carry
    loss, g = jax.value_and_grad(_loss)(p, x, y, normalize)
    u, s = tx.update(g, s, p, loss=loss)
    return (optax.apply_updates(p, u), s), (loss, u["w1"])
  (p, s), (losses, us) = jax.jit(
      lambda p0: jax.lax.scan(step, (p0, tx.init(p0)), None, steps))(params)
  return p, s, np.asarray(losses), np.asarray(us)


def _adamw():
  return optax.adamw(optax.cosine_decay_schedule(3e-2, STEPS), weight_decay=1.0)


def test_float64_training_is_unchanged_and_the_norm_is_kept():
  """With float64 the wrapped run's losses are the plain run's to 1e-9 while
  w1 (in front of the normalization) keeps its norm, and the kept log ratio
  is exactly the log of the plain run's norm over the kept one."""
  with _x64():
    x, y = _data(jnp.float64)
    p0 = _params(jnp.float64)
    plain, _, l_plain, _ = _train(_adamw(), p0, x, y, True)
    kept, state, l_kept, _ = _train(keep_invariant_norms(_adamw()), p0, x, y, True)
    np.testing.assert_allclose(l_kept, l_plain, rtol=1e-9)
    assert l_plain[-1] < 0.5 * l_plain[0]  # it trained
    n0, n_plain, n_kept = (float(jnp.linalg.norm(p["w1"])) for p in (p0, plain, kept))
    assert n_plain < 0.8 * n0  # the plain run shrinks the kernel ...
    np.testing.assert_allclose(n_kept, n0, rtol=1e-9)  # ... the wrapped one keeps it
    # Same direction; the readout, which is not scale-invariant, is untouched.
    np.testing.assert_allclose(kept["w1"] / n_kept, plain["w1"] / n_plain, atol=1e-9)
    np.testing.assert_allclose(kept["w2"], plain["w2"], rtol=1e-9, atol=1e-12)
    (ratios,) = kept_norm_ratios(state)
    np.testing.assert_allclose(float(ratios["w1"]), np.log(n_plain / n_kept), rtol=1e-9)
    assert float(ratios["w2"]) == 0.0 and float(ratios["b2"]) == 0.0


def test_pretrained_lo_trains_as_before_and_keeps_the_norm():
  """mulo-m (float32): the first 20 losses agree to float rounding, and the
  norm it would shrink ~10x over training is held to 1e-5."""
  x, y = _data()
  p0 = _params()
  spec = lopt.mup.kinds_from_paths(p0, {"w1": "input", "w2": "sp_output"})
  make = lambda keep: lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=spec,
                                            keep_invariant_norms=keep)
  plain, _, l_plain, _ = _train(make(False), p0, x, y, True)
  kept, state, l_kept, _ = _train(make(True), p0, x, y, True)
  np.testing.assert_allclose(l_kept[:20], l_plain[:20], rtol=1e-4)
  n0, n_plain, n_kept = (float(jnp.linalg.norm(p["w1"])) for p in (p0, plain, kept))
  assert n_plain < 0.5 * n0
  np.testing.assert_allclose(n_kept, n0, rtol=1e-5)
  assert isinstance(state, InvariantNormsState)
  # The LO's own state is inside and still counts its updates.
  assert lopt.check_num_steps(state, STEPS + 1) == STEPS


@pytest.mark.parametrize("readout_zero", [False, True])
def test_ordinary_tensors_get_the_inner_updates_bit_for_bit(readout_zero):
  """Without the normalization no tensor is scale-invariant: every update
  equals the unwrapped one exactly, including with a zero-initialized readout
  (whose first update has no evidence: all-zero tensor and gradients)."""
  x, y = _data()
  p0 = _params(readout_zero=readout_zero)
  spec = lopt.mup.kinds_from_paths(p0, {"w1": "input", "w2": "sp_output"})
  make = lambda: lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=spec)
  plain, _, l_plain, u_plain = _train(make(), p0, x, y, False)
  kept, state, l_kept, u_kept = _train(keep_invariant_norms(make()), p0, x, y, False)
  assert np.array_equal(l_plain, l_kept) and np.array_equal(u_plain, u_kept)
  assert all(np.array_equal(plain[k], kept[k]) for k in p0)
  (ratios,) = kept_norm_ratios(state)
  assert all(float(r) == 0.0 for r in jax.tree_util.tree_leaves(ratios))
  # Every matrix gathered evidence, and it reads "not invariant" (z ~ 1, not ~0).
  assert all(np.isfinite(float(state.log_z[k])) and float(state.log_z[k]) > np.log(0.01)
             for k in ("w1", "w2"))


def test_a_tensor_without_evidence_is_not_held():
  """An all-zero tensor (and an all-zero gradient) gives z = 0 from float
  arithmetic; that is no evidence, so the average stays 'none yet'."""
  tx = keep_invariant_norms(optax.sgd(0.1))
  params = {"w": jnp.zeros((3, 4))}
  state = tx.init(params)
  u, state = tx.update({"w": jnp.ones((3, 4))}, state, params)
  assert np.isinf(float(state.log_z["w"])) and float(state.log_ratio["w"]) == 0.0
  np.testing.assert_array_equal(u["w"], -0.1 * np.ones((3, 4), np.float32))


def test_bad_arguments_name_the_fix():
  with pytest.raises(ValueError, match="0 < z_lo < z_hi < 1"):
    keep_invariant_norms(optax.sgd(0.1), z_hi=1e-3, z_lo=1e-2)
  tx = keep_invariant_norms(optax.sgd(0.1))
  params = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="with params"):
    tx.update(params, tx.init(params))
  with pytest.raises(ValueError, match="keep_invariant_norms must be True, False or None"):
    lopt.pretrained_optax("mulo-m", num_steps=10, keep_invariant_norms="yes")


def test_nnx_optimizer_with_batchnorm():
  """In nnx.Optimizer (variables wrapped at init, raw at update) on a model
  with nnx.BatchNorm: the kernel in front of it keeps its norm, the model
  trains, and the LO's update count is found through the wrapper."""
  nnx = pytest.importorskip("flax.nnx")

  class Net(nnx.Module):
    def __init__(self, width, rngs):
      self.l1 = nnx.Linear(6, width, rngs=rngs)
      self.bn = nnx.BatchNorm(width, rngs=rngs)
      self.out = nnx.Linear(width, 2, rngs=rngs)

    def __call__(self, x):
      return self.out(jax.nn.relu(self.bn(self.l1(x))))

  x, y = _data()
  model, base = Net(32, nnx.Rngs(0)), Net(8, nnx.Rngs(0))
  kinds = lopt.mup.infer_kinds(nnx.state(model, nnx.Param), nnx.state(base, nnx.Param))
  from lopt.invariant_norms import batchnorm_layers
  assert batchnorm_layers(nnx.state(model, nnx.Param)) == ["bn"]  # what the warning reads
  tx = lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds, keep_invariant_norms=True)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads, loss=loss)
    return loss

  n0 = float(jnp.linalg.norm(model.l1.kernel[...]))
  losses = [float(step(model, opt)) for _ in range(STEPS)]
  assert losses[-1] < 0.5 * losses[0], losses
  np.testing.assert_allclose(float(jnp.linalg.norm(model.l1.kernel[...])), n0, rtol=1e-5)
  assert lopt.check_num_steps(opt, STEPS + 1) == STEPS
  (ratios,) = kept_norm_ratios(opt)
  assert float(nnx.to_pure_dict(ratios)["l1"]["kernel"]) < -0.1  # it was held


def test_batchnorm_running_variance_stops_lagging():
  """The user-facing claim on a linen BatchNorm CNN (flax's momentum 0.99,
  running statistics started at the population's): under mulo-m the running
  variance of the conv's output ends 3.3x its population variance (measured),
  with the flag 1.2x, while training is the same (final loss within 1%)."""
  nn = pytest.importorskip("flax.linen")
  from sklearn.datasets import load_digits

  class CNN(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, train):
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Conv(self.width, (3, 3))(x)))
      return nn.Dense(10)(x.mean(axis=(1, 2)))

  digits = load_digits()
  x = jnp.asarray(digits.images[:512, :, :, None] / 16.0, jnp.float32)
  y = jnp.asarray(digits.target[:512])
  steps = 200
  conv_out = lambda params: nn.Conv(16, (3, 3)).apply({"params": params["Conv_0"]}, x).reshape(
      -1, 16)

  def run(keep):
    params = CNN(16).init(jax.random.PRNGKey(0), x[:2], train=False)["params"]
    base = CNN(4).init(jax.random.PRNGKey(0), x[:2], train=False)["params"]
    h0 = conv_out(params)
    stats = {"BatchNorm_0": {"mean": h0.mean(0), "var": h0.var(0)}}
    tx = lopt.pretrained_optax("mulo-m", num_steps=steps, keep_invariant_norms=keep,
                               mup=lopt.mup.infer_kinds(params, base))

    def step(carry, t):
      p, bs, s = carry
      idx = jax.random.choice(jax.random.PRNGKey(t), 512, (64,), replace=False)

      def f(p):
        out, new = CNN(16).apply({"params": p, "batch_stats": bs}, x[idx], train=True,
                                 mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(out, y[idx]).mean(), new
      (loss, new), g = jax.value_and_grad(f, has_aux=True)(p)
      u, s = tx.update(g, s, p, loss=loss)
      return (optax.apply_updates(p, u), new["batch_stats"], s), loss
    (p, bs, _), losses = jax.jit(lambda: jax.lax.scan(
        step, (params, stats, tx.init(params)), jnp.arange(steps)))()
    lag = float(jnp.mean(bs["BatchNorm_0"]["var"] / conv_out(p).var(0)))
    return lag, np.asarray(losses)

  lag_plain, losses_plain = run(False)
  lag_kept, losses_kept = run(True)
  assert lag_plain > 2.5 and lag_kept < 1.4, (lag_plain, lag_kept)
  np.testing.assert_allclose(losses_kept[:20], losses_plain[:20], rtol=1e-4)
  np.testing.assert_allclose(losses_kept[-20:].mean(), losses_plain[-20:].mean(), rtol=0.05)


def test_batchnorm_layers_are_found_by_their_names():
  """linen's BatchNorm_N and the usual attribute names; LayerNorm, GroupNorm
  and names that merely contain "bn" are not BatchNorm."""
  nn = pytest.importorskip("flax.linen")
  from lopt.invariant_norms import batchnorm_layers

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x))
      x = nn.LayerNorm()(nn.Dense(8)(x))
      return nn.BatchNorm(use_running_average=not train)(nn.Dense(2)(x))

  params = Net().init(jax.random.PRNGKey(0), jnp.ones((2, 3)))["params"]
  assert batchnorm_layers(params) == ["BatchNorm_0", "BatchNorm_1"]
  w = jnp.ones((2, 2))
  named = {"bn": {"scale": w}, "bn1": {"scale": w}, "conv1_bn": {"bias": w},
           "batch_norm": {"scale": w}, "abnormal": {"kernel": w}, "bnorm_like": {"kernel": w},
           "GroupNorm_0": {"scale": w}, "dense_bn2x": {"kernel": w}}
  assert batchnorm_layers(named) == ["batch_norm", "bn", "bn1", "conv1_bn"]
  assert batchnorm_layers(_params()) == []


def test_pretrained_lo_warns_on_batchnorm_unless_told():
  """Left at None, keep_invariant_norms is off (the updates are the plain
  LO's bit for bit) and init warns once on params with BatchNorm layers;
  False is off and silent; params without BatchNorm get no warning."""
  import warnings
  x, y = _data()
  p0 = _params()
  spec = lopt.mup.kinds_from_paths(p0, {"w1": "input", "w2": "sp_output"})
  make = lambda keep: lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=spec,
                                            keep_invariant_norms=keep)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # any warning fails the test
    _, _, l_off, u_off = _train(make(False), p0, x, y, True)
    _, _, l_none, u_none = _train(make(None), p0, x, y, True)  # no BatchNorm names: silent
  assert np.array_equal(l_off, l_none) and np.array_equal(u_off, u_none)

  with_bn = {"Dense_0": {"kernel": p0["w1"]}, "BatchNorm_0": {"scale": jnp.ones(16)}}
  kinds = lopt.mup.kinds_from_paths(with_bn, {"Dense_0": "input", "BatchNorm_0": "input"})
  tx = lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds)
  with pytest.warns(UserWarning, match=r"BatchNorm layers \(BatchNorm_0\).*"
                                       r"keep_invariant_norms=True"):
    tx.init(with_bn)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds,
                          keep_invariant_norms=False).init(with_bn)
