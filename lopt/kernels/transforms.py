"""The vmap and VJP rules every fused LO update shares.

``particle_vmap``: vmap over particles (meta-training's θ±ε) runs the kernels
once, with the particle axis as the grid's first axis, instead of JAX's
generic batching of ``pallas_call``. The function is written once, batched:
``batched_fn(particles, batched, *args)`` gets each argument with a leading
particle axis where ``batched`` (a bool per leaf) says so, and without it
where the operand is shared by every particle (the kernels then read it
through an index map that always picks particle 0: nothing is broadcast in
memory). An unbatched call is the batched one with P = 1.

``with_reference_vjp``: the forward pass runs the kernels, the backward pass
is the VJP of the XLA reference at the same inputs, so gradients wrt θ equal
the XLA path's. Forward-mode AD is not supported through it.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

BatchedFn = Callable[..., Any]   # (particles, batched flags, *args) -> outputs, each [P, ...]


def particle_vmap(batched_fn: BatchedFn) -> Callable[..., Any]:
  """``fn(*args)`` that runs ``batched_fn`` with P = 1, and under ``jax.vmap``
  with P = the mapped axis size (every output is batched)."""
  tree_map = jax.tree_util.tree_map

  def single(*args):
    lead = tree_map(lambda x: x[None], args)
    out = batched_fn(1, tree_map(lambda _: True, args), *lead)
    return tree_map(lambda x: x[0], out)

  fn = jax.custom_batching.custom_vmap(single)

  @fn.def_vmap
  def _vmap_rule(axis_size, in_batched, *args):
    out = batched_fn(axis_size, tuple(in_batched), *args)
    return out, tree_map(lambda _: True, out)

  return fn


def with_reference_vjp(fn: Callable[..., Any], reference: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` (the kernels) with the VJP of ``reference`` (same signature, XLA)."""

  @jax.custom_vjp
  def differentiable(*args):
    return fn(*args)

  def fwd(*args):
    return fn(*args), args

  def bwd(args, cotangent):
    _, vjp = jax.vjp(reference, *args)
    return vjp(cotangent)

  differentiable.defvjp(fwd, bwd)
  return differentiable
