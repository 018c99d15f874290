"""μP metadata: which tensor is which, and the per-tensor step multipliers it implies.

The task (or the user) knows which tensors are input, hidden, output or vector;
the optimizer does not. A μP *spec* is a pytree with the same structure as the
params whose leaves are either

* a kind string: ``"input"``, ``"hidden"``, ``"output"``, ``"sp_output"`` or
  ``"vector"``;
* a ``Kind(kind, fan_in)``: a kind with an explicit fan-in (what ``infer_kinds``
  gives kernels whose fan-in is not ``prod(shape[:-1])``, e.g. attention q/k/v);
* a float: the multiplier to use for that tensor's step, as is.

``multipliers(spec, params)`` turns a spec into a pytree of Python floats using
the μLO rule: hidden matrices get ``1/fan_in``, everything else gets 1.

The two readouts. ``"output"`` is a μP readout: the *model* multiplies its
output by ``1/fan_in`` (``meta_tasks``' μP models do), so its step is not
scaled. ``"sp_output"`` is the readout of a plain model (``nn.Dense`` with no
output multiplier, what every standard flax model has): under μP for Adam-like
optimizers its step must shrink as ``1/fan_in`` like a hidden matrix's, so it
gets ``1/fan_in``. The two give identical function-space steps: a plain readout
``W' = W/fan_in`` stepped by ``s/fan_in`` moves the logits exactly as a μP
readout ``W`` stepped by ``s`` does.

``fan_in`` follows the flax layout, where the last axis is the output axis:
``fan_in = prod(shape[:-1])`` (Dense ``(in, out)``, Conv ``(h, w, in, out)``),
except flax attention's q/k/v ``DenseGeneral`` kernels ``(d_model, heads,
head_dim)``, whose contracting axis is the first alone (``ATTENTION_QKV``).
Use ``Kind(kind, fan_in)`` or a float leaf for a tensor stored in another layout.

For a user's own model there are two ways to get a spec:

* ``kinds_from_paths(params, rules)``: name the kinds by parameter path;
* ``infer_kinds(params, base_params)``: compare with a narrower copy of the
  model, as the ``mup`` library does. Axes whose size differs between the two
  are the "infinite" (width) axes.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

KINDS = ("input", "hidden", "output", "sp_output", "vector")
# Kinds whose step carries 1/fan_in, or (μP "output") whose base step is the
# hidden one: an LO may give them their own base step size (``step_groups``).
HIDDEN_LIKE = ("hidden", "output", "sp_output")
# Module names of flax attention projections whose DenseGeneral kernel is
# (d_model, heads, head_dim): the contracting (fan-in) axis is axis 0 alone.
ATTENTION_QKV = ("query", "key", "value")
# Leaf names that are vectors whatever their rank (flax attention's q/k/v
# biases are (heads, head_dim); LayerNorm/RMSNorm scales).
VECTOR_NAMES = ("bias", "scale")


class Kind(NamedTuple):
  """A kind with an explicit fan-in (for kernels not in ``(..., in, out)`` layout)."""
  kind: str
  fan_in: int


def _is_leaf(x: Any) -> bool:
  # Kind strings, Kind tuples and plain numbers are leaves; jax would treat str
  # as a leaf anyway, but being explicit keeps None out (an empty subtree).
  return isinstance(x, (str, int, float, Kind))


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


def _check_kind(kind: Any, path: str) -> None:
  if kind not in KINDS:
    raise ValueError(f"Unknown μP kind {kind!r} for {path or 'a tensor'}; "
                     f"valid kinds are {KINDS}, a Kind(kind, fan_in) or a positive "
                     "float multiplier.")


def multiplier_for(kind_or_value: Any, shape: tuple[int, ...], path: str = "") -> float:
  """The μLO step multiplier of one tensor."""
  if isinstance(kind_or_value, (int, float)) and not isinstance(kind_or_value, bool):
    value = float(kind_or_value)
    if not (value > 0 and math.isfinite(value)):
      raise ValueError(f"μP multiplier for {path or 'a tensor'} must be a "
                       f"positive finite float, got {kind_or_value!r}")
    return value
  kind, explicit_fan_in = ((kind_or_value.kind, kind_or_value.fan_in)
                           if isinstance(kind_or_value, Kind) else (kind_or_value, None))
  _check_kind(kind, path)
  if kind in ("hidden", "sp_output"):
    if explicit_fan_in is not None:
      if not (isinstance(explicit_fan_in, (int, np.integer)) and explicit_fan_in >= 1):
        raise ValueError(f"fan_in of {path or 'a tensor'} must be a positive int, "
                         f"got {explicit_fan_in!r}.")
      return 1.0 / int(explicit_fan_in)
    if len(shape) < 2:
      raise ValueError(f"{path or 'A tensor'} of shape {shape} is marked {kind!r} "
                       "but such tensors must be matrices or kernels (rank >= 2).")
    return 1.0 / fan_in(shape)
  return 1.0


def group_for(kind_or_value: Any) -> int:
  """1 for hidden-like tensors (``HIDDEN_LIKE``, or a float multiplier < 1), else 0."""
  if isinstance(kind_or_value, Kind):
    kind_or_value = kind_or_value.kind
  if isinstance(kind_or_value, str):
    return int(kind_or_value in HIDDEN_LIKE)
  return int(float(kind_or_value) < 1.0)


def multipliers(spec: Any, params: Any) -> Any:
  """Pytree of per-tensor step multipliers (Python floats) for ``params``."""
  _check_structure(spec, params)
  flat_spec = jax.tree_util.tree_leaves(spec, is_leaf=_is_leaf)
  flat_params, treedef = jax.tree_util.tree_flatten_with_path(params)
  out = [multiplier_for(s, tuple(np.shape(p)), jax.tree_util.keystr(path))
         for s, (path, p) in zip(flat_spec, flat_params)]
  return jax.tree_util.tree_unflatten(treedef, out)


def step_groups(spec: Any, params: Any) -> Any:
  """Pytree of ints: 1 where a tensor is hidden-like (its step carries 1/fan_in),
  0 for input and vector tensors. An LO can give each group its own base step:
  the μLO rule's absolute 1/fan_in makes the two groups' best base steps differ
  by about the base width."""
  _check_structure(spec, params)
  flat_spec = jax.tree_util.tree_leaves(spec, is_leaf=_is_leaf)
  treedef = jax.tree_util.tree_structure(params)
  return jax.tree_util.tree_unflatten(treedef, [group_for(s) for s in flat_spec])


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
    if (kind.kind if isinstance(kind, Kind) else kind) not in KINDS:
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


READOUTS = ("sp", "mup")


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def kernel_fan_in(path, shape: tuple[int, ...]) -> int:
  """Fan-in of a flax kernel from its path and shape: the size of its contracting
  axes. ``(..., in, out)`` kernels (Dense, Conv, attention ``out``) contract all
  but the last axis; flax attention's q/k/v kernels ``(d_model, heads,
  head_dim)`` contract axis 0 alone."""
  names = _path_names(path)
  if len(shape) >= 3 and len(names) >= 2 and names[-2] in ATTENTION_QKV:
    return int(shape[0])
  return fan_in(shape)


def infer_kinds(params: Any, base_params: Any, readout: str = "sp") -> Any:
  """Infer kinds by comparing ``params`` with a narrower copy, ``base_params``.

  Axes whose size differs are infinite (they grow with width). For a tensor of
  rank >= 2 in flax layout (last axis = output): fan-in and fan-out both
  infinite -> hidden; only fan-out -> input; only fan-in -> the readout; neither
  -> input (a fixed-size matrix is treated as an input layer, as in the ``mup``
  library). Rank < 2 tensors, and leaves named ``bias`` or ``scale`` (flax
  attention's ``(heads, head_dim)`` biases), are vectors. Fan-in is the size of
  the contracting axes (``kernel_fan_in``); where it is not ``prod(shape[:-1])``
  the leaf is a ``Kind(kind, fan_in)``.

  ``readout``: ``"sp"`` (default: a plain flax readout with no output
  multiplier, as in any standard model) marks the readout ``"sp_output"``,
  whose step gets 1/fan_in; ``"mup"`` marks it ``"output"`` (unscaled) for a
  model that multiplies its readout's output by 1/fan_in itself. Getting this
  wrong on a plain model makes the readout's step fan_in times too large.
  """
  if readout not in READOUTS:
    raise ValueError(f"readout must be one of {READOUTS} ('sp': a plain readout, as in "
                     f"standard flax models; 'mup': the model multiplies the readout's "
                     f"output by 1/fan_in), got {readout!r}.")
  _check_structure(base_params, params, what="base params")
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  base_flat = jax.tree_util.tree_leaves(base_params)
  kinds, any_width_axis = [], False
  for (path, p), b in zip(flat, base_flat):
    shape, base_shape = tuple(np.shape(p)), tuple(np.shape(b))
    name = jax.tree_util.keystr(path)
    if len(shape) != len(base_shape):
      raise ValueError(f"{name}: rank differs between params {shape} and base params "
                       f"{base_shape}.")
    any_width_axis |= shape != base_shape
    names = _path_names(path)
    if len(shape) < 2 or (names and names[-1] in VECTOR_NAMES):
      kinds.append("vector")
      continue
    fi, base_fi = kernel_fan_in(path, shape), kernel_fan_in(path, base_shape)
    in_inf = fi != base_fi
    out_inf = math.prod(shape) // fi != math.prod(base_shape) // base_fi
    kind = ("hidden" if in_inf and out_inf else
            ("sp_output" if readout == "sp" else "output") if in_inf else "input")
    kinds.append(Kind(kind, fi) if fi != fan_in(shape) else kind)
  if flat and not any_width_axis:
    raise ValueError(
        "infer_kinds: params and base_params have the same shapes everywhere, so no axis "
        "grows with width and every matrix would be marked 'input' (no μP scaling). Pass "
        "as base_params a copy of the model built with a *narrower* width (e.g. width 32), "
        "or name the kinds with lopt.mup.kinds_from_paths.")
  return jax.tree_util.tree_unflatten(treedef, kinds)
