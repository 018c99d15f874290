"""Per-tensor accumulators and per-parameter input features of the Adafactor-MLP LO.

The pipeline is split so that a fused kernel or another LO can reuse each piece:

1. ``update_accumulators``: momenta, second moment and factored (row/column)
   second moments, in float32, with (possibly meta-learned) decays.
   ``update_factors`` is its row/column part alone (it needs a reduction over
   the whole tensor, so a fused kernel runs it first).
2. ``elementwise_features``: the 28 per-element features, computed from
   broadcastable inputs only. A kernel can call it on a block.
3. ``normalize``: each feature divided by the RMS of that feature over the
   whole tensor (``x * rsqrt(1e-5 + mean(x**2))``).
4. ``time_features``: 11 ``tanh(t/τ - 1)`` values plus fraction of training.
   They are the same for every element of a tensor, so the MLP folds them
   into its first-layer bias instead of broadcasting them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

MOM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAY = 0.999
FAC_DECAYS = (0.9, 0.99, 0.999)
TIME_SCALES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4, 3e4, 1e5)

# Order of the per-element features; tests and kernels index by these names.
ELEMENT_FEATURES = (
    "g", "p",
    "mom0", "mom1", "mom2",
    "rms", "rsqrt_rms",
    "mom_rsqrt0", "mom_rsqrt1", "mom_rsqrt2",
    "fac_g0", "fac_g1", "fac_g2",
    "row0", "row1", "row2",
    "col0", "col1", "col2",
    "rsqrt_row0", "rsqrt_row1", "rsqrt_row2",
    "rsqrt_col0", "rsqrt_col1", "rsqrt_col2",
    "fac_mom0", "fac_mom1", "fac_mom2",
)
NUM_ELEMENT_FEATURES = len(ELEMENT_FEATURES)  # 28
# Ratios of a gradient statistic to the root of a second moment: already
# scale-free, and their absolute size is the signal-to-noise that lets Adam
# anneal. ``raw_ratios=True`` keeps them un-normalized (``MLPLOpt(features=Features(adam=True))``).
RATIO_FEATURES = tuple(i for i, name in enumerate(ELEMENT_FEATURES)
                       if name.startswith(("mom_rsqrt", "fac_g", "fac_mom")))
# Features that read only the row/column accumulators: their per-tensor
# statistics can be taken over those (small) arrays instead of the tensor.
FACTOR_ONLY_FEATURES = tuple(i for i, name in enumerate(ELEMENT_FEATURES)
                             if name.startswith(("row", "col", "rsqrt_row", "rsqrt_col")))
ROW_FEATURES = tuple(i for i in FACTOR_ONLY_FEATURES if "row" in ELEMENT_FEATURES[i])
COL_FEATURES = tuple(i for i in FACTOR_ONLY_FEATURES if "col" in ELEMENT_FEATURES[i])
PER_ELEMENT_FEATURES = tuple(i for i in range(NUM_ELEMENT_FEATURES)
                             if i not in FACTOR_ONLY_FEATURES)
NUM_TIME_FEATURES = len(TIME_SCALES) + 1      # 11 tanh features + fraction of training
NUM_FEATURES = NUM_ELEMENT_FEATURES + NUM_TIME_FEATURES  # 40 = the reference 39 + fraction

EPS = 1e-8        # inside rsqrt of second moments
NORM_EPS = 1e-5   # inside the per-tensor feature normalization


class TensorAcc(NamedTuple):
  """Float32 accumulators of one parameter tensor."""
  mom: jax.Array  # [3, *shape]
  rms: jax.Array  # [*shape]
  row: jax.Array  # [3, *shape without col_axis]; full [3, *shape] if rank < 2
  col: jax.Array  # [3, *shape without row_axis]; full [3, *shape] if rank < 2


def factor_axes(shape: tuple[int, ...]) -> tuple[int, int] | None:
  """The two largest axes (row_axis < col_axis) used for factoring, or None.

  Ties go to the later axis, so a Dense kernel ``(in, out)`` factors as rows=in,
  cols=out, and a conv kernel ``(h, w, in, out)`` over (in, out).
  """
  if len(shape) < 2:
    return None
  order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
  return tuple(sorted(order[-2:]))  # type: ignore[return-value]


def init_acc(shape: tuple[int, ...]) -> TensorAcc:
  row_axis, col_axis = factor_axes(shape) or (None, None)  # rank < 2: full row and col
  stack = lambda drop: jnp.zeros((3, *(d for i, d in enumerate(shape) if i != drop)), jnp.float32)
  return TensorAcc(stack(None), jnp.zeros(shape, jnp.float32), stack(col_axis), stack(row_axis))


class Decays(NamedTuple):
  """Decay rates as float32 arrays (meta-learnable through θ)."""
  mom: jax.Array  # [3]
  rms: jax.Array  # []
  fac: jax.Array  # [3]


def default_decays() -> Decays:
  return Decays(jnp.asarray(MOM_DECAYS, jnp.float32), jnp.asarray(RMS_DECAY, jnp.float32),
                jnp.asarray(FAC_DECAYS, jnp.float32))


def decays_from_logits(logits: Decays) -> Decays:
  """β = 1 - exp(log(1 - β0) + θ_β): θ_β = 0 gives the defaults, β stays in (0, 1)."""
  base = default_decays()
  f = lambda b0, th: 1.0 - jnp.exp(jnp.log1p(-b0) + th)
  return Decays(*(f(b0, th) for b0, th in zip(base, logits)))


def _ema(acc: jax.Array, new: jax.Array, beta: jax.Array) -> jax.Array:
  beta = jnp.reshape(beta, beta.shape + (1,) * (acc.ndim - beta.ndim))
  return beta * acc + (1.0 - beta) * new


def update_factors(row: jax.Array, col: jax.Array, g: jax.Array,
                   decays: Decays) -> tuple[jax.Array, jax.Array]:
  """One EMA step of the row/column accumulators only (they need a reduction
  over the whole tensor, so a fused kernel runs this before its main pass).

  Adafactor's factored estimate: they average g² over the other factor axis (+ a
  tiny floor so an all-zero row does not make the reconstruction 0/0). Tensors
  of rank < 2 keep full accumulators, which average g² itself.
  """
  g2, axes = jnp.square(g), factor_axes(g.shape)
  row_new, col_new = (g2, g2) if axes is None else (
      jnp.mean(g2, axis=axes[1]) + 1e-30, jnp.mean(g2, axis=axes[0]) + 1e-30)
  return _ema(row, row_new[None], decays.fac), _ema(col, col_new[None], decays.fac)


def update_accumulators(acc: TensorAcc, g: jax.Array, decays: Decays) -> TensorAcc:
  """One EMA step of every accumulator; ``g`` is float32."""
  row, col = update_factors(acc.row, acc.col, g, decays)
  return TensorAcc(mom=_ema(acc.mom, g[None], decays.mom),
                   rms=_ema(acc.rms, jnp.square(g), decays.rms), row=row, col=col)


def factored_second_moment(row, col, row_mean):
  """Adafactor's rank-1 reconstruction of E[g²] from broadcastable factors."""
  return row * col / row_mean


def broadcast_factors(acc: TensorAcc, shape: tuple[int, ...]):
  """Row/column accumulators and the Adafactor second-moment estimate, each
  reshaped to broadcast against ``[3, *shape]``."""
  axes = factor_axes(shape)
  if axes is None:
    return acc.row, acc.col, acc.row
  row_axis, col_axis = axes
  row = jnp.expand_dims(acc.row, 1 + col_axis)   # [3, ..., rows, 1, ...]
  col = jnp.expand_dims(acc.col, 1 + row_axis)   # [3, ..., 1, cols, ...]
  row_mean = jnp.mean(acc.row, axis=1 + row_axis, keepdims=True)
  row_mean = jnp.expand_dims(row_mean, 1 + col_axis)
  return row, col, factored_second_moment(row, col, row_mean)


def elementwise_features(g, p, mom, rms, row, col, fac_v) -> list[jax.Array]:
  """The 28 per-element features in ``ELEMENT_FEATURES`` order, un-normalized.

  Inputs broadcast against each other: g, p, rms are ``[*shape]``; mom, row,
  col, fac_v are ``[3, ...]`` arrays or sequences of three arrays (a kernel
  keeps one tile per decay). Every output broadcasts to ``[*shape]``.
  """
  mom, row, col, fac_v = ([x[i] for i in range(3)] for x in (mom, row, col, fac_v))
  rsqrt = lambda x: jax.lax.rsqrt(x + EPS)
  rsqrt_rms = rsqrt(rms)
  rsqrt_fac = [rsqrt(v) for v in fac_v]
  return ([g, p, *mom, rms, rsqrt_rms]
          + [m * rsqrt_rms for m in mom]
          + [g * r for r in rsqrt_fac]
          + row + col
          + [rsqrt(r) for r in row] + [rsqrt(c) for c in col]
          + [m * r for m, r in zip(mom, rsqrt_fac)])


def norm_scale(x: jax.Array) -> jax.Array:
  """``1 / RMS`` of a feature over the tensor (``rsqrt(1e-5 + mean(x²))``). The
  mean of a broadcast row/column feature over the full tensor equals its mean
  over the smaller array, so it is taken before broadcasting."""
  return jax.lax.rsqrt(NORM_EPS + jnp.mean(jnp.square(x)))


def normalize(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Divide by the feature's RMS over the tensor, then broadcast to ``shape``."""
  return jnp.broadcast_to(x * norm_scale(x), shape)


def raw_features(g: jax.Array, p: jax.Array, acc: TensorAcc) -> list[jax.Array]:
  """The 28 un-normalized features, un-broadcast (row/column ones keep their small shapes)."""
  row, col, fac_v = broadcast_factors(acc, g.shape)
  return elementwise_features(g, p, acc.mom, acc.rms, row, col, fac_v)


def norm_scales(feats: list[jax.Array], acc: TensorAcc,
                raw_ratios: bool = False) -> list[jax.Array]:
  """Each raw feature's normalization scale (``norm_scale``; 1 for the
  ``RATIO_FEATURES`` with ``raw_ratios``). Few reductions: the three momenta
  share one over ``acc.mom``, the row-only and the column-only features one
  each over their (small) stack."""
  mean_sq = lambda x: jnp.mean(jnp.square(x), axis=tuple(range(1, x.ndim)))
  ms = dict(zip((2, 3, 4), mean_sq(acc.mom)))  # mom0, mom1, mom2
  for part in (ROW_FEATURES, COL_FEATURES):
    ms.update(zip(part, mean_sq(jnp.stack([feats[k] for k in part]))))
  keep = RATIO_FEATURES if raw_ratios else ()
  return [jnp.ones((), jnp.float32) if i in keep else
          norm_scale(f) if i not in ms else jax.lax.rsqrt(NORM_EPS + ms[i])
          for i, f in enumerate(feats)]


def feature_list(g: jax.Array, p: jax.Array, acc: TensorAcc,
                 raw_ratios: bool = False) -> list[jax.Array]:
  """The 28 normalized per-element features, each broadcast to ``g.shape``
  (unstacked: an elementwise MLP over them fuses into one pass, see
  ``lopt.common.per_element_mlp``). With ``raw_ratios`` the ``RATIO_FEATURES``
  are left un-normalized."""
  feats = raw_features(g, p, acc)
  scales = norm_scales(feats, acc, raw_ratios)
  return [jnp.broadcast_to(f * s, g.shape) for f, s in zip(feats, scales)]


def tensor_features(g: jax.Array, p: jax.Array, acc: TensorAcc,
                    raw_ratios: bool = False) -> jax.Array:
  """``feature_list`` stacked on a new last axis: ``[*shape, 28]``."""
  return jnp.stack(feature_list(g, p, acc, raw_ratios), axis=-1)


def time_features(step: jax.Array, num_steps: int | None) -> jax.Array:
  """``[12]``: tanh(t/τ - 1) for the 11 timescales, then t/num_steps (0 if unknown)."""
  t = jnp.asarray(step, jnp.float32)
  tau = jnp.asarray(TIME_SCALES, jnp.float32)
  frac = t / num_steps if num_steps is not None else jnp.zeros((), jnp.float32)
  return jnp.concatenate([jnp.tanh(t / tau - 1.0), jnp.reshape(frac, (1,))])

