"""Keep scale-invariant tensors at a fixed norm without changing what is trained.

A kernel in front of a normalization layer (a conv or dense layer followed by
BatchNorm) is scale-invariant: the loss in training mode is the same for ``a·W``
as for ``W``, so only its direction is trained. Its norm still matters in one
place: BatchNorm's running statistics, which evaluation uses. When an optimizer
shrinks such a kernel over training (with a decaying step and a fixed weight
decay its equilibrium norm shrinks with the step), the running variance lags
the kernel, and evaluation normalizes with stale statistics: under the shipped
``mulo-m`` the first BatchNorm layer's running variance lagged 1.2-4.8× on
every BatchNorm CNN measured, and their test loss was up to 5× what the same
weights give with the statistics recomputed (docs/meta-training-runs.md,
eighteenth and nineteenth sessions).

``keep_invariant_norms(inner)`` wraps any optax transformation. For each
tensor of rank ≥ 2 it keeps ``log_ratio``, the log of the norm the inner
optimizer *thinks* the tensor has ("virtual") over its actual norm. The inner
optimizer is handed the virtual tensor ``p · r`` and the gradient it would
have there, ``g / r`` (the gradient of a scale-invariant loss scales as
1/norm), so it sees exactly the trajectory it would have seen unwrapped. Its
updated virtual tensor is then scaled back to the actual tensor's norm. For a
scale-invariant tensor the loss, and so every gradient, is the same as
unwrapped: training is unchanged up to float rounding (and up to the
normalization's eps, which makes it invariant only where the variance is far
above eps), while the actual norm, and with it BatchNorm's running
statistics, stays put.

Which tensors: those whose gradient is orthogonal to them, read by the
alignment ``z = |cos(g, p)| · sqrt(n)`` (``lopt.adaptive.alignment_z``: ~1 for
unrelated g and p, ~1e-6..1e-3 behind BatchNorm), averaged in log over updates
(``ALIGNMENT_EMA``) so that one update's chance dip does not count. The norm is
kept in proportion ``w = clip(log(z_hi / z) / log(z_hi / z_lo), 0, 1)``; any w
is exact for a truly invariant tensor, and at w = 0 the update is the inner
one (bit for bit while ``log_ratio`` is 0, as it stays for every tensor that is
never detected). An update with no evidence (all-zero gradient or tensor, as
under a zero-initialized readout, or non-finite values) leaves the average as
it was; the average starts at the first update with evidence.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt import mup as mup_lib
from lopt.adaptive import alignment_z, averaged_alignment

# Detection thresholds on the averaged alignment. An ordinary tensor's
# average sits near log 0.5 (a single extreme dip moves it by ~2.3); a tensor
# behind BatchNorm reads 1e-5 early in training, but up to ~1e-3 once its
# gradient is small and float error in the normalization's backward pass
# dominates it.
Z_HI = 1e-2
Z_LO = 2e-3
_NO_EVIDENCE = np.float32(np.inf)  # the average's value before its first evidence


class InvariantNormsState(NamedTuple):
  inner: Any       # the wrapped transformation's state
  log_ratio: Any   # pytree like params: scalars (float32, or the params' wider dtype),
                   # log(virtual norm / actual norm)
  log_z: Any       # pytree like params: float32 scalars, average of log alignment (inf: none yet)


def _wide(x: Any) -> jax.Array:
  """``x`` in float32, or wider where it is (float64 stays exact)."""
  return jnp.asarray(x, jnp.promote_types(jnp.result_type(x), jnp.float32))


def _kept(p: Any) -> bool:
  """Whether a tensor is considered at all: matrices and conv kernels, not vectors."""
  return np.ndim(p) >= 2


def keep_invariant_norms(inner: Any, z_hi: float = Z_HI, z_lo: float = Z_LO):
  """``inner`` (an optax transformation that reads params) with the norm of
  every scale-invariant tensor kept where it is (see the module docstring).
  Extra update arguments (``loss=`` and others) are passed through."""
  import optax
  if not (isinstance(z_lo, float) and isinstance(z_hi, float) and 0.0 < z_lo < z_hi < 1.0):
    raise ValueError(f"keep_invariant_norms: need floats 0 < z_lo < z_hi < 1, got "
                     f"z_lo={z_lo!r}, z_hi={z_hi!r}.")
  span = float(np.log(z_hi / z_lo))

  def init_fn(params):
    params = mup_lib.unwrap(params)
    zero = lambda p: jnp.zeros((), jnp.promote_types(jnp.result_type(p), jnp.float32))
    return InvariantNormsState(inner.init(params), jax.tree_util.tree_map(zero, params),
                               jax.tree_util.tree_map(lambda p: jnp.full((), _NO_EVIDENCE),
                                                      params))

  def detect(g, p, log_z):
    """(weight w in [0, 1], new average of log z, sum of p²) of one tensor."""
    g32, p32 = _wide(g), _wide(p)
    s_gp, s_g2, s_p2 = jnp.sum(g32 * p32), jnp.sum(jnp.square(g32)), jnp.sum(jnp.square(p32))
    z = alignment_z(s_gp, s_g2, s_p2, int(np.size(p)))
    evidence = (s_g2 > 0) & (s_p2 > 0) & jnp.isfinite(z)
    fresh = jnp.isinf(log_z)
    _, avg = averaged_alignment(z, fresh, jnp.where(fresh, 0.0, log_z))
    log_z = jnp.where(evidence, avg, log_z).astype(jnp.float32)
    w = jnp.clip(jnp.log(z_hi) - log_z, 0.0, span) / span  # 0 while log_z is inf
    return w, log_z, s_p2

  def update_fn(updates, state, params=None, **extra):
    if params is None:
      raise ValueError("keep_invariant_norms reads parameter values: call "
                       "update(grads, state, params) with params.")
    grads, params_u = mup_lib.unwrap(updates), mup_lib.unwrap(params)
    treedef = jax.tree_util.tree_structure(params_u)
    gs, ps = treedef.flatten_up_to(grads), treedef.flatten_up_to(params_u)
    ratios = treedef.flatten_up_to(state.log_ratio)
    log_zs = treedef.flatten_up_to(state.log_z)

    held, new_log_z, v_grads, v_params = [], [], [], []  # held: (w, sum p², r) or None
    for g, p, lr, lz in zip(gs, ps, ratios, log_zs):
      if not _kept(p):
        held.append(None); new_log_z.append(lz); v_grads.append(g); v_params.append(p)
        continue
      w, lz, s_p2 = detect(g, p, lz)
      r = jnp.exp(lr)
      held.append((w, s_p2, r)); new_log_z.append(lz)
      # While log_ratio is 0 (r = 1) these are the inputs unchanged, bit for bit.
      v_grads.append((_wide(g) / r).astype(jnp.result_type(g)))
      v_params.append((_wide(p) * r).astype(jnp.result_type(p)))

    inner_updates, inner_state = inner.update(
        treedef.unflatten(v_grads), state.inner, treedef.unflatten(v_params), **extra)
    us = treedef.flatten_up_to(mup_lib.unwrap(inner_updates))

    out, new_ratios = [], []
    for u, p, h, lr in zip(us, ps, held, ratios):
      if h is None:
        out.append(u); new_ratios.append(lr)
        continue
      w, s_p2, r = h
      p32, u32 = _wide(p), _wide(u)
      # The updated virtual tensor is v = p·r + u; its norm from sums (one pass
      # over p and u, no v materialized).
      log_v_new = 0.5 * jnp.log(r * r * s_p2 + 2.0 * r * jnp.sum(p32 * u32) + jnp.sum(u32 * u32))
      log_p = 0.5 * jnp.log(s_p2)
      # The actual norm after the update: the virtual one scaled back by the
      # old ratio (w = 0: as unwrapped), or the present one (w = 1: kept).
      log_actual = (1.0 - w) * (log_v_new - lr) + w * log_p
      ok = (w > 0) & jnp.isfinite(log_actual) & jnp.isfinite(log_v_new)
      c = jnp.exp(log_actual - log_v_new)
      # The new actual tensor is c·v, so the update is c·v - p = (r·c - 1)·p + c·u;
      # not held, it is v/r - p = u·exp(-log_ratio) (bit for bit u at log_ratio 0).
      a = jnp.where(ok, r * c - 1.0, 0.0)
      b = jnp.where(ok, c, 1.0 / r)
      out.append((a * p32 + b * u32).astype(jnp.result_type(u)))
      new_ratios.append(jnp.where(ok, log_v_new - log_actual, lr))

    new_state = InvariantNormsState(inner_state, treedef.unflatten(new_ratios),
                                    treedef.unflatten(new_log_z))
    return mup_lib.rewrap(updates, treedef.unflatten(out)), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def kept_norm_ratios(opt_state: Any) -> list[Any]:
  """The ``log_ratio`` trees of every ``keep_invariant_norms`` state in
  ``opt_state`` (chains, linen's TrainState and nnx.Optimizer included): 0
  for a tensor whose norm was never held."""
  opt_state = getattr(opt_state, "opt_state", opt_state)
  return [s.log_ratio for s in jax.tree_util.tree_leaves(
      opt_state, is_leaf=lambda x: isinstance(x, InvariantNormsState))
          if isinstance(s, InvariantNormsState)]


# Parameter-path names that say "a BatchNorm layer": linen's default module
# names (BatchNorm_0) and the usual attribute names (bn, bn1, conv1_bn,
# batch_norm). A name-based guess: it reads the params only, and only warns.
_BATCHNORM_NAME = re.compile(r"batch_?norm|^bn(_?\d+)?$|_bn(_?\d+)?$", re.IGNORECASE)


def batchnorm_layers(params: Any) -> list[str]:
  """The names of the layers in ``params`` that look like BatchNorm layers
  (linen's ``BatchNorm_N``, or attributes named ``bn``, ``bn1``, ``x_bn``,
  ``batch_norm``), in order, without repeats."""
  found = []
  for path, _ in jax.tree_util.tree_flatten_with_path(mup_lib.unwrap(params))[0]:
    for key in path:
      name = str(getattr(key, "key", getattr(key, "name", key)))
      if _BATCHNORM_NAME.search(name) and name not in found:
        found.append(name)
  return found


def warn_on_batchnorm(inner: Any, lo_name: str):
  """``inner`` unchanged (same state, same updates), except that its ``init``
  warns once when the params have BatchNorm layers: their running statistics
  lag under an LO whose decay shrinks the kernels in front of them, which
  ``keep_invariant_norms`` prevents."""
  import optax

  def init_fn(params):
    layers = batchnorm_layers(params)
    if layers:
      shown = ", ".join(layers[:4]) + (", ..." if len(layers) > 4 else "")
      warnings.warn(
          f"lopt.pretrained_optax({lo_name!r}): your params have BatchNorm layers ({shown}). "
          "The LO's decay shrinks the kernels in front of them over training, and BatchNorm's "
          "running statistics then lag, so the test loss in evaluation mode suffers "
          "(measured with mulo-m on four BatchNorm CNNs: 2.2-3.0x a tuned AdamW's test loss; "
          "with keep_invariant_norms=True 0.68-0.86x). Pass keep_invariant_norms=True "
          "(training is unchanged, the norms are held), or keep_invariant_norms=False to "
          "keep it off and silence this warning.", UserWarning, stacklevel=2)
    return inner.init(params)

  return optax.GradientTransformationExtraArgs(init_fn, inner.update)
