"""Pretrained learned optimizers: save, validate and load them with one call.

A pretrained LO is a directory::

    NAME/metadata.json   format, architecture config, recipe, evaluation numbers
    NAME/theta/          θ saved with orbax (no pickle anywhere)

``load_pretrained("mulo-m")`` looks in the checkpoints shipped with the package;
any other argument is a path to such a directory (or to a meta-training
workdir, whose ``export/`` it uses).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lopt import diskio, forms, protocol

# Earlier shipped names, still loadable: mulo-a (2026-12-03) became mulo-m on
# 2026-12-04, when the screen suite picked it over mulo-m's old θ₀ (now mulo-r).
RENAMED = {"mulo-a": "mulo-m"}

FORMAT = "lopt-pretrained"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "architecture", "config")


def shipped_dir() -> Path:
  """Where the package's own checkpoints live (installed or source checkout)."""
  try:
    packaged = resources.files("lopt").joinpath("checkpoints")
    if packaged.is_dir():
      return Path(str(packaged))
  except (ModuleNotFoundError, FileNotFoundError):
    pass
  return Path(__file__).resolve().parent.parent / "checkpoints"


def available() -> list[str]:
  root = shipped_dir()
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if (p / "metadata.json").is_file())


def save_pretrained(directory: str | os.PathLike, lopt: Any, theta: Any,
                    metadata: dict[str, Any] | None = None) -> Path:
  """Write θ (orbax), metadata.json and integrity.json (the SHA-256 of every
  file) for ``lopt`` (an LO config dataclass).

  Atomic: everything is written to a temporary sibling, fsynced, and swapped in
  whole, so a reader, a crash or a kill at any moment sees the previous export
  or the new one, never a mix or nothing. Other files in ``directory`` are
  carried over. The metadata is checked against the same schema as on load, and
  θ must be finite. A write-protected or unwritable ``directory`` or a disk
  failure is a ``lopt.diskio.DiskError`` with one line (nothing is changed).
  """
  import shutil
  import orbax.checkpoint as ocp
  lopt.check_theta(theta)
  theta = jax.tree_util.tree_map(np.asarray, jax.device_get(theta))
  directory = Path(directory).absolute()
  meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
          "architecture": type(lopt).__name__, "config": lopt.to_record(),
          **(metadata or {})}
  meta = json.loads(json.dumps(meta))  # what the file will hold (tuples become lists)
  built = validate_metadata(meta, str(directory / "metadata.json"))
  _check_theta_finite(theta, str(directory / "theta"))
  if built != lopt:
    raise ValueError(f"{directory / 'metadata.json'}: the config record of {lopt} does not "
                     f"rebuild the same optimizer (it gives {built}).")
  staging = None
  try:
    directory.parent.mkdir(parents=True, exist_ok=True)
    diskio.recover_dir(directory)
    if directory.exists():
      if not directory.is_dir():
        raise ValueError(f"{directory} exists and is not a directory.")
      diskio.check_writable(directory)
    staging = diskio.staging_dir(directory)
    with diskio.quiet_orbax(), ocp.StandardCheckpointer() as ckptr:
      ckptr.save(staging / "theta", theta)
    (staging / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    if directory.is_dir():  # the user's own files in it are kept
      for entry in directory.iterdir():
        if entry.name not in ("metadata.json", "theta", diskio.RECORD):
          (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, staging / entry.name)
    diskio.write_record(staging)
    diskio.replace_dir(staging, directory)
    staging = None
  except Exception as e:  # noqa: BLE001 - orbax raises many types
    raise diskio.as_disk_error(e, f"cannot write {directory}") from None
  finally:
    if staging is not None:
      shutil.rmtree(staging, ignore_errors=True)
  return directory


# ------------------------------------------------------------------ the schema
# A range rule on top of the LO's own ``__post_init__`` checks: the step is
# d·exp(exp_mult·m), so |exp_mult·m| must stay below log(float32 max) ≈ 88.7
# for network outputs up to |m| = 100.
_EXP_MULT_MAX = float(np.log(np.finfo(np.float32).max)) / 100


class MetadataError(ValueError):
  """metadata.json is not a valid pretrained LO (one line naming the file and field)."""


def _check_record_keys(raw: Any, canonical: Any, where: str, path: str) -> None:
  """Every key of the canonical record (the LO's own ``to_record``) is in the
  file's record, and no other: a missing field is an error, not a default."""
  if isinstance(canonical, dict):
    if not isinstance(raw, dict):
      raise MetadataError(f"{where}: {path} must be a JSON object, got {protocol.show(raw)}.")
    missing = sorted(set(canonical) - set(raw))
    if missing:
      raise MetadataError(f"{where}: {path}.{missing[0]} is missing (a missing field is not "
                          "given its default: it may be a different optimizer).")
    unknown = sorted(set(raw) - set(canonical))
    if unknown:
      raise MetadataError(f"{where}: {path}.{unknown[0]} is not a field of this lopt's config.")
    for k in canonical:
      _check_record_keys(raw[k], canonical[k], where, f"{path}.{k}")
  elif isinstance(canonical, (list, tuple)):
    if not isinstance(raw, list) or len(raw) != len(canonical):
      raise MetadataError(f"{where}: {path} must be a list of {len(canonical)}, "
                          f"got {protocol.show(raw)}.")
    for i, (r, c) in enumerate(zip(raw, canonical)):
      _check_record_keys(r, c, where, f"{path}[{i}]")


def validate_metadata(meta: Any, where: str = "metadata.json") -> Any:
  """The LO of a metadata record, checked strictly; ``MetadataError`` (a
  ValueError) naming ``where`` and the field if it is not a loadable pretrained LO.

  The checks come from the LO's config dataclass, not from a list of today's
  fields: the record goes through the class's migration hook (``from_record``,
  which converts older records) and its ``__post_init__``; then every field of
  the resulting object, nested records and tuples of step rules included, is
  checked against its type hint (``protocol.check_value``: a bool is a JSON
  true/false, not "false"; a float is finite in float32), and ``exp_mult``
  against its range. A record of the current form must have every field of the
  LO's own record (``to_record``); an older flat one every field its migration
  reads."""
  if not isinstance(meta, dict):
    raise MetadataError(f"{where}: expected a JSON object, got {type(meta).__name__}.")
  missing = [k for k in REQUIRED_KEYS if k not in meta]
  if missing:
    raise MetadataError(f"{where}: {missing[0]} is missing; is this a lopt pretrained "
                        "checkpoint?")
  if meta["format"] != FORMAT:
    raise MetadataError(f"{where}: format is {meta['format']!r}, expected {FORMAT!r}.")
  if meta["format_version"] != FORMAT_VERSION or isinstance(meta["format_version"], bool):
    raise MetadataError(f"{where}: format_version {meta['format_version']!r} is not supported "
                        f"by this lopt (it reads version {FORMAT_VERSION}); upgrade lopt or "
                        "re-export.")
  archs = protocol.architectures()
  if not isinstance(meta["architecture"], str) or meta["architecture"] not in archs:
    raise MetadataError(f"{where}: unknown architecture {meta['architecture']!r}; this "
                        f"lopt knows {sorted(archs)}.")
  if "parameterization" in meta and meta["parameterization"] not in ("mup", "sp"):
    raise MetadataError(f"{where}: parameterization must be 'mup' or 'sp', got "
                        f"{protocol.show(meta['parameterization'])}.")
  cls, raw = archs[meta["architecture"]], meta["config"]
  if not isinstance(raw, dict):
    raise MetadataError(f"{where}: config must be a JSON object, got {protocol.show(raw)}.")
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  # The flat fields of an old MLPLOpt record (before issue 20).
  legacy = [k for k in (forms.LEGACY_FIELDS if cls is archs["MLPLOpt"] else ()) if k not in fields]
  is_legacy = any(k in raw for k in legacy)
  # Scalar fields can be checked before the record is built, so that their
  # errors name the field (a constructor's TypeError would not).
  fail = lambda path, message: MetadataError(f"{where}: {path} {message}")
  for name, value in raw.items():
    if name in fields and hints.get(name) in (bool, int, float, str):
      protocol.check_value(value, hints[name], f"config.{name}", fail)
  if is_legacy:
    scalars = [n for n in fields if hints.get(n) in (bool, int, float, str)]
    absent = [k for k in (*legacy, *scalars) if k not in raw]
    if absent:
      raise MetadataError(f"{where}: config.{absent[0]} is missing (a missing field is not "
                          "given its default: it may be a different optimizer).")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)  # an old record, converted
      lopt = cls.from_record(raw)  # the migration hook converts older records
  except (TypeError, ValueError, KeyError, AttributeError) as e:
    raise MetadataError(f"{where}: config is not a valid {cls.__name__} in this lopt "
                        f"version ({' '.join(str(e).split())}).") from None
  if not is_legacy:
    _check_record_keys(raw, json.loads(json.dumps(lopt.to_record())), where, "config")
  protocol.check_fields(lopt, fail, "config.")
  if abs(getattr(lopt, "exp_mult", 0.0)) > _EXP_MULT_MAX:
    raise MetadataError(f"{where}: config.exp_mult = {lopt.exp_mult!r} is outside "
                        f"[{-_EXP_MULT_MAX:.4g}, {_EXP_MULT_MAX:.4g}] (exp(exp_mult·m) must "
                        "stay finite in float32 for network outputs |m| <= 100).")
  return lopt


def _check_theta_finite(theta: Any, where: str) -> None:
  for path, x in jax.tree_util.tree_flatten_with_path(theta)[0]:
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
    if bad:
      raise MetadataError(f"{where}: θ tensor {jax.tree_util.keystr(path)} has {bad} "
                          f"non-finite entries of {np.size(x)}.")


def _looks_like_path(name_or_path: str | os.PathLike) -> bool:
  """A path, not a shipped name: a PathLike, or a string with a separator, a
  leading '.' or '~', or a trailing separator (shipped names have none)."""
  if not isinstance(name_or_path, str):
    return True
  seps = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
  return (any(s in name_or_path for s in seps) or name_or_path.startswith((".", "~")))


def _resolve(name_or_path: str | os.PathLike) -> Path:
  if not isinstance(name_or_path, (str, os.PathLike)):
    raise TypeError(
        f"Expected the name of a shipped pretrained learned optimizer (one of "
        f"{available()}) or a path to a pretrained directory (or a meta-training "
        f"workdir), got {name_or_path!r} of type {type(name_or_path).__name__}; e.g. "
        "lopt.pretrained_optax('mulo-m', num_steps=1000, mup=kinds).")
  if isinstance(name_or_path, str) and not name_or_path.strip():
    raise ValueError(f"Empty pretrained learned optimizer name; available: {available()} "
                     "(or pass a path to a pretrained directory).")
  path = Path(name_or_path).expanduser()
  if (path / "metadata.json").is_file():
    return path
  if (path / "export" / "metadata.json").is_file():  # a meta-training workdir
    return path / "export"
  if not _looks_like_path(name_or_path):
    shipped = shipped_dir() / RENAMED.get(str(name_or_path), str(name_or_path))
    if (shipped / "metadata.json").is_file():
      return shipped
  if path.exists():
    raise FileNotFoundError(f"{path} exists but holds no metadata.json: not a pretrained "
                            "learned optimizer (save one with lopt.save_pretrained or "
                            "scripts/meta_train.py).")
  if _looks_like_path(name_or_path):
    raise FileNotFoundError(f"No such directory: {str(path)!r} (absolute: "
                            f"{str(path.absolute())!r}). Pass a pretrained directory, a "
                            "meta-training workdir, or a shipped name, one of "
                            f"{available()}.")
  raise ValueError(f"Unknown pretrained learned optimizer {str(name_or_path)!r}; available: "
                   f"{available()} (or pass a path to a pretrained directory).")


def _verify_files(path: Path) -> None:
  """Check ``path``'s files against its integrity record. Shipped checkpoints
  must have one; an export without one (written by an older lopt) loads with
  a warning, as its data cannot be verified."""
  shipped = path.resolve().parent == shipped_dir().resolve()
  try:
    verified = diskio.verify_record(path, required=shipped)
  except diskio.IntegrityError as e:
    raise MetadataError(f"{e} Refusing to load it.") from None
  if not verified:
    warnings.warn(f"{path} has no {diskio.RECORD} (exported by an older lopt): its files "
                  "cannot be verified. Re-export it, or seal it with `python -m lopt.diskio "
                  f"seal {path}` once you trust it.", stacklevel=3)


def load_metadata(name_or_path: str | os.PathLike) -> dict[str, Any]:
  path = _resolve(name_or_path)
  meta_path = path / "metadata.json"
  try:
    meta = json.loads(meta_path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise MetadataError(f"{meta_path} is not valid JSON: {' '.join(str(e).split())}") from None
  validate_metadata(meta, str(meta_path))
  return meta


def load_pretrained(name_or_path: str | os.PathLike) -> tuple[Any, Any]:
  """``(lopt, theta)`` of a shipped name (see ``available()``) or a directory.

  Before anything is built, the metadata is checked against the strict schema
  (``validate_metadata``), every file against its integrity record
  (``integrity.json``: required for shipped checkpoints, a warning if an older
  export has none), and θ must match the architecture and be finite.
  Every refusal is a ``ValueError`` naming the file and the field or tensor."""
  import orbax.checkpoint as ocp
  path = _resolve(name_or_path)
  meta = load_metadata(path)  # a broken metadata.json is named field by field
  _verify_files(path)         # then every file against its SHA-256
  lopt = validate_metadata(meta, str(path / "metadata.json"))
  abstract = jax.eval_shape(lopt.init, jax.random.PRNGKey(0))
  diskio.silence_closed_event_loops()
  try:
    with diskio.quiet_orbax(), ocp.StandardCheckpointer() as ckptr:
      theta = ckptr.restore((path / "theta").absolute())
  except Exception as e:
    raise ValueError(f"Could not read θ from {path / 'theta'} ({type(e).__name__}: "
                     f"{' '.join(str(e).split())[:300]}). The checkpoint is missing or "
                     "corrupt.") from None
  theta = jax.tree_util.tree_map(np.asarray, theta)
  try:
    lopt.check_theta(theta)  # names the tensor if the architecture does not match
  except ValueError as e:
    raise MetadataError(f"{path / 'theta'}: {e}") from None
  _check_theta_finite(theta, str(path / "theta"))
  theta = jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), theta, abstract)
  return lopt, theta


def check_step_mult(step_mult: Any) -> float:
  """``step_mult`` as a float; ``ValueError`` unless it is a float32 number > 0."""
  protocol.check_value(step_mult, float, "step_mult", lambda path, message: ValueError(
      f"{path} (1: the learned optimizer as meta-trained; 0.5 halves every update) {message}"),
      {"step_mult": (0.0, False)})
  return float(step_mult)


def pretrained_optax(name_or_path: str | os.PathLike, num_steps: int | None = None,
                     mup: Any = None, step_mult: float = 1.0, epochs: float | None = None,
                     keep_invariant_norms: bool | None = None):
  """The pretrained LO as an optax transformation, ready to use.

  ``num_steps``, the planned number of training steps (optimizer updates), is
  required: a pretrained LO was meta-trained on known horizons and reads the
  fraction of training done, and the shipped ones anneal their step with a
  cosine schedule over it. Past ``num_steps`` that schedule holds its final
  value, 0: update ``num_steps`` and every later one is exactly 0, so training
  stops (``check_num_steps(opt_state, num_steps)`` raises once it has).
  ``mup``: the μP spec of your params (``lopt.mup.infer_kinds``) for a μP LO.
  ``step_mult``: the one tuning knob, a multiplier on every update the LO
  makes (default 1: the LO exactly as meta-trained, the transformation
  unchanged; otherwise ``optax.chain(lo, optax.scale(step_mult))``). It must be
  a finite number > 0. ``scripts/evaluate.py`` reports each LO untuned and
  tuned over a step_mult grid as large as AdamW's LR grid.
  ``epochs`` (optional): the planned passes over your training data,
  num_steps × batch size ÷ training examples, for an LO that reads it (an
  ``AdaptiveLOpt`` with the ``EpochScales`` step rule); any other LO raises
  a ``ValueError`` if it is given.
  ``keep_invariant_norms``: wrap the LO in
  ``lopt.invariant_norms.keep_invariant_norms``, which holds the norm of every
  scale-invariant tensor (a kernel in front of BatchNorm) still without
  changing training, so that BatchNorm's running statistics do not lag.
  Works with optax, linen's ``TrainState`` and ``nnx.Optimizer``. Left at
  None it is off, and ``init`` warns if the params have layers named like
  BatchNorm (``lopt.invariant_norms.batchnorm_layers``); False is off, silently.
  """
  _resolve(name_or_path)  # a bad name or path is reported before num_steps
  step_mult = check_step_mult(step_mult)
  if not (keep_invariant_norms is None or isinstance(keep_invariant_norms, bool)):
    raise ValueError(f"pretrained_optax: keep_invariant_norms must be True, False or None "
                     f"(None: off, with a warning on BatchNorm layers), got "
                     f"{keep_invariant_norms!r}.")
  if num_steps is None:
    raise ValueError(
        f"pretrained_optax({str(name_or_path)!r}) needs num_steps=<your planned number of "
        "training steps (optimizer updates)>: a pretrained learned optimizer reads the "
        "fraction of training done, and the shipped ones anneal their step to 0 over "
        "num_steps with a cosine schedule. E.g. lopt.pretrained_optax("
        f"{str(name_or_path)!r}, num_steps=10_000, mup=kinds).")
  import optax
  lopt, theta = load_pretrained(name_or_path)
  if epochs is not None and not getattr(lopt, "reads_epochs", False):
    raise ValueError(f"pretrained_optax({str(name_or_path)!r}) got epochs={epochs!r}, but this "
                     f"learned optimizer ({type(lopt).__name__}) does not read it: leave epochs "
                     "out.")
  extra = {} if epochs is None else {"epochs": epochs}
  tx = lopt.as_optax(theta, num_steps=num_steps, mup=mup, **extra)
  tx = tx if step_mult == 1.0 else optax.chain(tx, optax.scale(step_mult))
  if keep_invariant_norms:
    from lopt.invariant_norms import keep_invariant_norms as keep
    tx = keep(tx)
  elif keep_invariant_norms is None:
    from lopt.invariant_norms import warn_on_batchnorm
    tx = warn_on_batchnorm(tx, str(name_or_path))
  return tx


def _lo_states(opt_state: Any) -> list[Any]:
  from lopt.adaptive import AdaptiveLOptState
  from lopt.mlp_lopt import MLPLOptState
  from lopt.velo import VeLOptState
  from lopt import mup as mup_lib
  opt_state = getattr(opt_state, "opt_state", opt_state)  # TrainState, nnx.Optimizer
  kinds = (MLPLOptState, VeLOptState, AdaptiveLOptState)
  return [mup_lib.unwrap(s) for s in
          jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds))
          if isinstance(s, kinds)]


def check_num_steps(opt_state: Any, num_steps: int) -> int:
  """Raise if a learned optimizer in ``opt_state`` has already applied
  ``num_steps`` updates; else return how many it has applied.

  ``opt_state``: an optax state (chains included), a linen ``TrainState`` or an
  ``nnx.Optimizer``. Call it outside jit, e.g. before each step or each log:
  past ``num_steps`` a cosine-scheduled LO (the shipped ones) only returns
  zero updates, which would otherwise go unnoticed.
  """
  states = _lo_states(opt_state)
  if not states:
    raise ValueError("check_num_steps: no learned-optimizer state (MLPLOptState, "
                     "AdaptiveLOptState or VeLOptState) found in opt_state.")
  done = max(int(np.max(np.asarray(s.count))) for s in states)
  if done >= num_steps:
    raise RuntimeError(
        f"The learned optimizer has applied {done} updates, its planned num_steps={num_steps}. "
        "Past num_steps a cosine-scheduled LO (lr_schedule='cosine', every shipped one) holds "
        "its schedule's final value, 0, so every further update is exactly 0 and training has "
        "stopped; other LOs run outside the horizon they were built for. Build the "
        "transformation with num_steps = the total number of steps you will train.")
  return done
