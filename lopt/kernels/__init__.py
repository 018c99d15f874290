"""Fused Pallas kernels for learned-optimizer updates (GPU; interpret mode elsewhere).

``tensor_update`` is the fused per-tensor update of ``lopt.MLPLOpt`` (design,
bytes model, vmap and VJP rules in ``fused_update``); ``MLPLOpt(backend=...)``
selects it. ``adaptive_tensor_update`` is the one of ``lopt.AdaptiveLOpt``
(the shipped mulo-m form; ``fused_adaptive``), selected by
``AdaptiveLOpt(backend=...)`` for the step rules ``adaptive_supports``. The
XLA paths in ``lopt.mlp_lopt`` and ``lopt.adaptive`` stay the references.
"""

from __future__ import annotations

import jax

from lopt.kernels.fused_adaptive import adaptive_supports
from lopt.kernels.fused_adaptive import kernel_bytes_per_param as adaptive_bytes_per_param
from lopt.kernels.fused_adaptive import mean_free as adaptive_mean_free
from lopt.kernels.fused_adaptive import tensor_update as adaptive_tensor_update
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


__all__ = ["BACKENDS", "adaptive_bytes_per_param", "adaptive_mean_free", "adaptive_supports",
           "adaptive_tensor_update", "interpret_mode", "kernel_bytes_per_param", "supports",
           "tensor_update", "use_pallas"]
