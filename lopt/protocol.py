"""The learned-optimizer protocol: what meta-training and export rely on.

An LO is a frozen, hashable config (a jit static) whose weights θ are an
explicit argument, never state. ``MLPLOpt`` and ``VeLOpt`` implement it, and so
may any object with these methods (e.g. the benchmark's Adam-as-LO):

    theta = lo.init(key)                 # θ pytree
    lo.check_theta(theta)                # ValueError naming the tensor on a mismatch
    state = lo.init_state(params)
    updates, state = lo.update(theta, grads, state, params, num_steps=..., mup=..., loss=...)
    tx = lo.as_optax(theta, num_steps, mup)   # optax.GradientTransformationExtraArgs
    record = lo.to_record()              # JSON config; type(lo).from_record(record) == lo

``ARCHITECTURES`` names the ones that can be saved, loaded and meta-trained.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class LearnedOptimizer(Protocol):
  def init(self, key: Any) -> Any: ...

  def check_theta(self, theta: Any) -> None: ...

  def init_state(self, params: Any) -> Any: ...

  def update(self, theta: Any, grads: Any, state: Any, params: Any, *, num_steps: Any = None,
             mup: Any = None, loss: Any = None) -> tuple[Any, Any]: ...

  def as_optax(self, theta: Any, num_steps: int | None = None, mup: Any = None) -> Any: ...

  def to_record(self) -> dict[str, Any]: ...


def architectures() -> dict[str, type]:
  """Name (metadata.json ``architecture``, ``MetaTrainConfig.lo.architecture``) -> class."""
  from lopt.adaptive import AdaptiveLOpt
  from lopt.mlp_lopt import MLPLOpt
  from lopt.velo import VeLOpt
  return {"MLPLOpt": MLPLOpt, "VeLOpt": VeLOpt, "AdaptiveLOpt": AdaptiveLOpt}


def from_record(architecture: str, record: dict[str, Any]) -> LearnedOptimizer:
  """The LO of a config record (old flat MLPLOpt records are converted)."""
  archs = architectures()
  if architecture not in archs:
    raise ValueError(f"unknown architecture {architecture!r}; this lopt knows {sorted(archs)}.")
  return archs[architecture].from_record(record)
