"""The fused (Pallas) per-tensor update of ``lopt.AdaptiveLOpt``, the shipped mulo-m form.

For one tensor, the update runs as

1. Pallas pass 1 (``adaptive_kernels.moments``): sanitize g, update Adam's m
   and v, per-tile sums of g², p², m̂², v̂ and of the non-finite elements.
2. XLA, per tensor (scalars): the pooled statistics (``AdaptiveLOpt.tensor_features``),
   the head's multipliers and the other step rules' ``lr`` and ``wd``
   (``step_scalars``), the network's context bias, ``rsqrt(mean p²)``.
3. Pallas pass 2 (``adaptive_kernels.step``): the network, Adam's direction
   and the update, plus the residual's per-tile sums for the mean-free form.
4. Mean-free form only: ``u += mean(r) · lr``, elementwise in XLA (the
   residual's mean is known only after pass 2; XLA fuses this add into
   whatever consumes the update, e.g. ``optax.apply_updates``).

The update is the XLA path's up to float32 rounding: sums over the tensor run
in another order, and the mean-free form subtracts the residual's mean from
``u`` instead of from ``r`` (``-(a + (r - r̄)) · lr`` = ``-(a + r) · lr + r̄ · lr``).

Bytes per float32 parameter: pass 1 reads g, p, m, v and writes m, v (24);
pass 2 reads g, p, m, v and writes u (20); the mean-free add reads and
writes u (8, or 0 where XLA fuses it into the consumer) = 44-52, vs Adam's
24 (read g, m, v; write m, v, u).

Step rules: the kernels run ``AdamDirection`` or ``MeanFreeAdamDirection``
(exactly one) with rules that only set per-tensor scalars (``SCALAR_RULES``:
``lr`` and ``wd``, evaluated in XLA by the rules' own code). Any other rule
(e.g. ``RMSNormalize``, or a subclass) makes ``adaptive_supports`` false, and
the LO runs in XLA.

vmap over particles and gradients wrt θ: ``transforms.particle_vmap`` (each
pass) and ``transforms.with_reference_vjp`` (the whole tensor update: the
backward pass is the XLA reference's VJP).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lopt import step_rules
from lopt.kernels import adaptive_kernels as K
from lopt.kernels import transforms
from lopt.kernels.layout import TensorView

DIRECTION_RULES = ("AdamDirection", "MeanFreeAdamDirection")
# Rules that only scale the step by per-tensor scalars (and set the decay).
SCALAR_RULES = ("WeightDecay", "LearnedScales", "TensorAdaptive", "GroupBase", "ShapedCosine",
                "InvariantDecayCosine", "NormKeepingCosine", "Cosine", "GradientRestraint",
                "HorizonScales")
_TINY = 1e-30   # as lopt.adaptive


def adaptive_supports(rules: tuple) -> bool:
  """Whether the kernels run these step rules (else AdaptiveLOpt runs in XLA)."""
  names = [type(r).__name__ for r in rules]
  registered = all(type(r) is step_rules.RULES.get(n) for r, n in zip(rules, names))
  return (registered and sum(n in DIRECTION_RULES for n in names) == 1
          and all(n in DIRECTION_RULES + SCALAR_RULES for n in names))


def mean_free(rules: tuple) -> bool:
  """Whether the direction rule is ``MeanFreeAdamDirection`` (its residual's
  mean is subtracted after pass 2)."""
  return any(type(r).__name__ == "MeanFreeAdamDirection" for r in rules)


def step_scalars(rules: tuple, theta: dict, ctx: step_rules.TensorContext):
  """(lr, wd) of one tensor: the scalar rules run in order (the direction
  rule is the kernel's)."""
  scalar_rules = tuple(r for r in rules if type(r).__name__ not in DIRECTION_RULES)
  step = step_rules.run(scalar_rules, theta, step_rules.Step(None), ctx)
  return step.lr, step.wd


def _shared(batched, names):
  return {name: not flag for name, flag in zip(names, batched)}


def _lead(x, flag):
  return x if flag else x[None]


def _moments_batched(lo, view, interpret, particles, batched, corr, g, p, m, v):
  corr = jnp.broadcast_to(_lead(corr, batched[0]), (particles, K.NUM_SCALARS))
  return K.moments(lo.b1, lo.b2, view, particles, _shared(batched[1:], "gpmv"), interpret, corr,
                   *(_lead(x, f) for x, f in zip((g, p, m, v), batched[1:])))


def _step_batched(lo, view, interpret, mean_free, decay, out_dtype, particles, batched,
                  packed, g, p, m, v):
  packed = jnp.broadcast_to(_lead(packed, batched[0]), (particles, packed.shape[-1]))
  g, p, m, v = (_lead(x, f) for x, f in zip((g, p, m, v), batched[1:]))
  return K.step(lo, view, particles, _shared(batched[1:], "gpmv"), interpret,
                mean_free=mean_free, decay=decay, out_dtype=out_dtype, packed=packed,
                g=g, p=p, m=m, v=v)


def _forward(lo, mult: float, group: int, num_steps_static: Any, interpret: bool,
             theta, g, p, ts, count, num_steps_traced, loss, frac, loss_feats, corrections):
  from lopt.adaptive import AdaptiveTensorState, TensorStats  # lopt.adaptive imports lopt.kernels
  num_steps = num_steps_static if num_steps_traced is None else num_steps_traced
  shape, dtype = tuple(np.shape(p)), jnp.result_type(p)
  n = math.prod(shape)
  view = TensorView.of((n,), K.BLOCK)
  flat = lambda x: jnp.reshape(x, (n,))
  bc1, bc2 = corrections

  moments = transforms.particle_vmap(functools.partial(_moments_batched, lo, view, interpret))
  corr = jnp.zeros((K.NUM_SCALARS,), jnp.float32).at[K.BC1].set(bc1).at[K.BC2].set(bc2)
  m, v, stats = moments(corr, flat(g), flat(p), flat(ts.m), flat(ts.v))
  sums = jnp.sum(stats, axis=0)
  bad = jnp.sum(stats[:, K.SUM_BAD].astype(jnp.int32))
  feats, log_g0, log_p0 = lo.tensor_features(
      frac, loss_feats, count, ts, group, len(shape), sums[K.SUM_G2] / n, sums[K.SUM_P2] / n,
      sums[K.SUM_M_HAT2] / n, sums[K.SUM_V_HAT] / n)

  alignment, log_z = None, ts.log_z
  if lo.reads_alignment:  # g·p in XLA beside the kernel (g sanitized as the kernel does)
    from lopt.adaptive import alignment_z, averaged_alignment
    from lopt.common import sanitize_grad
    alignment, log_z = averaged_alignment(alignment_z(
        jnp.sum(sanitize_grad(flat(g))[0] * flat(p).astype(jnp.float32)),
        sums[K.SUM_G2], sums[K.SUM_P2], n), count == 1, ts.log_z)
  stats_only = TensorStats(None, None, lo.eps, feats, alignment)
  ctx = step_rules.TensorContext(None, None, mult, group, count, num_steps, loss, stats_only,
                                 (lo.b1, lo.b2), ndim=len(shape))
  lr, wd = step_scalars(lo.step, theta, ctx)
  decay = step_rules.decays(wd, len(shape))
  lr = jnp.asarray(lr, jnp.float32)
  res = theta["residual"]
  packed = K.pack([bc1, bc2, lr, wd * lr if decay else 0.0,
                   jax.lax.rsqrt(sums[K.SUM_P2] / n + _TINY), res["b1"]],
                  res["w0"], lo.residual_bias(res, feats), res["w1"])
  subtract_mean = mean_free(lo.step)
  step = transforms.particle_vmap(functools.partial(
      _step_batched, lo, view, interpret, subtract_mean, decay,
      jnp.float32 if subtract_mean else dtype))
  out = step(packed, flat(g), flat(p), m, v)
  if subtract_mean:
    u, r_stats = out
    u = (u + (jnp.sum(r_stats[:, K.SUM_R]) / n) * lr).astype(dtype)
  else:
    (u,) = out
  state = AdaptiveTensorState(m.reshape(shape), v.reshape(shape), log_g0, log_p0,
                              lo.seen_multipliers(theta, feats, group), log_z)
  return u.reshape(shape), state, bad


def tensor_update(lo, mult: float, group: int, theta: dict, g, p, ts, count, num_steps, loss,
                  frac, loss_feats, corrections, *, reference: Callable, interpret: bool):
  """Fused update of one tensor: ``(update, new AdaptiveTensorState, non-finite
  count)``, as ``reference`` (``AdaptiveLOpt._xla_tensor_update`` at this
  tensor's ``mult`` and ``group``, same arguments) computes it; its VJP is the
  backward pass. ``lo.step`` must pass ``adaptive_supports``."""
  traced = num_steps if isinstance(num_steps, jax.Array) else None
  static = None if traced is not None else num_steps
  loss = None if loss is None else jnp.asarray(loss, jnp.float32)
  forward = functools.partial(_forward, lo, mult, group, static, interpret)
  ref = lambda theta, g, p, ts, count, ns, *rest: reference(
      theta, g, p, ts, count, static if ns is None else ns, *rest)
  return transforms.with_reference_vjp(forward, ref)(theta, g, p, ts, count, traced, loss, frac,
                                                     loss_feats, corrections)


def kernel_bytes_per_param(param_itemsize: int = 4, mean_free: bool = True) -> tuple[int, int]:
  """(low, high) bytes this path moves per parameter (module docstring); high
  counts the mean-free add as its own pass, low as fused into the consumer."""
  g = p = param_itemsize
  pass1 = g + p + 2 * 4 + 2 * 4
  u = 4 if mean_free else param_itemsize
  pass2 = g + p + 2 * 4 + u
  low = pass1 + pass2
  return low, low + (u + param_itemsize if mean_free else 0)
