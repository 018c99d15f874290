"""The two Pallas kernels of the fused MLP-LO update, for one tensor and P particles.

Pass 1, ``accumulate``: per tile, EMA-update the momenta and second moment
(written out), rebuild the 28 raw features with ``features.elementwise_features``
and write the partial sums of squares of the 16 features that vary per element
(one row of ``STATS_WIDTH`` floats per program; the 12 that read only the
row/column accumulators get their statistics in XLA, over those small arrays).
The row/column accumulators were already updated in XLA (they need
whole-tensor means of g², see ``fused_update``).

Pass 2, ``step``: per tile, rebuild the same raw features from the new
accumulators, run the MLP with the per-tensor normalization folded into the
first layer's weights (``h0 = Σ_k f_k · (s_k W0[k]) + b0``, time features folded
into ``b0``), and write the update. θ is read once per tile.

Scalars per particle (``[P, 8]``): 0-2 momentum decays, 3 second-moment decay,
4-5 output-layer bias (direction, magnitude), 6-7 padding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from lopt import features as F
from lopt.features import COL_FEATURES, PER_ELEMENT_FEATURES, ROW_FEATURES
from lopt.kernels.layout import STATS_WIDTH, TensorView, compiler_params, lane_sums, load, store

NUM_SCALARS = 8
_RMS, _OUT_BIAS = 3, 4


def _factor_tiles(view: TensorView, refs, row_mask, col_mask):
  """Row, column and Adafactor second-moment tiles (3 each) that broadcast over the tile."""
  if view.factored:
    row_ref, col_ref, row_mean_ref = refs
    row = [load(row_ref, row_mask, k)[:, None] for k in range(3)]
    col = [load(col_ref, col_mask, k)[None, :] for k in range(3)]
    fac = [F.factored_second_moment(row[k], col[k], row_mean_ref[k]) for k in range(3)]
    return row, col, fac
  row_ref, col_ref = refs
  row = [load(row_ref, row_mask, k) for k in range(3)]
  col = [load(col_ref, col_mask, k) for k in range(3)]
  return row, col, row  # rank < 2: the full accumulator is its own estimate


def _load_inputs(view, g_ref, p_ref, mask):
  return load(g_ref, mask).astype(jnp.float32), load(p_ref, mask).astype(jnp.float32)


def _accumulate_kernel(view: TensorView, num_factor_refs: int,
                       scalars_ref, g_ref, p_ref, mom_ref, rms_ref, *refs):
  factor_refs, (mom_out, rms_out, stats_out) = refs[:num_factor_refs], refs[num_factor_refs:]
  mask, row_mask, col_mask = view.masks()
  g, p = _load_inputs(view, g_ref, p_ref, mask)
  ema = lambda beta, old, new: beta * old + (1.0 - beta) * new  # as features._ema
  mom = [ema(scalars_ref[k], load(mom_ref, mask, k), g) for k in range(3)]
  rms = ema(scalars_ref[_RMS], load(rms_ref, mask), jnp.square(g))
  for k in range(3):
    store(mom_out, mom[k], mask, k)
  store(rms_out, rms, mask)

  row, col, fac = _factor_tiles(view, factor_refs, row_mask, col_mask)
  feats = F.elementwise_features(g, p, mom, rms, row, col, fac)
  # Partial sums of x² of the per-element features (slot k = feature k; the
  # factor-only features' slots stay 0: XLA takes those from the factors).
  squares = {k: jnp.square(feats[k]) for k in PER_ELEMENT_FEATURES}
  if mask is not None:
    squares = {k: jnp.where(mask, sq, 0.0) for k, sq in squares.items()}
  stats_out[...] = lane_sums({k: jnp.sum(sq) for k, sq in squares.items()}, STATS_WIDTH)


def accumulate(view: TensorView, particles: int, shared: dict[str, bool], interpret: bool,
               scalars, g, p, mom, rms, *factors):
  """Pass 1. Returns (mom [P, 3, *view], rms [P, *view], stats [*grid, STATS_WIDTH])."""
  factor_specs = ([view.row_spec(), view.col_spec(), view.row_mean_spec()] if view.factored
                  else [view.element_spec(components=True)] * 2)
  in_specs = [view.particle_spec((NUM_SCALARS,)),
              view.element_spec(shared["g"]), view.element_spec(shared["p"]),
              view.element_spec(shared["mom"], components=True),
              view.element_spec(shared["rms"]), *factor_specs]
  out_shape = [jax.ShapeDtypeStruct((particles, 3, *view.view), jnp.float32),
               jax.ShapeDtypeStruct((particles, *view.view), jnp.float32),
               jax.ShapeDtypeStruct(view.stats_shape(particles), jnp.float32)]
  out_specs = [view.element_spec(components=True), view.element_spec(), view.stats_spec()]
  kernel = functools.partial(_accumulate_kernel, view, len(factors))
  return pl.pallas_call(
      kernel, grid=view.grid(particles), in_specs=in_specs, out_specs=out_specs,
      out_shape=out_shape, interpret=interpret, name="lopt_mlp_accumulate",
      compiler_params=None if interpret else compiler_params(),
  )(scalars, g, p, mom, rms, *factors)


def _step_kernel(view: TensorView, num_factor_refs: int, hidden_layers: int,
                 step_mult: float, exp_mult: float, multiplier: float,
                 scalars_ref, g_ref, p_ref, mom_ref, rms_ref, *refs):
  factor_refs = refs[:num_factor_refs]
  refs = refs[num_factor_refs:]
  w0_ref, b0_ref = refs[:2]
  hidden_refs = refs[2:4] if hidden_layers > 1 else ()
  w_out_ref, out_ref = refs[-2:]
  mask, row_mask, col_mask = view.masks()
  g, p = _load_inputs(view, g_ref, p_ref, mask)
  mom = [load(mom_ref, mask, k) for k in range(3)]
  rms = load(rms_ref, mask)
  row, col, fac = _factor_tiles(view, factor_refs, row_mask, col_mask)
  feats = F.elementwise_features(g, p, mom, rms, row, col, fac)

  # First layer as broadcast FMAs (the features are separate tiles); w0_ref
  # already holds each feature's normalization scale. Row-only and column-only
  # features are summed on their [Rb, 1, H] / [1, Cb, H] tiles before joining.
  def partial_layer(indices):
    terms = [feats[k][..., None] * w0_ref[k] for k in indices]
    return functools.reduce(jnp.add, terms)
  h = b0_ref[...] + partial_layer(PER_ELEMENT_FEATURES)
  h = h + partial_layer(ROW_FEATURES) + partial_layer(COL_FEATURES)
  h = jnp.maximum(h, 0.0).reshape(-1, h.shape[-1])  # [tile elements, hidden]
  if hidden_refs:
    w_ref, b_ref = hidden_refs
    for i in range(hidden_layers - 1):
      h = jnp.dot(h, w_ref[i], preferred_element_type=jnp.float32) + b_ref[i]
      h = jnp.maximum(h, 0.0)
  direction = jnp.sum(h * w_out_ref[0], axis=1) + scalars_ref[_OUT_BIAS]
  magnitude = jnp.sum(h * w_out_ref[1], axis=1) + scalars_ref[_OUT_BIAS + 1]
  step = direction * jnp.exp(exp_mult * magnitude) * step_mult * multiplier
  store(out_ref, (-step).reshape(g.shape), mask)


def step(view: TensorView, particles: int, shared: dict[str, bool], interpret: bool, *,
         hidden_layers: int, step_mult: float, exp_mult: float, multiplier: float,
         out_dtype, scalars, g, p, mom, rms, factors, mlp):
  """Pass 2. ``mlp`` = (w0 [P, 28, H], b0 [P, H], [w [P, L-1, H, H], b [P, L-1, H]],
  w_out [P, 2, H]) with H a power of two >= 16. Returns the update [P, *view]."""
  factor_specs = ([view.row_spec(), view.col_spec(), view.row_mean_spec()] if view.factored
                  else [view.element_spec(components=True)] * 2)
  in_specs = [view.particle_spec((NUM_SCALARS,)),
              view.element_spec(shared["g"]), view.element_spec(shared["p"]),
              view.element_spec(components=True), view.element_spec(), *factor_specs,
              *(view.particle_spec(w.shape[1:]) for w in mlp)]
  kernel = functools.partial(_step_kernel, view, len(factors), hidden_layers,
                             step_mult, exp_mult, multiplier)
  return pl.pallas_call(
      kernel, grid=view.grid(particles), in_specs=in_specs,
      out_specs=view.element_spec(),
      out_shape=jax.ShapeDtypeStruct((particles, *view.view), out_dtype),
      interpret=interpret, name="lopt_mlp_step",
      compiler_params=None if interpret else compiler_params(),
  )(scalars, g, p, mom, rms, *factors, *mlp)
