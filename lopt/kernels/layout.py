"""How one parameter tensor is laid out for the fused kernels: views, blocks, grid.

Every view is a free (row-major) reshape of the parameter, so no tensor is ever
transposed or copied on its way into a kernel:

* **factored** (rank >= 2, factor axes r < c): ``[A, R, M, C, T]`` with
  ``A = prod(shape[:r])``, ``R = shape[r]``, ``M = prod(shape[r+1:c])``,
  ``C = shape[c]``, ``T = prod(shape[c+1:])``. The row accumulator
  ``[3, *shape without c]`` is then ``[3, A, R, M, T]`` and the column one
  ``[3, A, M, C, T]``. A block is an ``[Rb, Cb]`` tile at fixed (a, m, t), so
  the row and column factors broadcast over it. Dense ``(in, out)``, conv
  ``(h, w, in, out)`` and embeddings have ``M = T = 1``: tiles are contiguous
  along C. Other layouts (e.g. ``(d, heads, head_dim)``) still work, with
  strided tiles.
* **full** (rank < 2): ``[N]``, blocks of ``Nb`` elements; row/column
  accumulators are per element.

Block sides are powers of two (a Triton requirement on every tile) and hold at
least ``MIN_BLOCK`` elements (``tl.dot`` needs M >= 16). When a side does not
divide its axis, the overhang is masked in the kernel.

Every kernel operand carries a leading particle axis ``P`` (size 1 when it is
shared by all particles; its index map then always picks 0), and the grid's
first axis runs over particles.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from lopt import features as F

MIN_BLOCK = 16
STATS_WIDTH = 32  # per-block feature statistics, padded from 28 to a power of two


def pow2_at_least(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class TensorView:
  shape: tuple[int, ...]   # the parameter's shape
  view: tuple[int, ...]    # (A, R, M, C, T) if factored, else (N,)
  block: tuple[int, ...]   # (Rb, Cb) if factored, else (Nb,)

  @staticmethod
  def of(shape: tuple[int, ...], block_elems: int) -> "TensorView":
    """The view of a tensor of ``shape`` with tiles of about ``block_elems`` elements."""
    shape = tuple(int(d) for d in shape)
    axes = F.factor_axes(shape)
    if axes is None:
      n = math.prod(shape)
      return TensorView(shape, (n,), (max(MIN_BLOCK, min(pow2_at_least(n), block_elems)),))
    r, c = axes
    view = (math.prod(shape[:r]), shape[r], math.prod(shape[r + 1:c]), shape[c],
            math.prod(shape[c + 1:]))
    cb = min(pow2_at_least(shape[c]), block_elems)
    rb = min(pow2_at_least(shape[r]), max(1, block_elems // cb))
    rb = max(rb, MIN_BLOCK // cb)
    return TensorView(shape, view, (rb, cb))

  # ------------------------------------------------------------ shapes
  @property
  def factored(self) -> bool:
    return len(self.view) == 5

  @property
  def size(self) -> int:
    return math.prod(self.shape)

  @property
  def row_view(self) -> tuple[int, ...]:
    if not self.factored:
      return self.view
    a, r, m, _, t = self.view
    return (a, r, m, t)

  @property
  def col_view(self) -> tuple[int, ...]:
    if not self.factored:
      return self.view
    a, _, m, c, t = self.view
    return (a, m, c, t)

  @property
  def tiles(self) -> tuple[int, ...]:
    """Number of tiles along each blocked axis."""
    if self.factored:
      return (pl.cdiv(self.view[1], self.block[0]), pl.cdiv(self.view[3], self.block[1]))
    return (pl.cdiv(self.view[0], self.block[0]),)

  def grid(self, particles: int) -> tuple[int, ...]:
    """(P, A, M, T, row tiles, col tiles) or (P, tiles)."""
    if self.factored:
      a, _, m, _, t = self.view
      return (particles, a, m, t, *self.tiles)
    return (particles, *self.tiles)

  @property
  def exact(self) -> bool:
    """True when the tiles cover the view exactly, so no masks are needed."""
    if self.factored:
      return self.view[1] % self.block[0] == 0 and self.view[3] % self.block[1] == 0
    return self.view[0] % self.block[0] == 0

  # ------------------------------------------------------------ block specs
  # Grid indices are (p, a, m, t, i, j) or (p, b); `shared` operands have P = 1.
  def element_spec(self, shared: bool = False, components: bool = False) -> pl.BlockSpec:
    """Spec of a ``[P, (3,) *view]`` array: one tile (of each of the 3 decays)."""
    lead = (3,) if components else ()
    zero = (0,) if components else ()
    if self.factored:
      rb, cb = self.block
      return pl.BlockSpec((None, *lead, None, rb, None, cb, None),
                          lambda p, a, m, t, i, j: (0 if shared else p, *zero, a, i, m, j, t))
    return pl.BlockSpec((None, *lead, *self.block), lambda p, b: (0 if shared else p, *zero, b))

  def row_spec(self) -> pl.BlockSpec:
    """Spec of the row accumulator ``[P, 3, A, R, M, T]`` (factored views only)."""
    return pl.BlockSpec((None, 3, None, self.block[0], None, None),
                        lambda p, a, m, t, i, j: (p, 0, a, i, m, t))

  def col_spec(self) -> pl.BlockSpec:
    """Spec of the column accumulator ``[P, 3, A, M, C, T]`` (factored views only)."""
    return pl.BlockSpec((None, 3, None, None, self.block[1], None),
                        lambda p, a, m, t, i, j: (p, 0, a, m, j, t))

  def row_mean_spec(self) -> pl.BlockSpec:
    """Spec of the mean of the row accumulator over R, ``[P, 3, A, M, T]``."""
    return pl.BlockSpec((None, 3, None, None, None), lambda p, a, m, t, i, j: (p, 0, a, m, t))

  def particle_spec(self, shape: tuple[int, ...]) -> pl.BlockSpec:
    """Spec of a small per-particle array ``[P, *shape]``, read whole by every block."""
    return pl.BlockSpec((None, *shape), lambda p, *_: (p,) + (0,) * len(shape))

  def stats_shape(self, particles: int, width: int = STATS_WIDTH) -> tuple[int, ...]:
    return (*self.grid(particles), width)

  def stats_spec(self, width: int = STATS_WIDTH) -> pl.BlockSpec:
    """One row of ``width`` (a power of two) partial sums per program."""
    nd = len(self.grid(1))
    return pl.BlockSpec((None,) * nd + (width,), lambda *idx: (*idx, 0))

  # ------------------------------------------------------------ in-kernel helpers
  def masks(self):
    """(element mask, row mask, col mask) for the current program's tile, or
    Nones when the tiles cover the view exactly. Call inside a kernel."""
    if self.exact:
      return None, None, None
    if self.factored:
      (rb, cb), (_, r, _, c, _) = self.block, self.view
      rows = pl.program_id(4) * rb + jax.lax.broadcasted_iota(jnp.int32, (rb,), 0)
      cols = pl.program_id(5) * cb + jax.lax.broadcasted_iota(jnp.int32, (cb,), 0)
      row_ok, col_ok = rows < r, cols < c
      return row_ok[:, None] & col_ok[None, :], row_ok, col_ok
    (nb,), (n,) = self.block, self.view
    ok = pl.program_id(1) * nb + jax.lax.broadcasted_iota(jnp.int32, (nb,), 0) < n
    return ok, ok, ok


def load(ref, mask, component: int | None = None) -> jax.Array:
  """Load a tile (``component`` k of a [3, ...] block), zero outside ``mask``."""
  if component is not None:
    if mask is None:
      return ref[component]
    ref = ref.at[jnp.int32(component)]  # a traced index: interpret mode needs one
  if mask is None:
    return ref[...]
  return plgpu.load(ref, mask=mask, other=jnp.zeros((), ref.dtype))


def store(ref, value: jax.Array, mask, component: int | None = None) -> None:
  """Store a tile (into ``component`` k of a [3, ...] block), only inside ``mask``."""
  value = value.astype(ref.dtype)
  if component is not None:
    if mask is None:
      ref[component] = value
      return
    ref = ref.at[jnp.int32(component)]
  if mask is None:
    ref[...] = value
  else:
    plgpu.store(ref, value, mask=mask)


def lane_sums(sums: dict[int, jax.Array], width: int) -> jax.Array:
  """A row of ``width`` floats holding each scalar ``sums[k]`` in lane k (0
  elsewhere): one program's partial sums, for a ``stats_spec`` output."""
  lane = jax.lax.broadcasted_iota(jnp.int32, (width,), 0)
  row = jnp.zeros((width,), jnp.float32)
  for k, value in sums.items():
    row = jnp.where(lane == k, value, row)
  return row


def compiler_params():
  """Triton launch parameters, or None (defaults) if this JAX's API differs."""
  try:
    return plgpu.CompilerParams(num_warps=4, num_stages=1)
  except (AttributeError, TypeError):
    return None
