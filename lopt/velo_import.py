"""Load VeLO weights in the reference library's format into a ``VeLOpt`` θ.

The reference is google/learned_optimization's ``HyperV2``
(``research/general_lopt/hyper_v2.py``); its published VeLO checkpoints are
``flax.serialization.to_bytes`` of ``ParameterCheckpoint(params=θ, gen_id, step)``
(older ones: of the tuple ``(θ, gen_id, step)``), i.e. a flax msgpack of
nested dicts. θ is a haiku parameter tree; with the reference names:

    lstm_init_state: {hidden: [1, H], cell: [1, H]}          # haiku LSTMState
    rnn_params:
      linear      {w: [R, H], b: [H]}   # computed but unused by the reference's forward pass
      linear_1    {w: [R, H], b: [H]}   # per-tensor embedding, max-pooled over tensors
      linear_2    {w: [R, H], b: [H]}   # LSTM input projection (+ pooled embedding)
      rnn/linear  {w: [2H, 4H], b: [4H]}   # haiku LSTM, gates (i, g, f, o), input [x, h]
      rnn_to_controls {w: [H, N], b: [N]}
      step_size   {w: [H, 1], b: [1]}
    ff_mod_stack: {"~": {w0__0 .. w0__13: [N, d_k, K], b0: [N, K],
                         w1: [N, K, K], b1: [N, K], w2: [N, K, 3], b2: [N, 3]}}

with R = 28 LSTM inputs, H = 512, N = 256 MLPs, K = 4 (the published VeLO).

Mapping to our θ (code: ``_DIRECT``, ``_ROWS_BY_LSTM_FEATURE``, ``REF_PARAM_INPUTS``):

    reference                     ours              how
    lstm_init_state/hidden, cell  lstm_init/h, c    drop the batch axis of 1
    rnn_params/linear             (dropped)         unused by the reference
    rnn_params/linear_1           mix               rows by LSTM feature name
    rnn_params/linear_2           lstm_in           rows by LSTM feature name
    rnn_params/rnn/linear         lstm              as is (same gates, concat, +1 forget bias)
    rnn_params/rnn_to_controls    to_mix            as is
    rnn_params/step_size          to_lr             as is
    ff_mod_stack/~/w0__k, k<14    bank/w0 rows      by per-element feature name
    ff_mod_stack/~/b0, w1, b1     bank/b0, w1, b1   as is
    ff_mod_stack/~/w2, b2         bank/w2, b2       first 2 of 3 outputs (the 3rd is unused)
    (none)                        bank/w0_time      zeros: the reference MLP has no time input
    (none)                        decay_logits      zeros: VeLO used fixed decays

LSTM input rows by name (``REF_LSTM_INPUTS`` -> ``lopt.velo.LSTM_FEATURES``):
fraction_left -> frac_tanh, loss_features -> loss_trend, mean_rms -> mean_rms,
rank -> rank, var_m -> var_mom, var_rms -> var_rms; our ``mean_abs_mom`` rows
are zero (the reference has no such input).

Use the result with ``reference_config()`` (linear mixing ``100/N · logits``
and a linear lr multiplier, as HyperV2). Honest limits: this mapping was
written from the reference's source structure and is tested here only against
synthetic files with that structure, not against a real VeLO checkpoint or
its outputs. Known semantic differences remain, so a loaded θ does not
reproduce the reference's steps exactly (by how much has not been measured):
our LSTM statistics keep the reference's names but are normalized by the
gradient RMS (the reference divides by RMS(p)) and bias-corrected; loss EMAs
use fixed half-lives; row/column factored features follow ``lopt.features``
(ordered by axis index, the reference by axis size); epsilons differ slightly;
the reference clips gradients to ±1000 (chain ``optax.clip`` for that); and
the LSTM state is carried forward (some old checkpoints relied on a bug that
did not carry it).
"""

from __future__ import annotations

import itertools
import os
import warnings
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from lopt import features as F
from lopt import velo as V

# The reference's 28 LSTM inputs, in its concatenation order (sorted by name).
REF_LSTM_INPUTS = (("fraction_left", 9), ("loss_features", 9), ("mean_rms", 1),
                   ("rank", 5), ("var_m", 3), ("var_rms", 1))
LSTM_NAME_MAP = {"frac_tanh": "fraction_left", "loss_trend": "loss_features",
                 "mean_rms": "mean_rms", "rank": "rank", "var_mom": "var_m",
                 "var_rms": "var_rms"}  # ours -> reference

_m3 = lambda stem: tuple(f"{stem}{i}" for i in range(3))
# The reference's per-element inputs: w0__k multiplies group k, in this order.
REF_PARAM_INPUTS = (("g",), ("g_clip",), ("p",), _m3("mom"), ("rms",), _m3("mom_rsqrt"),
                    ("rsqrt_rms",), _m3("fac_g"), ("g_rsqrt_rms",), _m3("row"), _m3("col"),
                    _m3("rsqrt_row"), _m3("rsqrt_col"), _m3("fac_mom"))
REF_OUTPUTS = 3  # direction, magnitude, and one the reference never reads

# (reference path, our path) for tensors copied as they are, up to a batch axis.
_DIRECT = (
    (("rnn_params", "rnn/linear", "w"), ("lstm", "w")),
    (("rnn_params", "rnn/linear", "b"), ("lstm", "b")),
    (("rnn_params", "rnn_to_controls", "w"), ("to_mix", "w")),
    (("rnn_params", "rnn_to_controls", "b"), ("to_mix", "b")),
    (("rnn_params", "step_size", "w"), ("to_lr", "w")),
    (("rnn_params", "step_size", "b"), ("to_lr", "b")),
)
_ROWS_BY_LSTM_FEATURE = (("linear_1", "mix"), ("linear_2", "lstm_in"))
DROPPED = (("rnn_params", "linear", "w"), ("rnn_params", "linear", "b"))


def reference_config(mup: bool = False) -> V.VeLOpt:
  """The published VeLO's sizes and head forms (H=512, N=256 MLPs of width 4)."""
  return V.VeLOpt(mup=mup, lstm_hidden=512, num_mlps=256, mlp_hidden=4, mlp_layers=2,
                  reference_heads=True)


def _offsets(table) -> dict[str, slice]:
  ends = itertools.accumulate(width for _, width in table)
  return {name: slice(end - width, end) for (name, width), end in zip(table, ends)}


def _lstm_row_pairs() -> list[tuple[slice, slice]]:
  ours, ref = _offsets(V.LSTM_FEATURES), _offsets(REF_LSTM_INPUTS)
  return [(ours[o], ref[r]) for o, r in LSTM_NAME_MAP.items()]


def reference_shapes(config: V.VeLOpt) -> dict:
  """The reference tree (nested dicts) of shapes that ``config`` can load."""
  h, n, k = config.lstm_hidden, config.num_mlps, config.mlp_hidden
  r = sum(w for _, w in REF_LSTM_INPUTS)
  dense = lambda fi, fo: {"w": (fi, fo), "b": (fo,)}
  ff = {f"w0__{i}": (n, len(group), k) for i, group in enumerate(REF_PARAM_INPUTS)}
  ff["b0"] = (n, k)
  for i in range(1, config.mlp_layers + 1):  # the output layer w{L}, b{L} has REF_OUTPUTS
    out = REF_OUTPUTS if i == config.mlp_layers else k
    ff[f"w{i}"], ff[f"b{i}"] = (n, k, out), (n, out)
  return {
      "lstm_init_state": {"hidden": (1, h), "cell": (1, h)},
      "rnn_params": {"linear": dense(r, h), "linear_1": dense(r, h), "linear_2": dense(r, h),
                     "rnn/linear": dense(2 * h, 4 * h), "rnn_to_controls": dense(h, n),
                     "step_size": dense(h, 1)},
      "ff_mod_stack": {"~": ff},
  }


def _f32(x: Any) -> np.ndarray:
  return np.asarray(x, np.float32)


# Rows of our ``bank/w0`` that the reference's ``w0__k`` of ``group`` maps to.
def _w0_rows(group: tuple[str, ...]) -> list[int]:
  return [V.PARAM_FEATURES.index(name) for name in group]


def _flatten(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  return {path: leaf for key, value in tree.items()
          for path, leaf in _flatten(value, prefix + (str(key),)).items()}


def _get(tree: dict, path: tuple) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple, value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _unwrap(restored: Any) -> Any:
  """The θ inside a ParameterCheckpoint, a (θ, gen_id, step) tuple, or θ itself."""
  if isinstance(restored, dict) and "rnn_params" not in restored:
    for key in ("params", "0"):
      if isinstance(restored.get(key), dict):
        return restored[key]
  return restored


def _normalize_lstm_state(tree: dict) -> dict:
  """Accept flax's pre-2022 namedtuple encoding {name, fields, values} too."""
  state = tree.get("lstm_init_state")
  if isinstance(state, dict) and set(state) == {"name", "fields", "values"}:
    fields = state["fields"]
    tree = dict(tree)
    tree["lstm_init_state"] = {fields[str(i)]: state["values"][str(i)]
                               for i in range(len(fields))}
  return tree


def check_reference_tree(tree: Any, config: V.VeLOpt) -> None:
  """Raise one ValueError naming every missing, unexpected or mis-shaped tensor."""
  expected = _flatten(reference_shapes(config))
  got = _flatten(tree) if isinstance(tree, dict) else {}
  fmt = lambda path: "/".join(path)
  missing = sorted(fmt(p) for p in set(expected) - set(got))
  unexpected = sorted(fmt(p) for p in set(got) - set(expected))
  wrong = sorted(f"{fmt(p)}: expected {expected[p]}, got {tuple(np.shape(got[p]))}"
                 for p in set(expected) & set(got) if tuple(np.shape(got[p])) != expected[p])
  if missing or unexpected or wrong:
    lines = [f"The reference VeLO tree does not match {config}:"]
    lines += [f"  missing: {m}" for m in missing]
    lines += [f"  unexpected: {u}" for u in unexpected]
    lines += [f"  wrong shape: {w}" for w in wrong]
    lines.append("The published VeLO loads with lopt.velo_import.reference_config() "
                 "(lstm_hidden=512, num_mlps=256, mlp_hidden=4, mlp_layers=2).")
    raise ValueError("\n".join(lines))


def theta_from_reference_tree(tree: Any, config: V.VeLOpt) -> dict:
  """Map a reference θ (nested dicts of arrays) to our θ; see the module table."""
  tree = _normalize_lstm_state(_unwrap(tree))
  check_reference_tree(tree, config)
  if not config.reference_heads:
    warnings.warn("Reference VeLO weights assume the reference's head forms; with "
                  "reference_heads=False the loaded θ is only a starting point. Use "
                  "lopt.velo_import.reference_config().", stacklevel=2)
  theta: dict = {}
  state = tree["lstm_init_state"]
  _set(theta, ("lstm_init", "h"), _f32(state["hidden"])[0])
  _set(theta, ("lstm_init", "c"), _f32(state["cell"])[0])
  for ref_path, our_path in _DIRECT:
    _set(theta, our_path, _f32(_get(tree, ref_path)))
  for ref_name, our_name in _ROWS_BY_LSTM_FEATURE:
    w_ref = _f32(tree["rnn_params"][ref_name]["w"])
    w = np.zeros((V.NUM_LSTM_FEATURES, w_ref.shape[1]), np.float32)
    for ours, ref in _lstm_row_pairs():
      w[ours] = w_ref[ref]
    _set(theta, (our_name, "w"), w)
    _set(theta, (our_name, "b"), _f32(tree["rnn_params"][ref_name]["b"]))

  ff = tree["ff_mod_stack"]["~"]
  n, k = config.num_mlps, config.mlp_hidden
  w0 = np.zeros((n, V.NUM_PARAM_FEATURES, k), np.float32)
  for i, group in enumerate(REF_PARAM_INPUTS):
    w0[:, _w0_rows(group)] = _f32(ff[f"w0__{i}"])
  bank = {"w0": w0, "w0_time": np.zeros((n, F.NUM_TIME_FEATURES, k), np.float32),
          "b0": _f32(ff["b0"])}
  for i in range(1, config.mlp_layers + 1):  # of the output layer w{L}, b{L}: 2 outputs of 3
    cut = 2 if i == config.mlp_layers else None
    bank[f"w{i}"], bank[f"b{i}"] = _f32(ff[f"w{i}"])[..., :cut], _f32(ff[f"b{i}"])[..., :cut]
  theta["bank"] = bank
  theta["decay_logits"] = {"mom": np.zeros(3, np.float32), "rms": np.zeros((), np.float32),
                           "fac": np.zeros(3, np.float32)}
  config.check_theta(theta)
  return jax.tree_util.tree_map(jnp.asarray, theta)


def reference_tree_from_theta(theta: dict, config: V.VeLOpt) -> dict:
  """The inverse map, for writing files in the reference format. Tensors the
  reference has but we do not (``DROPPED``, the 3rd MLP output) are zeros;
  ours that it lacks (``mean_abs_mom`` rows, ``w0_time``, decays) are left out."""
  config.check_theta(theta)
  shapes = reference_shapes(config)
  tree: dict = {}
  tree["lstm_init_state"] = {"hidden": _f32(theta["lstm_init"]["h"])[None],
                             "cell": _f32(theta["lstm_init"]["c"])[None]}
  for ref_path, our_path in _DIRECT:
    _set(tree, ref_path, _f32(_get(theta, our_path)))
  for path in DROPPED:
    _set(tree, path, np.zeros(_get(shapes, path), np.float32))
  for ref_name, our_name in _ROWS_BY_LSTM_FEATURE:
    w = np.zeros(shapes["rnn_params"][ref_name]["w"], np.float32)
    for ours, ref in _lstm_row_pairs():
      w[ref] = _f32(theta[our_name]["w"])[ours]
    _set(tree, ("rnn_params", ref_name, "w"), w)
    _set(tree, ("rnn_params", ref_name, "b"), _f32(theta[our_name]["b"]))
  bank, ff = theta["bank"], {}
  for i, group in enumerate(REF_PARAM_INPUTS):
    ff[f"w0__{i}"] = _f32(bank["w0"])[:, _w0_rows(group)]
  ff["b0"] = _f32(bank["b0"])
  pad = lambda x: np.concatenate([x, np.zeros(x.shape[:-1] + (1,), np.float32)], axis=-1)
  for i in range(1, config.mlp_layers + 1):  # the output layer w{L}, b{L} gets a zero 3rd output
    f = pad if i == config.mlp_layers else (lambda x: x)
    ff[f"w{i}"], ff[f"b{i}"] = f(_f32(bank[f"w{i}"])), f(_f32(bank[f"b{i}"]))
  tree["ff_mod_stack"] = {"~": ff}
  return tree


def load_reference_velo(path: str | os.PathLike, config: V.VeLOpt) -> dict:
  """Read a reference VeLO parameter file (flax msgpack; never pickle) into our θ."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No VeLO parameter file at {path!r}. Download the reference "
                            "checkpoint's `params` file first; this loader reads local files only.")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    restored = flax.serialization.msgpack_restore(raw)
  except Exception as e:  # msgpack raises several unrelated types
    raise ValueError(f"{path!r} is not a flax msgpack file (flax.serialization."
                     f"to_bytes output): {type(e).__name__}: {e}") from e
  return theta_from_reference_tree(restored, config)
