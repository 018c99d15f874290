"""VeLO-style learned optimizer: a per-tensor LSTM hypernetwork over a bank of MLPs.

Every step, for each parameter tensor:

1. The accumulators of ``lopt.features`` (momenta, second moment, factored
   second moments; float32) are updated with the gradient.
2. A per-tensor LSTM reads ``NUM_LSTM_FEATURES`` statistics (``LSTM_FEATURES``):
   log-clipped means/variances of the momenta and of the second moment, a
   one-hot of the tensor's rank, fraction-of-training features and loss-trend
   features from EMAs of the loss. Tensors share information through a
   max-pooled mixing layer (embed each tensor, max over tensors, add the pooled
   vector to every tensor's LSTM input).
3. From its hidden state the LSTM emits mixing weights over a bank of
   ``num_mlps`` per-parameter MLPs (softmax) and a learning-rate multiplier
   (exp of a linear head).
4. The mixed MLP (``mlp_layers`` ReLU layers of width ``mlp_hidden``) reads the
   28 normalized per-element features of ``lopt.features.tensor_features``, two
   more (``EXTRA_ELEMENT_FEATURES``) and the 12 time features, and outputs a
   direction ``d`` and a magnitude ``m``:

       step = lr_mult * d * exp(exp_mult * m) * step_mult * scale
       update = -step

   ``scale`` is RMS(p) in SP mode (VeLO), and the μP multiplier (``1/fan_in``
   for hidden matrices, 1 otherwise) in μP mode (μVeLO), which drops RMS(p).

The LSTM statistics are invariant to rescaling the gradients and do not depend
on the parameter values, so a tensor tiled to a larger width gets exactly the
same controls (what makes the μP rule testable), and in SP mode doubling p
doubles the step. This normalization differs from the reference HyperV2, which
divides the statistics by RMS(p); see ``lopt.velo_import``.

The loss is required: ``tx.update(grads, state, params, loss=loss)``.

    lo = VeLOpt(mup=True)
    theta = lo.init(jax.random.PRNGKey(0))
    tx = lo.as_optax(theta, num_steps=1000, mup=kinds)
    # functionally (what meta-training uses), same shape as MLPLOpt.update plus loss:
    updates, state = lo.update(theta, grads, state, params, num_steps=1000, mup=kinds, loss=loss)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt import features as F
from lopt.common import (check_num_steps, check_param_dtypes, check_record_fields, check_theta_tree,
                         config_record, optax_from_lo, per_element_mlp, sanitize_grad,
                         step_multipliers)

# Per-tensor LSTM inputs, in order: (name, width). The first block is computed
# per tensor, the last two are shared by all tensors.
TENSOR_STATS = (("mean_abs_mom", 3), ("var_mom", 3), ("mean_rms", 1), ("var_rms", 1),
                ("rank", 5))
GLOBAL_FEATURES = (("frac_tanh", 9), ("loss_trend", 9))
LSTM_FEATURES = TENSOR_STATS + GLOBAL_FEATURES
NUM_TENSOR_STATS = sum(n for _, n in TENSOR_STATS)        # 13
NUM_LSTM_FEATURES = sum(n for _, n in LSTM_FEATURES)      # 31

# Per-element MLP inputs: the 28 features of lopt.features, then two more that
# the reference VeLO reads (a clipped gradient and g / sqrt(v)).
EXTRA_ELEMENT_FEATURES = ("g_clip", "g_rsqrt_rms")
PARAM_FEATURES = F.ELEMENT_FEATURES + EXTRA_ELEMENT_FEATURES
NUM_PARAM_FEATURES = len(PARAM_FEATURES)                  # 30
GRAD_CLIP = 0.1

# tanh(10 (t/T - c)): soft indicators of having passed each fraction c of training.
FRACTION_CENTERS = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
# Loss EMAs with half-lives 10 .. 10^4 steps: fixed, so they need no num_steps.
LOSS_HALFLIVES = tuple(float(x) for x in np.logspace(1, 4, 10))
LOSS_DECAYS = tuple(float(np.exp(-1.0 / h)) for h in LOSS_HALFLIVES)
# Keeps RMS(p) of an all-zero tensor finite (same constant as the reference).
PARAM_SCALE_EPS = 1e-9
TINY = 1e-30


class LossStats(NamedTuple):
  """Float32 loss EMAs at ``len(LOSS_DECAYS)`` timescales and their running minima."""
  ema: jax.Array          # [10], not bias-corrected
  running_min: jax.Array  # [10], of the bias-corrected EMAs


class VeLOptState(NamedTuple):
  count: jax.Array   # int32 scalar: number of updates applied so far
  acc: Any           # pytree like params, leaves are features.TensorAcc
  lstm_h: jax.Array  # [num_tensors, lstm_hidden] float32 (θ's initial state is used at count 0)
  lstm_c: jax.Array  # [num_tensors, lstm_hidden] float32
  loss: LossStats
  # int32 scalar: gradient elements that were non-finite and zeroed, over all
  # updates (one NaN would otherwise reach every tensor through the LSTM).
  nonfinite: jax.Array = jnp.zeros((), jnp.int32)


class Controls(NamedTuple):
  """What the LSTM decides for each tensor at one step (rows follow the flattened params)."""
  lstm_inputs: jax.Array  # [T, NUM_LSTM_FEATURES]
  mix_weights: jax.Array  # [T, num_mlps]: softmax (sums to 1), or the reference's linear weights
  lr_mult: jax.Array      # [T]
  lstm_h: jax.Array       # [T, H] new hidden state
  lstm_c: jax.Array       # [T, H] new cell state


# ---------------------------------------------------------------- loss features
def init_loss_stats() -> LossStats:
  n = len(LOSS_DECAYS)
  return LossStats(jnp.zeros((n,), jnp.float32), jnp.full((n,), 1e30, jnp.float32))


def update_loss_stats(stats: LossStats, loss: jax.Array, count: jax.Array) -> LossStats:
  """Add the loss of step ``count`` (>= 1). Spikes are capped at twice the largest
  current mean and a non-finite loss counts as the cap, so one bad batch
  cannot wreck the trend features."""
  decays = jnp.asarray(LOSS_DECAYS, jnp.float32)
  t = jnp.asarray(count, jnp.float32)
  first = t <= 1
  prev = stats.ema / (1.0 - decays ** jnp.maximum(t - 1.0, 1.0))
  cap = 2.0 * jnp.abs(jnp.max(prev))
  loss = jnp.asarray(loss, jnp.float32)
  loss = jnp.where(jnp.isfinite(loss), loss, cap)
  loss = jnp.where(first, loss, jnp.minimum(loss, cap))
  ema = decays * stats.ema + (1.0 - decays) * loss
  corrected = ema / (1.0 - decays ** t)
  return LossStats(ema, jnp.minimum(stats.running_min, corrected))


def loss_features(stats: LossStats, count: jax.Array) -> jax.Array:
  """``[9]`` trend features in [-1, 1]: each EMA against the next slower one,
  relative to its running minimum. Negative while the loss falls; invariant to
  the loss's scale and offset. Zero for the first two steps (too few losses)."""
  decays = jnp.asarray(LOSS_DECAYS, jnp.float32)
  t = jnp.asarray(count, jnp.float32)
  corrected = stats.ema / (1.0 - decays ** jnp.maximum(t, 1.0))
  fast, slow, low = corrected[:-1], corrected[1:], stats.running_min[:-1]
  trend = jnp.clip((fast - low) / jnp.maximum(1e-8, slow - low) - 1.0, -1.0, 1.0)
  return jnp.where(t <= 2, jnp.zeros_like(trend), trend)


def fraction_features(count: jax.Array, num_steps: int | None) -> jax.Array:
  """``[9]``: tanh(10 (t/num_steps - c)) for each center c; zeros if num_steps is unknown."""
  if num_steps is None:
    return jnp.zeros((len(FRACTION_CENTERS),), jnp.float32)
  frac = jnp.asarray(count, jnp.float32) / num_steps
  return jnp.tanh(10.0 * (frac - jnp.asarray(FRACTION_CENTERS, jnp.float32)))


# ---------------------------------------------------------------- per-tensor statistics
def _log_clip(x: jax.Array) -> jax.Array:
  """Log of a non-negative statistic, clipped to [-5, 5] (as the reference does)."""
  return 0.5 * jnp.clip(jnp.log(jnp.maximum(x, 1e-8)), -10.0, 10.0)


def rank_one_hot(shape: tuple[int, ...]) -> jax.Array:
  """One-hot (5) of the number of axes longer than 1, capped at 4 (a (1, n) tensor is rank 1)."""
  rank = min(int(np.sum(np.asarray(shape, np.int64) > 1)), 4)
  return jax.nn.one_hot(rank, 5, dtype=jnp.float32)


def tensor_stats(g: jax.Array, acc: F.TensorAcc, decays: F.Decays,
                 count: jax.Array) -> jax.Array:
  """``[NUM_TENSOR_STATS]`` statistics of one tensor, in ``TENSOR_STATS`` order.

  The momenta and second moment are bias-corrected and divided by the
  tensor's gradient RMS sqrt(mean(v)), so the statistics ignore the gradient
  scale; they are means over elements, so tiling a tensor leaves them unchanged.
  """
  t = jnp.asarray(count, jnp.float32)
  mom = acc.mom / jnp.reshape(1.0 - decays.mom ** t, (3,) + (1,) * g.ndim)
  v = acc.rms / (1.0 - decays.rms ** t)
  mean_v = jnp.mean(v)
  inv_scale = jax.lax.rsqrt(mean_v + TINY)
  m_hat = mom * inv_scale
  elem_axes = tuple(range(1, m_hat.ndim))
  mean_m = jnp.mean(m_hat, axis=elem_axes, keepdims=True)
  var_m = jnp.mean(jnp.square(m_hat - mean_m), axis=elem_axes)
  mean_abs_m = jnp.mean(jnp.abs(m_hat), axis=elem_axes)
  v_hat = v * jnp.square(inv_scale)
  var_v = jnp.mean(jnp.square(v_hat - jnp.mean(v_hat)))
  # Running second moment against the current gradient's: > 0 after a drop in
  # gradient size, < 0 on a spike.
  mean_rms = mean_v / (jnp.mean(jnp.square(g)) + TINY)
  return jnp.concatenate([
      _log_clip(mean_abs_m), _log_clip(var_m), _log_clip(mean_rms)[None],
      _log_clip(var_v)[None], rank_one_hot(g.shape)])


def element_features(g: jax.Array, p: jax.Array, acc: F.TensorAcc) -> list[jax.Array]:
  """The ``NUM_PARAM_FEATURES`` normalized per-element features, in
  ``PARAM_FEATURES`` order, each broadcast to ``g.shape``: the 28 of
  ``F.feature_list`` (unstacked, so the MLP fuses into one elementwise pass)
  and VeLO's two gradient features."""
  extra = [jnp.clip(g, -GRAD_CLIP, GRAD_CLIP), g * jax.lax.rsqrt(acc.rms + F.EPS)]
  return F.feature_list(g, p, acc) + [F.normalize(x, g.shape) for x in extra]


def lstm_cell(params: dict, x: jax.Array, h: jax.Array, c: jax.Array):
  """One LSTM step on a batch of tensors. Gate layout (i, g, f, o) over
  ``[x, h] @ w + b`` with +1 forget bias, as haiku's LSTM (so reference
  weights load as they are)."""
  z = jnp.concatenate([x, h], axis=-1) @ params["w"] + params["b"]
  i, g, f, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


# ---------------------------------------------------------------- the optimizer
@dataclasses.dataclass(frozen=True)
class VeLOpt:
  """Config of the VeLO-style LO (hashable: usable as a jit static).

  ``mup=False`` is VeLO (steps scaled by RMS(p)); ``mup=True`` is μVeLO.
  ``reference_heads=True`` switches the two LSTM heads to the reference
  HyperV2's forms (linear mixing ``100/num_mlps * logits`` and a linear
  learning-rate multiplier), for weights loaded with ``lopt.velo_import``.
  """
  mup: bool = False
  lstm_hidden: int = 64
  num_mlps: int = 16
  mlp_hidden: int = 4
  mlp_layers: int = 2
  step_mult: float = 0.001
  exp_mult: float = 0.001
  reference_heads: bool = False

  def __post_init__(self):
    for name in ("lstm_hidden", "num_mlps", "mlp_hidden", "mlp_layers"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if not (isinstance(self.step_mult, (int, float)) and 0 < self.step_mult < float("inf")):
      raise ValueError(f"step_mult must be a positive finite float, got {self.step_mult!r}.")

  # ---------------------------------------------------------------- θ
  def init(self, key: jax.Array) -> dict:
    """Random θ: LeCun-normal layers, zero biases, zero initial LSTM state, default decays."""
    return _init_theta(self, key)  # one compiled program, not one per random draw

  def _init(self, key: jax.Array) -> dict:
    h, n, k, last = self.lstm_hidden, self.num_mlps, self.mlp_hidden, self.mlp_layers
    f, fan_first = NUM_LSTM_FEATURES, NUM_PARAM_FEATURES + F.NUM_TIME_FEATURES
    # (path, shape, fan_in, scale) of every random tensor. They are cut from a
    # single normal draw: each draw is a separate, slow-to-compile threefry.
    dense = [(("mix", "w"), (f, h), f, 1.0), (("lstm_in", "w"), (f, h), f, 1.0),
             (("lstm", "w"), (2 * h, 4 * h), 2 * h, 1.0), (("to_mix", "w"), (h, n), h, 1.0),
             (("to_lr", "w"), (h, 1), h, 0.1)]  # lr_mult ≈ 1 at init
    bank = [("w0", (NUM_PARAM_FEATURES, k), fan_first),
            ("w0_time", (F.NUM_TIME_FEATURES, k), fan_first)]
    bank += [(f"w{i}", (k, k), k) for i in range(1, last)]
    bank += [(f"w{last}", (k, 2), k)]  # output layer: (direction, magnitude)
    shapes = [s for _, s, _, _ in dense] + [(m,) + s for _, s, _ in bank for m in (1, n)]
    noise = jax.random.normal(key, (sum(math.prod(s) for s in shapes),), jnp.float32)
    offsets = itertools.accumulate([0] + [math.prod(s) for s in shapes])
    pieces = iter(noise[a:a + math.prod(s)].reshape(s) for a, s in zip(offsets, shapes))
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)

    theta = {"lstm_init": {"h": zeros(h), "c": zeros(h)},
             "decay_logits": {"mom": zeros(3), "rms": zeros(), "fac": zeros(3)}}
    for (group, name), shape, fan_in, scale in dense:
      theta[group] = {name: scale * next(pieces) / np.sqrt(fan_in), "b": zeros(shape[1])}
    theta["bank"] = {}
    for name, shape, fan_in in bank:
      # Members share a component (correlation 1/2), so the uniform mixture at
      # init keeps the LeCun scale instead of shrinking by 1/sqrt(num_mlps).
      shared, own = next(pieces), next(pieces)
      theta["bank"][name] = (shared + own) / np.sqrt(2.0 * fan_in)
      if name != "w0_time":  # the time weights share b0
        theta["bank"]["b" + name[1:]] = zeros(n, shape[1])
    return theta

  def to_record(self) -> dict[str, Any]:
    """The JSON config record (metadata.json ``config``, ``MetaTrainConfig.lo``)."""
    return config_record(self)

  @classmethod
  def from_record(cls, record: dict[str, Any]) -> "VeLOpt":
    check_record_fields(cls, record)
    return cls(**record)

  def check_theta(self, theta: Any) -> None:
    """Raise a clear error if θ was made for a different architecture."""
    check_theta_tree(jax.eval_shape(self._init, jax.random.PRNGKey(0)), theta, self)

  # ---------------------------------------------------------------- state
  def init_state(self, params: Any) -> VeLOptState:
    check_param_dtypes(params)
    acc = jax.tree_util.tree_map(lambda p: F.init_acc(tuple(np.shape(p))), params)
    shape = (len(jax.tree_util.tree_leaves(params)), self.lstm_hidden)
    # Separate buffers, so the state can be donated to a jitted update.
    return VeLOptState(count=jnp.zeros((), jnp.int32), acc=acc,
                       lstm_h=jnp.zeros(shape, jnp.float32),
                       lstm_c=jnp.zeros(shape, jnp.float32), loss=init_loss_stats(),
                       nonfinite=jnp.zeros((), jnp.int32))

  # ---------------------------------------------------------------- hypernetwork
  def hypernet(self, theta: dict, lstm_inputs: jax.Array, h: jax.Array,
               c: jax.Array) -> Controls:
    """Mixing layer, one LSTM step and the two heads, for all tensors at once."""
    embed = jax.nn.relu(lstm_inputs @ theta["mix"]["w"] + theta["mix"]["b"])
    pooled = jnp.max(embed, axis=0, keepdims=True)  # what every tensor learns about the others
    x = lstm_inputs @ theta["lstm_in"]["w"] + theta["lstm_in"]["b"] + pooled
    h, c = lstm_cell(theta["lstm"], x, h, c)
    logits = h @ theta["to_mix"]["w"] + theta["to_mix"]["b"]
    lr_raw = (h @ theta["to_lr"]["w"] + theta["to_lr"]["b"])[:, 0]
    if self.reference_heads:
      mix, lr_mult = logits * (100.0 / self.num_mlps), lr_raw
    else:
      mix, lr_mult = jax.nn.softmax(logits, axis=-1), jnp.exp(lr_raw)
    return Controls(lstm_inputs, mix, lr_mult, h, c)

  def _mlp_step(self, mlp: dict, feats: list[jax.Array], tfeats: jax.Array) -> jax.Array:
    """Unscaled step ``d * exp(exp_mult * m) * step_mult`` of one tensor.
    Time features are the same for every element, so they fold into the bias."""
    layers = ((mlp["w0"], tfeats @ mlp["w0_time"] + mlp["b0"]),) + tuple(
        (mlp[f"w{i}"], mlp[f"b{i}"]) for i in range(1, self.mlp_layers + 1))
    direction, magnitude = per_element_mlp(feats, layers)
    return direction * jnp.exp(self.exp_mult * magnitude) * self.step_mult

  # ---------------------------------------------------------------- update
  def _prepare(self, theta, grads, state, params, num_steps, loss):
    """Accumulators, loss statistics and the LSTM's controls for this step."""
    if params is None:
      raise ValueError("The learned optimizer reads parameter values: call "
                       "update(grads, state, params, loss=loss) with params.")
    if loss is None:
      raise ValueError(
          "VeLOpt reads the training loss at every step (its LSTM uses loss-trend "
          "features): pass it as loss=, e.g. `updates, state = tx.update(grads, state, "
          "params, loss=loss)`, or functionally `lo.update(theta, grads, state, params, "
          "loss=loss)`.")
    if jnp.ndim(loss) != 0:
      raise ValueError(f"loss= must be a scalar, got shape {jnp.shape(loss)}.")
    check_num_steps(num_steps)
    decays = F.decays_from_logits(F.Decays(**theta["decay_logits"]))
    count = state.count + 1
    loss_stats = update_loss_stats(state.loss, loss, count)

    is_acc = lambda x: isinstance(x, F.TensorAcc)
    flat_g, treedef = jax.tree_util.tree_flatten(grads)
    flat_p = treedef.flatten_up_to(params)
    flat_acc = jax.tree_util.tree_leaves(state.acc, is_leaf=is_acc)
    sanitized = [sanitize_grad(g) for g in flat_g]
    flat_g = [g for g, _ in sanitized]
    nonfinite = state.nonfinite + sum((n for _, n in sanitized), jnp.zeros((), jnp.int32))
    flat_acc = [F.update_accumulators(a, g, decays) for a, g in zip(flat_acc, flat_g)]

    shared = jnp.concatenate([fraction_features(count, num_steps),
                              loss_features(loss_stats, count)])
    stats = jnp.stack([tensor_stats(g, a, decays, count) for g, a in zip(flat_g, flat_acc)])
    lstm_inputs = jnp.concatenate(
        [stats, jnp.broadcast_to(shared, (stats.shape[0], shared.shape[0]))], axis=-1)
    first = state.count == 0  # θ owns the initial LSTM state; init_state has no θ
    h = jnp.where(first, theta["lstm_init"]["h"], state.lstm_h)
    c = jnp.where(first, theta["lstm_init"]["c"], state.lstm_c)
    controls = self.hypernet(theta, lstm_inputs, h, c)
    return treedef, flat_g, flat_p, flat_acc, count, loss_stats, nonfinite, controls

  def controls(self, theta: dict, grads: Any, state: VeLOptState, params: Any, *,
               num_steps: int | None = None, loss: Any = None) -> Controls:
    """The per-tensor controls ``update`` would use (for inspection and tests)."""
    if not jax.tree_util.tree_leaves(grads):
      raise ValueError("VeLOpt.controls needs at least one parameter tensor.")
    return self._prepare(theta, grads, state, params, num_steps, loss)[-1]

  def update(self, theta: dict, grads: Any, state: VeLOptState, params: Any, *,
             num_steps: int | None = None, mup: Any = None,
             loss: Any = None) -> tuple[Any, VeLOptState]:
    """Functional update: returns (updates, new_state); updates are added to params."""
    if not jax.tree_util.tree_leaves(grads):  # nothing to optimize
      return grads, state._replace(count=state.count + 1)
    treedef, flat_g, flat_p, flat_acc, count, loss_stats, nonfinite, ctrl = self._prepare(
        theta, grads, state, params, num_steps, loss)
    # SP mode: 1, and RMS(p) scales instead.
    flat_mult = treedef.flatten_up_to(step_multipliers(self, mup, params))
    # Each tensor's MLP weights: its mixture of the bank.
    mixed = jax.tree_util.tree_map(
        lambda w: jnp.einsum("tn,n...->t...", ctrl.mix_weights, w), theta["bank"])
    tfeats = F.time_features(count, num_steps)

    updates = []
    for i, (g, p, acc, mult) in enumerate(zip(flat_g, flat_p, flat_acc, flat_mult)):
      p32 = jnp.asarray(p, jnp.float32)
      mlp = jax.tree_util.tree_map(lambda w: w[i], mixed)
      step = self._mlp_step(mlp, element_features(g, p32, acc), tfeats)
      scale = mult if self.mup else jnp.sqrt(jnp.mean(jnp.square(p32)) + PARAM_SCALE_EPS)
      updates.append((-(ctrl.lr_mult[i] * scale) * step).astype(jnp.result_type(p)))
    new_state = VeLOptState(count=count, acc=jax.tree_util.tree_unflatten(treedef, flat_acc),
                            lstm_h=ctrl.lstm_h, lstm_c=ctrl.lstm_c, loss=loss_stats,
                            nonfinite=nonfinite)
    return jax.tree_util.tree_unflatten(treedef, updates), new_state

  # ---------------------------------------------------------------- optax
  def as_optax(self, theta: dict, num_steps: int | None = None,
               mup: Any = None) -> optax.GradientTransformationExtraArgs:
    """The LO at fixed θ as an optax transformation; its update needs ``loss=``.

    ``num_steps`` (the planned number of updates) feeds the fraction-of-training
    features; left out, they read 0 (training length unknown). Past it,
    t/num_steps exceeds 1 (values meta-training never showed the LO); no
    schedule scales the step to 0, so training does not stop.

    flax NNX: params and gradients may be ``nnx.State``s of ``nnx.Param``
    variables or of raw arrays (``nnx.Optimizer`` passes both, and forwards
    ``loss=`` from ``opt.update(model, grads, loss=loss)``); updates come back
    in the structure of the gradients.
    """
    return optax_from_lo(self, theta, num_steps, mup, needs=[])


@functools.partial(jax.jit, static_argnums=0)
def _init_theta(config: VeLOpt, key: jax.Array) -> dict:
  return config._init(key)
