"""μP metadata: which tensor is which, and the per-tensor step multipliers it implies.

The task (or the user) knows which tensors are input, hidden, output or vector;
the optimizer does not. A μP *spec* is a pytree with the same structure as the
params whose leaves are either

* a kind string: ``"input"``, ``"hidden"``, ``"output"`` or ``"vector"``;
* a float: the multiplier to use for that tensor's step, as is.

``multipliers(spec, params)`` turns a spec into a pytree of Python floats using
the μLO rule: hidden matrices get ``1/fan_in``, everything else gets 1.

``fan_in`` follows the flax layout, where the last axis is the output axis:
``fan_in = prod(shape[:-1])`` (Dense ``(in, out)``, Conv ``(h, w, in, out)``).
Use a float leaf for a tensor stored in another layout.

For a user's own model there are two ways to get a spec:

* ``kinds_from_paths(params, rules)``: name the kinds by parameter path;
* ``infer_kinds(params, base_params)``: compare with a narrower copy of the
  model, as the ``mup`` library does. Axes whose size differs between the two
  are the "infinite" (width) axes.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import jax
import numpy as np

KINDS = ("input", "hidden", "output", "vector")


def _is_leaf(x: Any) -> bool:
  # Kind strings and plain numbers are leaves; jax would treat str as a leaf
  # anyway, but being explicit keeps None out (None is an empty subtree).
  return isinstance(x, (str, int, float))


def fan_in(shape: tuple[int, ...]) -> int:
  """Fan-in of a kernel stored with the output axis last (flax layout)."""
  if len(shape) < 2:
    raise ValueError(f"fan_in needs a tensor of rank >= 2, got shape {shape}")
  return int(math.prod(shape[:-1]))


def _check_structure(spec: Any, params: Any, what: str = "μP spec") -> None:
  spec_def = jax.tree_util.tree_structure(spec, is_leaf=_is_leaf)
  params_def = jax.tree_util.tree_structure(params)
  if spec_def != params_def:
    raise ValueError(
        f"The {what} does not have the same tree structure as the params.\n"
        f"  spec:   {spec_def}\n  params: {params_def}\n"
        "Build it with lopt.mup.kinds_from_paths(params, rules) or "
        "lopt.mup.infer_kinds(params, base_params), or pass mup=None for "
        "no μP scaling.")


def multiplier_for(kind_or_value: Any, shape: tuple[int, ...], path: str = "") -> float:
  """The μLO step multiplier of one tensor."""
  if isinstance(kind_or_value, (int, float)) and not isinstance(kind_or_value, bool):
    value = float(kind_or_value)
    if not (value > 0 and math.isfinite(value)):
      raise ValueError(f"μP multiplier for {path or 'a tensor'} must be a "
                       f"positive finite float, got {kind_or_value!r}")
    return value
  if kind_or_value not in KINDS:
    raise ValueError(f"Unknown μP kind {kind_or_value!r} for {path or 'a tensor'}; "
                     f"valid kinds are {KINDS} or a positive float multiplier.")
  if kind_or_value == "hidden":
    if len(shape) < 2:
      raise ValueError(f"{path or 'A tensor'} of shape {shape} is marked 'hidden' "
                       "but hidden tensors must be matrices or kernels (rank >= 2).")
    return 1.0 / fan_in(shape)
  return 1.0


def multipliers(spec: Any, params: Any) -> Any:
  """Pytree of per-tensor step multipliers (Python floats) for ``params``."""
  _check_structure(spec, params)
  flat_spec = jax.tree_util.tree_leaves(spec, is_leaf=_is_leaf)
  flat_params, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = [multiplier_for(s, tuple(np.shape(p)), jax.tree_util.keystr(path))
         for s, (path, p) in zip(flat_spec, flat_params)]
  return jax.tree_util.tree_unflatten(treedef, out)


def kinds_from_paths(params: Any, rules: Mapping[str, str] | list[tuple[str, str]],
                     default: str | None = None) -> Any:
  """Assign kinds by matching regexes against each parameter's path.

  ``rules`` maps a regex (searched in ``jax.tree_util.keystr(path)``, e.g.
  ``"['Dense_0']['kernel']"``) to a kind; the first match wins. Tensors that
  match no rule get ``default``; with ``default=None`` rank<2 tensors become
  ``"vector"`` and any unmatched matrix is an error, so nothing is guessed.
  """
  items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
  for _, kind in items:
    if kind not in KINDS:
      raise ValueError(f"Unknown μP kind {kind!r} in rules; valid kinds are {KINDS}.")
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  kinds = []
  for path, p in flat:
    name = jax.tree_util.keystr(path)
    kind = next((k for pat, k in items if re.search(pat, name)), default)
    if kind is None:
      if np.ndim(p) < 2:
        kind = "vector"
      else:
        raise ValueError(f"No μP rule matches the matrix {name} of shape {np.shape(p)}; "
                         "add a rule for it or pass default=.")
    kinds.append(kind)
  return jax.tree_util.tree_unflatten(treedef, kinds)


def infer_kinds(params: Any, base_params: Any) -> Any:
  """Infer kinds by comparing ``params`` with a narrower copy, ``base_params``.

  Axes whose size differs are infinite (they grow with width). For a tensor of
  rank >= 2 in flax layout (last axis = output):
  fan-in and fan-out both infinite -> hidden; only fan-out -> input;
  only fan-in -> output; neither -> input (a fixed-size matrix is treated as
  an input layer, as in the ``mup`` library). Rank < 2 tensors are vectors.
  """
  _check_structure(base_params, params, what="base params")
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  base_flat = jax.tree_util.tree_leaves(base_params)
  kinds = []
  for (path, p), b in zip(flat, base_flat):
    shape, base_shape = tuple(np.shape(p)), tuple(np.shape(b))
    if len(shape) != len(base_shape):
      raise ValueError(f"{jax.tree_util.keystr(path)}: rank differs between params "
                       f"{shape} and base params {base_shape}.")
    if len(shape) < 2:
      kinds.append("vector")
      continue
    in_inf = shape[:-1] != base_shape[:-1]
    out_inf = shape[-1] != base_shape[-1]
    kinds.append("hidden" if in_inf and out_inf else "output" if in_inf else "input")
  return jax.tree_util.tree_unflatten(treedef, kinds)
