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

``architectures()`` names the ones that can be saved, loaded and meta-trained;
``check_fields`` checks a config dataclass against its type hints (for
``lopt.pretrained``'s metadata and ``training.config``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import types
import typing
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

_FLOAT32_MAX = float(np.finfo(np.float32).max)


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


Fail = Callable[[str, str], Exception]  # (dotted field path, message) -> the error to raise


def show(value: Any) -> str:
  """``value`` for an error message: its repr (cut to 60 characters) and its type."""
  text = repr(value)
  return (text if len(text) <= 60 else text[:57] + "...") + f" ({type(value).__name__})"


def check_fields(obj: Any, fail: Fail, path: str = "",
                 bounds: dict[str, tuple[float, bool]] | None = None) -> None:
  """Check every field of the dataclass ``obj`` against its type hint (``check_value``)."""
  try:
    hints = typing.get_type_hints(type(obj))
  except Exception:  # noqa: BLE001 - unresolvable annotations: check what resolves
    hints = {}
  for field in dataclasses.fields(obj):
    if field.name in hints:
      check_value(getattr(obj, field.name), hints[field.name], path + field.name, fail, bounds)


def check_value(value: Any, hint: Any, path: str, fail: Fail,
                bounds: dict[str, tuple[float, bool]] | None = None) -> None:
  """Raise ``fail(path, message)`` unless ``value`` fits ``hint``.

  None only where the hint allows it; a bool is a bool (not 0 or "false"), a str
  is not blank, a number is finite, not a bool, and a float is representable in
  float32 (θ and training run in float32). An int is >= 0 and a number is within
  ``bounds[path]`` = (lower bound, whether it is allowed) where given. Nested
  dataclasses and tuples (of step rules) are checked field by field."""
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    if value is None and type(None) in typing.get_args(hint):
      return
    options = [a for a in typing.get_args(hint) if a is not type(None)]
    for option in options[1:]:  # a value of any one of them passes
      with contextlib.suppress(Exception):
        return check_value(value, option, path, fail, bounds)
    hint = options[0]  # ... and the first one's message explains a failure
  if value is None:
    raise fail(path, "must not be None.")
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    check_fields(value, fail, path + ".", bounds)
  elif dataclasses.is_dataclass(hint):
    raise fail(path, f"must be a {hint.__name__} record, got {show(value)}.")
  elif hint is bool and not isinstance(value, (bool, np.bool_)):
    raise fail(path, f"must be true or false, got {show(value)}.")
  elif hint is str and (not isinstance(value, str) or not value.strip()):
    raise fail(path, f"must be a non-empty string, got {show(value)}.")
  elif hint in (int, float):
    if isinstance(value, bool) or not isinstance(
        value, numbers.Integral if hint is int else numbers.Real):
      raise fail(path, f"must be {'an integer' if hint is int else 'a number'}, got {show(value)}.")
    if not math.isfinite(value):
      raise fail(path, f"must be finite, got {value!r}.")
    if hint is float and (abs(value) > _FLOAT32_MAX or (value != 0 and np.float32(value) == 0)):
      raise fail(path, "must be representable in float32 (finite in float32: |x| <= 3.4e38, and "
                 f"not rounding to 0 unless it is 0), got {value!r}.")
    low, inclusive = (bounds or {}).get(path, (0, True) if hint is int else (None, True))
    if low is not None and (value < low or (value == low and not inclusive)):
      raise fail(path, f"must be {'>=' if inclusive else '>'} {low}, got {value!r}.")
  elif hint is tuple or typing.get_origin(hint) is tuple:
    if not isinstance(value, tuple):
      raise fail(path, f"must be a list, got {show(value)}.")
    args = typing.get_args(hint)
    item_hint = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
    for i, item in enumerate(value):
      check_value(item, item_hint, f"{path}[{i}]", fail, bounds)
