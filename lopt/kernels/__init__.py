"""Fused Pallas kernels for learned-optimizer updates (GPU; interpret mode elsewhere).

``tensor_update`` is the fused per-tensor update of ``lopt.MLPLOpt`` (design,
bytes model, vmap and VJP rules in ``fused_update``); ``MLPLOpt(backend=...)``
selects it. The XLA path in ``lopt.mlp_lopt`` stays the reference.
"""

from __future__ import annotations

import jax

from lopt.kernels.fused_update import kernel_bytes_per_param, supports, tensor_update

BACKENDS = ("auto", "xla", "pallas")


def use_pallas(backend: str) -> bool:
  """Whether ``backend`` runs the Pallas kernels here ("auto": only on GPU)."""
  if backend not in BACKENDS:
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
  return backend == "pallas" or (backend == "auto" and jax.default_backend() == "gpu")


def interpret_mode() -> bool:
  """The kernels compile (Triton) only on GPU; elsewhere they run interpreted."""
  return jax.default_backend() != "gpu"


__all__ = ["BACKENDS", "interpret_mode", "kernel_bytes_per_param", "supports", "tensor_update",
           "use_pallas"]
