"""The μP spec an optimizer gets for a task: the user's path where there is one.

Built-in ``meta_tasks`` models name their layers, so their ``task.kinds`` is
exact. The plain flax models of ``meta_tasks.user_tasks`` know nothing about
μP; for them the spec is what a user would compute,
``lopt.mup.infer_kinds(params, narrow params)``, from ``task.narrow_task()``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

import lopt


@functools.lru_cache(maxsize=None)
def optimizer_spec(task: Any) -> Any:
  """Tensor kinds for a learned optimizer (for SP tasks too: a μP LO still
  scales hidden matrices and plain readouts by 1/fan_in; an SP LO ignores it)."""
  narrow = getattr(task, "narrow_task", None)
  if narrow is None:
    return task.kinds
  shapes = lambda t: jax.eval_shape(t.init, jax.random.PRNGKey(0))
  return lopt.mup.infer_kinds(shapes(task), shapes(narrow()))


def baseline_spec(task: Any) -> Any:
  """Spec for μAdam-style baselines: the μP kinds of a μP task, the inferred
  ones of a plain model, None (plain Adam) for meta_tasks' SP models."""
  if getattr(task, "narrow_task", None) is not None:
    return optimizer_spec(task)
  return task.mup
