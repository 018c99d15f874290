"""The two Pallas kernels of the fused AdaptiveLOpt update, for one tensor and P particles.

Every tensor is read as its flat view ``[N]`` (a free reshape; ``TensorView``
of shape ``(N,)``), in tiles of ``BLOCK`` elements, the last one masked.

Pass 1, ``moments``: per tile, zero the non-finite gradient elements (as
``common.sanitize_grad``), EMA-update Adam's moments m and v (written out),
and write one row of partial sums (``SUM_*`` lanes): of g², p², m̂², v̂ and of
the non-finite elements.

Pass 2, ``step``: per tile, the network's inputs and output
(``AdaptiveLOpt.element_features`` and ``residual_network``, the same code
as the XLA path), its tanh r, Adam's direction and the update
``-(adam + r) · lr [- wd · lr · p]`` (written out), and, for the mean-free
residual, the partial sums of r.

The per-particle scalars and the network's weights travel in one small array
``[P, packed_size(H)]`` (``pack``): bias corrections, ``lr`` and ``wd · lr``
(from the step rules), ``rsqrt(mean p²)``, the output bias, then w0 [3, H],
the first layer's bias with the tensor context folded in [H], and w1 [H].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from lopt.kernels.layout import TensorView, compiler_params, lane_sums, load, pow2_at_least, store

BLOCK = 1024          # elements per tile (both passes stream; the network runs unit by unit)
STATS_WIDTH = 8       # lanes of partial sums per tile
SUM_G2, SUM_P2, SUM_M_HAT2, SUM_V_HAT, SUM_BAD = range(5)   # pass 1's lanes
SUM_R = 0                                                    # pass 2's lane
# Packed per-particle scalars, then the network's weights.
BC1, BC2, LR, WD_LR, P_SCALE, OUT_BIAS = range(6)
NUM_SCALARS = 8


def packed_size(hidden: int) -> int:
  return pow2_at_least(NUM_SCALARS + 5 * hidden)


def pack(scalars: list, w0: jax.Array, bias: jax.Array, w1: jax.Array) -> jax.Array:
  """The ``[packed_size(H)]`` array pass 2 reads (see the module docstring)."""
  hidden = bias.shape[0]
  head = jnp.stack([jnp.asarray(x, jnp.float32) for x in scalars])
  flat = jnp.concatenate([head, jnp.zeros((NUM_SCALARS - len(scalars),), jnp.float32),
                          w0.reshape(-1), bias, w1]).astype(jnp.float32)
  return jnp.pad(flat, (0, packed_size(hidden) - flat.shape[0]))


class _Packed:
  """``w[i, j]`` / ``w[j]`` as scalar loads from the packed ref (static offsets)."""

  def __init__(self, ref, offset: int, cols: int = 0):
    self.ref, self.offset, self.cols = ref, offset, cols

  def __getitem__(self, index):
    k = index[0] * self.cols + index[1] if isinstance(index, tuple) else index
    return self.ref[self.offset + k]


def _gradient(g_ref, mask):
  """The tile of g in float32, non-finite elements zeroed; and which were finite."""
  g = load(g_ref, mask).astype(jnp.float32)
  ok = jnp.isfinite(g)
  return jnp.where(ok, g, 0.0), ok


def _moments_kernel(b1: float, b2: float, view: TensorView,
                    corr_ref, g_ref, p_ref, m_ref, v_ref, m_out, v_out, stats_out):
  mask = view.masks()[0]
  g, ok = _gradient(g_ref, mask)
  p = load(p_ref, mask).astype(jnp.float32)
  m = b1 * load(m_ref, mask) + (1 - b1) * g          # as AdaptiveLOpt._xla_tensor_update
  v = b2 * load(v_ref, mask) + (1 - b2) * jnp.square(g)
  store(m_out, m, mask)
  store(v_out, v, mask)
  m_hat, v_hat = m / corr_ref[BC1], v / corr_ref[BC2]
  # Masked elements load as 0: they add 0 to every sum (and count as finite).
  stats_out[...] = lane_sums({SUM_G2: jnp.sum(jnp.square(g)), SUM_P2: jnp.sum(jnp.square(p)),
                              SUM_M_HAT2: jnp.sum(jnp.square(m_hat)), SUM_V_HAT: jnp.sum(v_hat),
                              SUM_BAD: jnp.sum(jnp.where(ok, 0.0, 1.0))}, STATS_WIDTH)


def moments(b1: float, b2: float, view: TensorView, particles: int, shared: dict[str, bool],
            interpret: bool, corr, g, p, m, v):
  """Pass 1. ``corr`` [P, NUM_SCALARS] (BC1, BC2); g, p, m, v [P or 1, N].
  Returns (m [P, N], v [P, N], stats [P, tiles, STATS_WIDTH])."""
  in_specs = [view.particle_spec((NUM_SCALARS,)), view.element_spec(shared["g"]),
              view.element_spec(shared["p"]), view.element_spec(shared["m"]),
              view.element_spec(shared["v"])]
  out_shape = [jax.ShapeDtypeStruct((particles, *view.view), jnp.float32),
               jax.ShapeDtypeStruct((particles, *view.view), jnp.float32),
               jax.ShapeDtypeStruct(view.stats_shape(particles, STATS_WIDTH), jnp.float32)]
  out_specs = [view.element_spec(), view.element_spec(), view.stats_spec(STATS_WIDTH)]
  return pl.pallas_call(
      functools.partial(_moments_kernel, b1, b2, view), grid=view.grid(particles),
      in_specs=in_specs, out_specs=out_specs, out_shape=out_shape, interpret=interpret,
      name="lopt_adaptive_moments", compiler_params=None if interpret else compiler_params(),
  )(corr, g, p, m, v)


def _step_kernel(lo, view: TensorView, mean_free: bool, decay: bool,
                 packed_ref, g_ref, p_ref, m_ref, v_ref, u_out, *stats_out):
  mask = view.masks()[0]
  hidden = lo.residual_hidden
  g, _ = _gradient(g_ref, mask)
  p = load(p_ref, mask).astype(jnp.float32)
  m_hat = load(m_ref, mask) / packed_ref[BC1]
  v_hat = load(v_ref, mask) / packed_ref[BC2]
  xs = lo.element_features(m_hat, v_hat, g, p, packed_ref[P_SCALE])
  raw = lo.residual_network(
      xs, _Packed(packed_ref, NUM_SCALARS + 3 * hidden), _Packed(packed_ref, NUM_SCALARS, hidden),
      _Packed(packed_ref, NUM_SCALARS + 4 * hidden), packed_ref[OUT_BIAS])
  r = jnp.tanh(raw)
  adam = m_hat / (jnp.sqrt(v_hat) + lo.eps)   # as AdamDirection
  u = -(adam + r) * packed_ref[LR]            # as step_rules.apply
  if decay:
    u = u - packed_ref[WD_LR] * p
  store(u_out, u, mask)
  if mean_free:
    r = r if mask is None else jnp.where(mask, r, 0.0)
    stats_out[0][...] = lane_sums({SUM_R: jnp.sum(r)}, STATS_WIDTH)


def step(lo, view: TensorView, particles: int, shared: dict[str, bool], interpret: bool, *,
         mean_free: bool, decay: bool, out_dtype, packed, g, p, m, v):
  """Pass 2. ``packed`` [P, packed_size(H)]; g, p, m, v [P or 1, N]. Returns
  the update [P, N] (without the residual's mean) and, if ``mean_free``, the
  partial sums of the residual [P, tiles, STATS_WIDTH]."""
  in_specs = [view.particle_spec(packed.shape[1:]), view.element_spec(shared["g"]),
              view.element_spec(shared["p"]), view.element_spec(shared["m"]),
              view.element_spec(shared["v"])]
  out_shape = [jax.ShapeDtypeStruct((particles, *view.view), out_dtype)]
  out_specs = [view.element_spec()]
  if mean_free:
    out_shape.append(jax.ShapeDtypeStruct(view.stats_shape(particles, STATS_WIDTH), jnp.float32))
    out_specs.append(view.stats_spec(STATS_WIDTH))
  return pl.pallas_call(
      functools.partial(_step_kernel, lo, view, mean_free, decay), grid=view.grid(particles),
      in_specs=in_specs, out_specs=out_specs, out_shape=out_shape, interpret=interpret,
      name="lopt_adaptive_step", compiler_params=None if interpret else compiler_params(),
  )(packed, g, p, m, v)
