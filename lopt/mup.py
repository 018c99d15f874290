"""μP metadata: which tensor is which, and the per-tensor step multipliers it implies.

The task (or the user) knows which tensors are input, hidden, output or vector;
the optimizer does not. A μP *spec* is a pytree with the same structure as the
params whose leaves are either

* a kind string: ``"input"``, ``"embedding"``, ``"hidden"``, ``"output"``,
  ``"sp_output"`` or ``"vector"`` (``"embedding"``: an input matrix read by
  lookup, e.g. ``nn.Embed``'s table or a positional table; it is ``"input"``
  in every respect but the data-dimension rule below);
* a ``Kind(kind, fan_in, scale=1.0)``: a kind with an explicit fan-in (what
  ``infer_kinds`` gives kernels whose fan-in is not ``prod(shape[:-1])``, e.g.
  attention q/k/v) and an extra factor on its step (attention q/k, below);
* a float: the multiplier to use for that tensor's step, as is.

``multipliers(spec, params)`` turns a spec into a pytree of Python floats using
the μLO rule: hidden matrices get ``1/fan_in``, everything else gets 1 (times a
``Kind``'s ``scale``).

The data dimension. μP holds the input dimension d fixed, so it gives input
matrices one step for every width. Across tasks d varies (4 inputs on iris,
64 on 8x8 digits), and Adam's sign-like update moves a dense input layer's
pre-activations by about lr·Σ|xᵢ| ∝ d, as it moves a hidden layer's by
lr·fan_in. ``multipliers(..., input_fan_in=R)`` applies μP's 1/fan_in to
them as well: ``"input"`` matrices get ``R / fan_in``. ``"embedding"``
matrices keep 1: their input is one-hot, one row moves per token.

Attention. μP scales attention logits by ``1/head_dim`` (q.k grows like
head_dim once q and k are correlated); flax's attention, as users write it,
scales by ``1/sqrt(head_dim)``, so the logits move ``sqrt(head_dim)`` times
more per step of q or k than in the μP models the learned optimizers are
meta-trained on. ``infer_kinds`` (``attention="sqrt"``, the default) gives the
query and key kernels ``scale = 1/sqrt(head_dim)``, which makes the logits'
first-order change per step the μP one (``attention="mup"``: a model that
scales by ``1/head_dim`` itself; no extra factor).

Recurrent kernels. A hidden-to-hidden kernel of an RNN cell is applied at
each of the T steps of a sequence: a weight tied across T layers of the
unrolled network. Adam-like updates normalize its summed gradient, so one
update moves the output up to T times (coherent steps) or √T times
(independent ones) as much as the same update of an untied layer, and μP's
1/fan_in counts one application. ``infer_kinds(..., recurrent_steps=T)``
gives flax's cells' recurrent kernels (``RECURRENT_NAMES``) ``scale =
1/sqrt(T)`` (docs/meta-training-runs.md, "Recurrent models"); without it
``infer_kinds`` warns when it sees them.

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

flax NNX: every function here also takes an ``nnx.State`` (whose leaves are
``nnx.Param`` variables or raw arrays) and ``infer_kinds`` takes the NNX
modules themselves. Variables are unwrapped to their values and a spec is
matched to the params by parameter path, so one spec works whether the params
arrive wrapped or not (``nnx.Optimizer`` passes ``State``s of variables to
``init`` and of raw arrays to ``update``), and whatever the container type
(``State`` or the dict of ``nnx.to_pure_dict``). flax is never imported here:
NNX objects can only exist once the user has imported ``flax.nnx``.
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

KINDS = ("input", "embedding", "hidden", "output", "sp_output", "vector")
# Kinds whose step carries 1/fan_in, or (μP "output") whose base step is the
# hidden one: an LO may give them their own base step size (``step_groups``).
HIDDEN_LIKE = ("hidden", "output", "sp_output")
# Module names of flax attention projections whose DenseGeneral kernel is
# (d_model, heads, head_dim): the contracting (fan-in) axis is axis 0 alone.
ATTENTION_QKV = ("query", "key", "value")
# Leaf names that are vectors whatever their rank (flax attention's q/k/v
# biases are (heads, head_dim); LayerNorm/RMSNorm scales).
VECTOR_NAMES = ("bias", "scale")
# Leaf names of dense layers' weights (flax linen's and NNX's Dense, Conv,
# DenseGeneral). An input-like matrix with another name (``Embed``'s
# "embedding", a positional table made with ``self.param``) is a lookup
# table: ``infer_kinds`` marks it "embedding", which keeps μP's input step.
DENSE_NAMES = ("kernel",)


class Kind(NamedTuple):
  """A kind with an explicit fan-in (for kernels not in ``(..., in, out)``
  layout) and an extra factor on the tensor's step (``scale``)."""
  kind: str
  fan_in: int
  scale: float = 1.0


def _is_leaf(x: Any) -> bool:
  # Kind strings, Kind tuples and plain numbers are leaves; jax would treat str
  # as a leaf anyway, but being explicit keeps None out (an empty subtree).
  return isinstance(x, (str, int, float, Kind))


def fan_in(shape: tuple[int, ...]) -> int:
  """Fan-in of a kernel stored with the output axis last (flax layout)."""
  if len(shape) < 2:
    raise ValueError(f"fan_in needs a tensor of rank >= 2, got shape {shape}")
  return int(math.prod(shape[:-1]))


# ---------------------------------------------------------------- flax NNX
def _nnx():
  """``flax.nnx`` if it is already imported (NNX objects cannot exist otherwise)."""
  return sys.modules.get("flax.nnx")


def _variable_types() -> tuple[type, ...]:
  nnx = _nnx()
  if nnx is None:
    return ()
  # vars(), not getattr: flax 0.12 keeps VariableState as a deprecated alias
  # whose attribute access warns; older flax had it as a separate class.
  found = [vars(nnx).get("Variable"), vars(nnx).get("VariableState")]
  return tuple({t for t in found if isinstance(t, type)})


def _variable_value(v: Any) -> Any:
  get = getattr(v, "get_value", None)
  return get() if callable(get) else v.value


def has_variables(tree: Any) -> bool:
  """Whether any node of ``tree`` is an NNX variable."""
  types = _variable_types()
  if not types:
    return False
  is_var = lambda x: isinstance(x, types)
  return any(is_var(x) for x in jax.tree_util.tree_leaves(tree, is_leaf=is_var))


def unwrap(tree: Any, is_leaf: Any = None) -> Any:
  """``tree`` with every NNX variable replaced by its value (containers such as
  ``nnx.State`` are kept). The identity when flax NNX is not in use."""
  types = _variable_types()
  if not types:
    return tree
  is_var = lambda x: isinstance(x, types)
  leaf = is_var if is_leaf is None else (lambda x: is_var(x) or is_leaf(x))
  return jax.tree_util.tree_map(lambda x: _variable_value(x) if is_var(x) else x,
                                tree, is_leaf=leaf)


def rewrap(like: Any, tree: Any) -> Any:
  """The leaves of ``tree`` (an unwrapped copy of ``like``) back in ``like``'s
  structure, variables included: what a transformation that unwrapped its
  inputs returns, so its updates have the structure of its gradients."""
  if not has_variables(like):
    return tree
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                      jax.tree_util.tree_leaves(tree))


def _is_module(x: Any) -> bool:
  nnx = _nnx()
  return nnx is not None and isinstance(x, nnx.Module)


def as_params(tree_or_model: Any) -> Any:
  """Params as a pytree of arrays: an NNX module gives ``nnx.state(m, nnx.Param)``;
  NNX variables are unwrapped."""
  if _is_module(tree_or_model):
    tree_or_model = _nnx().state(tree_or_model, _nnx().Param)
  return unwrap(tree_or_model)


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]


def _show(paths, limit: int = 5) -> str:
  shown = ["".join(f"[{n!r}]" for n in p) for p in paths[:limit]]
  more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
  return ", ".join(shown) + more if shown else "none"


def _align(spec: Any, params: Any, what: str = "μP spec"):
  """Match ``spec``'s leaves to ``params``'s, by tree structure or else by
  parameter path (ignoring NNX variable wrappers and the container types).

  Returns ``(spec_leaves, params_flat_with_path, params_treedef)`` with the spec
  leaves in the order of the (unwrapped) params' leaves."""
  spec = as_params(spec) if _is_module(spec) else unwrap(spec, _is_leaf)
  params = as_params(params)
  flat_spec = jax.tree_util.tree_flatten_with_path(spec, is_leaf=_is_leaf)[0]
  flat_params, treedef = jax.tree_util.tree_flatten_with_path(params)
  if jax.tree_util.tree_structure(spec, is_leaf=_is_leaf) == treedef:
    return [s for _, s in flat_spec], flat_params, treedef
  def keys(flat):  # a spec of linen's {"params": ...} also fits the inner tree
    paths = [tuple(_path_names(p)) for p, _ in flat]
    return [k[1:] for k in paths] if paths and all(k[:1] == ("params",) for k in paths) else paths

  by_path = dict(zip(keys(flat_spec), (s for _, s in flat_spec)))
  want_keys = keys(flat_params)
  if len(by_path) == len(flat_spec) and set(by_path) == set(want_keys) \
      and len(set(want_keys)) == len(want_keys):
    return [by_path[k] for k in want_keys], flat_params, treedef
  want_set = set(want_keys)
  missing = [k for k in want_keys if k not in by_path]
  extra = [k for k in by_path if k not in want_set]
  raise ValueError(
      f"The {what} does not have the same tree structure as the params.\n"
      f"  params without a {what} entry: {_show(missing)}\n"
      f"  {what} entries that are not params: {_show(extra)}\n"
      "Build it with lopt.mup.kinds_from_paths(params, rules) or "
      "lopt.mup.infer_kinds(params, base_params) from the same params the optimizer "
      "gets (for flax NNX: nnx.state(model, nnx.Param), or pass the modules to "
      "infer_kinds), or pass mup=None for no μP scaling.")


def multiplier_for(kind_or_value: Any, shape: tuple[int, ...], path: str = "",
                   input_fan_in: float | None = None) -> float:
  """The μLO step multiplier of one tensor (``input_fan_in``: the module docstring)."""
  if isinstance(kind_or_value, (int, float)) and not isinstance(kind_or_value, bool):
    value = float(kind_or_value)
    if not (value > 0 and math.isfinite(value)):
      raise ValueError(f"μP multiplier for {path or 'a tensor'} must be a "
                       f"positive finite float, got {kind_or_value!r}")
    return value
  kind, explicit_fan_in, scale = ((kind_or_value.kind, kind_or_value.fan_in, kind_or_value.scale)
                                  if isinstance(kind_or_value, Kind) else (kind_or_value, None, 1.0))
  if not (isinstance(scale, (int, float, np.floating)) and scale > 0 and math.isfinite(scale)):
    raise ValueError(f"Kind scale of {path or 'a tensor'} must be a positive finite float, "
                     f"got {scale!r}.")
  return float(scale) * _kind_multiplier(kind, explicit_fan_in, shape, path, input_fan_in)


def _kind_multiplier(kind: str, explicit_fan_in: Any, shape: tuple[int, ...], path: str,
                     input_fan_in: float | None = None) -> float:
  if kind not in KINDS:
    raise ValueError(f"Unknown μP kind {kind!r} for {path or 'a tensor'}; "
                     f"valid kinds are {KINDS}, a Kind(kind, fan_in) or a positive "
                     "float multiplier.")
  per_fan_in = (1.0 if kind in ("hidden", "sp_output") else
                input_fan_in if kind == "input" and len(shape) >= 2 else None)
  if per_fan_in is None:
    return 1.0
  if explicit_fan_in is not None:
    if not (isinstance(explicit_fan_in, (int, np.integer)) and explicit_fan_in >= 1):
      raise ValueError(f"fan_in of {path or 'a tensor'} must be a positive int, "
                       f"got {explicit_fan_in!r}.")
    return per_fan_in / int(explicit_fan_in)
  if len(shape) < 2:
    raise ValueError(f"{path or 'A tensor'} of shape {shape} is marked {kind!r} "
                     "but such tensors must be matrices or kernels (rank >= 2).")
  return per_fan_in / fan_in(shape)


def group_for(kind_or_value: Any) -> int:
  """1 for hidden-like tensors (``HIDDEN_LIKE``, or a float multiplier < 1), else 0."""
  if isinstance(kind_or_value, Kind):
    kind_or_value = kind_or_value.kind
  if isinstance(kind_or_value, str):
    return int(kind_or_value in HIDDEN_LIKE)
  return int(float(kind_or_value) < 1.0)


def multipliers(spec: Any, params: Any, input_fan_in: float | None = None) -> Any:
  """Pytree of per-tensor step multipliers (Python floats) for ``params``, in
  the structure of ``params`` with NNX variables unwrapped; ``input_fan_in``
  R gives ``"input"`` matrices R / fan_in (the module docstring)."""
  flat_spec, flat_params, treedef = _align(spec, params)
  out = [multiplier_for(s, tuple(np.shape(p)), jax.tree_util.keystr(path), input_fan_in)
         for s, (path, p) in zip(flat_spec, flat_params)]
  return jax.tree_util.tree_unflatten(treedef, out)


def step_groups(spec: Any, params: Any) -> Any:
  """Pytree of ints: 1 where a tensor is hidden-like (its step carries 1/fan_in),
  0 for input and vector tensors. An LO can give each group its own base step:
  the μLO rule's absolute 1/fan_in makes the two groups' best base steps differ
  by about the base width."""
  flat_spec, _, treedef = _align(spec, params)
  return jax.tree_util.tree_unflatten(treedef, [group_for(s) for s in flat_spec])


def kinds_from_paths(params: Any, rules: Mapping[str, str] | list[tuple[str, str]],
                     default: str | None = None) -> Any:
  """Assign kinds by matching regexes against each parameter's path.

  ``rules`` maps a regex (searched in ``jax.tree_util.keystr(path)``, e.g.
  ``"['Dense_0']['kernel']"``) to a kind; the first match wins. Tensors that
  match no rule get ``default``; with ``default=None`` rank<2 tensors become
  ``"vector"`` and any unmatched matrix is an error, so nothing is guessed.
  ``params`` may be an NNX module or ``nnx.State`` (paths then read
  ``"['linear1']['kernel']"``, without the variable wrapper).
  """
  items = list(rules.items()) if isinstance(rules, Mapping) else list(rules)
  for _, kind in items:
    if (kind.kind if isinstance(kind, Kind) else kind) not in KINDS:
      raise ValueError(f"Unknown μP kind {kind!r} in rules; valid kinds are {KINDS}.")
  flat, treedef = jax.tree_util.tree_flatten_with_path(as_params(params))
  kinds = []
  for path, p in flat:
    name = jax.tree_util.keystr(path)
    kind = next((k for pat, k in items if re.search(pat, name)), default)
    if kind is None and np.ndim(p) >= 2:
      raise ValueError(f"No μP rule matches the matrix {name} of shape {np.shape(p)}; "
                       "add a rule for it or pass default=.")
    kinds.append("vector" if kind is None else kind)
  return jax.tree_util.tree_unflatten(treedef, kinds)


READOUTS = ("sp", "mup")
ATTENTION_SCALINGS = ("sqrt", "mup")
# flax attention projections whose step gets 1/sqrt(head_dim) under attention="sqrt".
ATTENTION_QK = ("query", "key")
# Module names of flax's RNN cells' hidden-to-hidden dense layers: linen's
# LSTMCell/OptimizedLSTMCell (hi, hf, hg, ho), GRUCell (hr, hz, hn), MGUCell
# (hf, hn), ConvLSTMCell (hh), and NNX's cells (hi, hf, hg, ho; dense_h).
RECURRENT_NAMES = ("hi", "hf", "hg", "ho", "hr", "hz", "hn", "hh", "dense_h")


def kernel_fan_in(path, shape: tuple[int, ...], contracting: int | None = None) -> int:
  """Fan-in of a flax kernel from its path and shape: the size of its contracting
  axes. ``contracting``, when known (an NNX ``LinearGeneral``'s
  ``len(in_features)``), is the number of leading contracting axes. Otherwise:
  ``(..., in, out)`` kernels (Dense, Conv, attention ``out``) contract all but
  the last axis; flax attention's q/k/v kernels ``(d_model, heads, head_dim)``
  contract axis 0 alone."""
  if contracting is not None:
    if not 1 <= contracting < len(shape):
      raise ValueError(f"kernel {jax.tree_util.keystr(tuple(path)) if path else ''} of shape "
                       f"{shape} cannot have {contracting} contracting axes.")
    return int(math.prod(shape[:contracting]))
  names = _path_names(path)
  if len(shape) >= 3 and len(names) >= 2 and names[-2] in ATTENTION_QKV:
    return int(shape[0])
  return fan_in(shape)


def _check_recurrent(found: list[list[str]], recurrent_steps: int | None) -> None:
  """Warn about recurrent kernels given no sequence length; refuse a sequence
  length that finds none."""
  if found and recurrent_steps is None:
    warnings.warn(
        f"infer_kinds: {_show(found)} look like the recurrent kernels of flax RNN cells. "
        "Each is applied once per time step, so a step sized for one layer moves the output "
        "several times as much: pass recurrent_steps=T (your sequence length) to give them "
        "the step x 1/sqrt(T).", stacklevel=3)
  if recurrent_steps is not None and not found:
    raise ValueError(
        f"infer_kinds: recurrent_steps={recurrent_steps} was given but no recurrent kernel "
        f"was recognized (hidden kernels of modules named {RECURRENT_NAMES}). For a cell of "
        "your own, mark its hidden-to-hidden kernels Kind('hidden', fan_in, T ** -0.5), "
        "or leave recurrent_steps out.")


def _contracting_axes(model: Any) -> dict[tuple[str, ...], int]:
  """For an NNX module: kernel path -> number of contracting axes, for every
  ``nnx.LinearGeneral`` in it (its kernel is ``(*in_features, *out_features)``)."""
  nnx = _nnx()
  if not _is_module(model) or not hasattr(nnx, "iter_graph"):
    return {}
  general = getattr(nnx, "LinearGeneral", None)
  out = {}
  for path, node in nnx.iter_graph(model):
    if general is not None and isinstance(node, general):
      in_features = getattr(node, "in_features", None)
      if isinstance(in_features, (tuple, list)) and in_features:
        out[tuple(str(k) for k in path) + ("kernel",)] = len(in_features)
  return out


def infer_kinds(params: Any, base_params: Any, readout: str = "sp",
                attention: str = "sqrt", recurrent_steps: int | None = None) -> Any:
  """Infer kinds by comparing ``params`` with a narrower copy, ``base_params``.

  Both may be param pytrees (linen ``variables`` or ``variables["params"]``),
  ``nnx.State``s, or flax NNX modules (their ``nnx.Param`` state is used, and
  each ``nnx.LinearGeneral``'s ``in_features`` gives its kernel's fan-in).

  Axes whose size differs are infinite (they grow with width). For a tensor of
  rank >= 2 in flax layout (last axis = output): fan-in and fan-out both
  infinite -> hidden; only fan-out -> input; only fan-in -> the readout; neither
  -> input (a fixed-size matrix is treated as an input layer, as in the ``mup``
  library); an input-like leaf not named ``kernel`` (``DENSE_NAMES``: an
  ``Embed`` table, a positional table) is ``"embedding"``. Rank < 2 tensors, and leaves named ``bias`` or ``scale`` (flax
  attention's ``(heads, head_dim)`` biases), are vectors. Fan-in is the size of
  the contracting axes (``kernel_fan_in``); where it is not ``prod(shape[:-1])``
  the leaf is a ``Kind(kind, fan_in)``. A linen ``DenseGeneral`` with several
  output axes that is not an attention q/k/v projection cannot be recognized
  from its params: give its kind with ``Kind(kind, fan_in)`` yourself.

  ``readout``: ``"sp"`` (default: a plain flax readout with no output
  multiplier, as in any standard model) marks the readout ``"sp_output"``,
  whose step gets 1/fan_in; ``"mup"`` marks it ``"output"`` (unscaled) for a
  model that multiplies its readout's output by 1/fan_in itself. Getting this
  wrong on a plain model makes the readout's step fan_in times too large.

  ``attention``: ``"sqrt"`` (default: flax's attention, logits scaled by
  1/sqrt(head_dim)) gives flax attention's query and key kernels
  ``Kind("hidden", fan_in, 1/sqrt(head_dim))`` (see the module docstring);
  ``"mup"``, for a model that scales its logits by 1/head_dim, does not.

  ``recurrent_steps``: the sequence length T of an RNN. Hidden kernels of
  flax's RNN cells (their module named in ``RECURRENT_NAMES``) become
  ``Kind("hidden", fan_in, 1/sqrt(T))`` (see the module docstring). Without
  it such kernels stay plain hidden matrices and a warning names them; with
  it and none found, a ValueError (mark a cell of your own with ``Kind``).

  Raises if no axis differs (``base_params`` is not narrower): every matrix
  would silently be an input layer, with no μP scaling at all.
  """
  if readout not in READOUTS:
    raise ValueError(f"readout must be one of {READOUTS} ('sp': a plain readout, as in "
                     f"standard flax models; 'mup': the model multiplies the readout's "
                     f"output by 1/fan_in), got {readout!r}.")
  if attention not in ATTENTION_SCALINGS:
    raise ValueError(f"attention must be one of {ATTENTION_SCALINGS} ('sqrt': flax's default "
                     f"1/sqrt(head_dim) logit scaling; 'mup': the model scales logits by "
                     f"1/head_dim), got {attention!r}.")
  if recurrent_steps is not None and (isinstance(recurrent_steps, bool) or not isinstance(
      recurrent_steps, (int, np.integer)) or recurrent_steps < 1):
    raise ValueError(f"recurrent_steps must be the sequence length, a positive int, got "
                     f"{recurrent_steps!r}.")
  contracting = _contracting_axes(params)
  base_contracting = _contracting_axes(base_params)
  base_flat, flat, treedef = _align(base_params, params, what="base params")
  kinds, any_width_axis, recurrent = [], False, []
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
    key = tuple(names)
    fi = kernel_fan_in(path, shape, contracting.get(key))
    base_fi = kernel_fan_in(path, base_shape, base_contracting.get(key, contracting.get(key)))
    in_inf = fi != base_fi
    out_inf = math.prod(shape) // fi != math.prod(base_shape) // base_fi
    kind = ("hidden" if in_inf and out_inf else
            ("sp_output" if readout == "sp" else "output") if in_inf else
            "input" if names and names[-1] in DENSE_NAMES else "embedding")
    scale = (float(shape[-1]) ** -0.5 if attention == "sqrt" and len(shape) >= 3
             and len(names) >= 2 and names[-2] in ATTENTION_QK and kind == "hidden" else 1.0)
    if kind == "hidden" and len(names) >= 2 and names[-2] in RECURRENT_NAMES:
      recurrent.append(names)
      if recurrent_steps is not None:
        scale *= float(recurrent_steps) ** -0.5
    kinds.append(Kind(kind, fi, scale) if fi != fan_in(shape) or scale != 1.0 else kind)
  _check_recurrent(recurrent, recurrent_steps)
  if flat and not any_width_axis:
    raise ValueError(
        "infer_kinds: params and base_params have the same shapes everywhere, so no axis "
        "grows with width and every matrix would be marked 'input' (no μP scaling). Pass "
        "as base_params a copy of the model built with a *narrower* width (e.g. width 32), "
        "or name the kinds with lopt.mup.kinds_from_paths.")
  return jax.tree_util.tree_unflatten(treedef, kinds)
