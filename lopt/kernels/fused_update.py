"""The fused (Pallas) per-tensor update of the MLP LO, with its vmap and VJP rules.

For one tensor, the update runs as

1. XLA, small: the row/column accumulators (``features.update_factors``: the
   row/column means of g², one read of g; rank < 2 tensors update their full
   row/column accumulators here too), the mean of the row accumulator, the
   per-particle scalars, and the time features folded into the first layer's
   bias.
2. Pallas pass 1 (``mlp_kernels.accumulate``): momenta and second moment,
   plus per-tile sums of the squares of the 16 per-element features (the 12
   features that read only the row/column accumulators get theirs in step 1,
   over those small arrays).
3. XLA, tiny: the per-tensor normalization scales ``rsqrt(1e-5 + mean(x²))``,
   folded into the first layer's weights.
4. Pallas pass 2 (``mlp_kernels.step``): features, MLP, update.

Bytes per float32 parameter: 4 (g for the row/col means; XLA may read it twice,
8) + 40 (pass 1: read g, p, 3 momenta, rms; write 3 momenta, rms) + 28 (pass 2:
read g, p, 3 momenta, rms; write the update) = 72-76, vs Adam's 24 (read g,
m, v; write m, v, update).

**vmap** (particles, θ±ε): ``transforms.particle_vmap``. The batched
rule runs the same two kernels with the particle axis as the grid's first axis
(θ-derived weights are per particle, read once per tile); operands that are not
batched are read through an index map that always picks particle 0, so nothing
is broadcast in memory. An unbatched call is the batched one with P = 1.

**Gradients** (TBPTT): ``transforms.with_reference_vjp``. The forward pass runs the kernels;
the backward pass is the VJP of the XLA reference at the same inputs, so
gradients equal the XLA path's. Forward-mode AD is not supported on this path
(use ``backend="xla"``).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lopt import features as F
from lopt.kernels import mlp_kernels, transforms
from lopt.kernels.layout import TensorView, pow2_at_least

# Elements per tile: pass 1 is a plain memory-bound stream; pass 2 holds a
# [tile, hidden] activation in registers, so its tiles are smaller.
ACCUMULATE_BLOCK = 1024
STEP_BLOCK = 256
KERNEL_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)

# The XLA version: (theta_mlp, tfeats, decays, g, p, acc) -> (update, new acc)
Reference = Callable


def supports(p) -> bool:
  """Whether a parameter of this dtype runs in the kernel (float64 stays in XLA)."""
  dtype = jnp.result_type(p)
  return any(dtype == d for d in KERNEL_DTYPES)


def _padded_mlp(theta_mlp: dict, hidden_layers: int, tfeats: jax.Array):
  """θ for the kernel, hidden width zero-padded to a power of two >= 16 (exact:
  padded units stay at relu(0) = 0). Time features fold into the first bias."""
  first = theta_mlp["layer_0"]
  h = first["b"].shape[0]
  hp = max(16, pow2_at_least(h))
  pad_cols = lambda x: jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, hp - h)])
  w0 = pad_cols(first["w"])                                   # [28, H]
  b0 = pad_cols(tfeats @ first["w_time"] + first["b"])        # [H]
  hidden = [theta_mlp[f"layer_{i}"] for i in range(1, hidden_layers)]
  mlp_hidden = (jnp.stack([jnp.pad(l["w"], [(0, hp - h), (0, hp - h)]) for l in hidden]),
                jnp.stack([pad_cols(l["b"]) for l in hidden])) if hidden else ()
  out = theta_mlp["output"]
  w_out = pad_cols(out["w"].T)                                # [2, H]
  return w0, b0, mlp_hidden, w_out, out["b"]


def _prepare(view: TensorView, hidden_layers: int, theta_mlp, tfeats, decays: F.Decays, g, acc):
  """Per-particle XLA prologue: new row/col accumulators (in the view) and kernel θ."""
  row, col = F.update_factors(acc.row, acc.col, jnp.asarray(g, jnp.float32), decays)
  factors_view = (row.reshape(3, *view.row_view), col.reshape(3, *view.col_view))
  if view.factored:
    factors_view += (jnp.mean(factors_view[0], axis=2),)   # mean over R: [3, A, M, T]
  w0, b0, hidden, w_out, b_out = _padded_mlp(theta_mlp, hidden_layers, tfeats)
  scalars = jnp.concatenate([decays.mom, decays.rms[None], b_out,
                             jnp.zeros((mlp_kernels.NUM_SCALARS - 6,), jnp.float32)])
  return (row, col), factors_view, _factor_feature_means(row, col), scalars, (
      w0, b0, *hidden, w_out)


def _factor_feature_means(row: jax.Array, col: jax.Array) -> jax.Array:
  """mean(x²) over the tensor of each factor-only feature, taken over the
  row/column arrays (each entry broadcasts to equally many elements). Same
  pipeline as the kernel: neutral values for the inputs these features ignore."""
  zero, one = jnp.zeros((3, 1)), jnp.ones((3, 1))
  feats = F.elementwise_features(0.0, 0.0, zero, 0.0, row, col, one)
  return jnp.stack([jnp.mean(jnp.square(feats[k])) for k in F.FACTOR_ONLY_FEATURES])


def _batched_update(cfg, shape, mult: float, interpret: bool, particles: int, batched,
                    theta_mlp, tfeats, decays, g, p, acc):
  """The update of one tensor for ``particles`` particles; ``batched`` mirrors
  the arguments with a bool per leaf (batched leaves have a leading P axis)."""
  view1 = TensorView.of(shape, ACCUMULATE_BLOCK)
  view2 = TensorView.of(shape, STEP_BLOCK)
  b_theta, b_tfeats, b_decays, b_g, b_p, b_acc = batched
  axes = lambda flags: jax.tree_util.tree_map(lambda f: 0 if f else None, flags)
  prepare = jax.vmap(
      lambda th, tf, dec, gg, row, col: _prepare(view1, cfg.hidden_layers, th, tf, dec, gg,
                                                 F.TensorAcc(None, None, row, col)),
      in_axes=(axes(b_theta), axes(b_tfeats), axes(b_decays), axes(b_g),
               axes(b_acc.row), axes(b_acc.col)),
      axis_size=particles)
  new_factors, factors_view, factor_means, scalars, mlp = prepare(
      theta_mlp, tfeats, decays, g, acc.row, acc.col)

  # Big operands: a leading P axis if batched, else a leading 1 (free reshapes).
  as_view = lambda x, flag, lead=(): x.reshape((x.shape[0] if flag else 1, *lead, *view1.view))
  g_v, p_v = as_view(g, b_g), as_view(p, b_p)
  mom_v, rms_v = as_view(acc.mom, b_acc.mom, (3,)), as_view(acc.rms, b_acc.rms)
  shared = {"g": not b_g, "p": not b_p, "mom": not b_acc.mom, "rms": not b_acc.rms}

  mom, rms, stats = mlp_kernels.accumulate(view1, particles, shared, interpret,
                                           scalars, g_v, p_v, mom_v, rms_v, *factors_view)
  sums = jnp.sum(stats.reshape(particles, -1, stats.shape[-1]), axis=1)
  means = sums[:, :F.NUM_ELEMENT_FEATURES] / view1.size
  means = means.at[:, F.FACTOR_ONLY_FEATURES].set(factor_means)
  scales = jax.lax.rsqrt(F.NORM_EPS + means)
  if cfg.features.adam:  # the ratio features enter the MLP un-normalized (raw_ratios)
    scales = scales.at[:, F.RATIO_FEATURES].set(1.0)
  w0 = mlp[0] * scales[:, :, None]
  update = mlp_kernels.step(
      view2, particles, {"g": not b_g, "p": not b_p}, interpret,
      hidden_layers=cfg.hidden_layers, step_mult=cfg.step_mult, exp_mult=cfg.exp_mult,
      multiplier=mult, out_dtype=jnp.result_type(p), scalars=scalars,
      g=g_v, p=p_v, mom=mom, rms=rms, factors=factors_view, mlp=(w0, *mlp[1:]))
  row, col = new_factors
  new_acc = F.TensorAcc(mom.reshape(particles, 3, *shape), rms.reshape(particles, *shape),
                        row, col)
  return update.reshape(particles, *shape), new_acc


def tensor_update(cfg, mult: float, theta_mlp: dict, tfeats: jax.Array, decays: F.Decays,
                  g: jax.Array, p: jax.Array, acc: F.TensorAcc, *,
                  reference: Reference, interpret: bool):
  """Fused update of one tensor: ``(update, new_acc)``, as ``reference`` computes it.

  ``cfg`` supplies ``hidden_layers``, ``step_mult`` and ``exp_mult``; ``mult``
  is the tensor's static μP multiplier; ``reference`` is the XLA version,
  ``reference(theta_mlp, tfeats, decays, g, p, acc)``, used for the VJP.
  """
  shape = tuple(np.shape(p))
  fused = transforms.particle_vmap(
      functools.partial(_batched_update, cfg, shape, mult, interpret))
  return transforms.with_reference_vjp(fused, reference)(theta_mlp, tfeats, decays, g, p, acc)


def kernel_bytes_per_param(param_itemsize: int = 4) -> tuple[int, int]:
  """(low, high) bytes this path moves per parameter (see the module docstring);
  high assumes XLA reads g twice for the row and column means."""
  g = p = param_itemsize
  stage0 = g
  pass1 = g + p + 4 * 4 + 4 * 4
  pass2 = g + p + 4 * 4 + param_itemsize
  low = stage0 + pass1 + pass2
  return low, low + g

