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
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT = "lopt-pretrained"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "architecture", "config")


def _architectures() -> dict[str, type]:
  from lopt.mlp_lopt import MLPLOpt
  from lopt.velo import VeLOpt
  return {"MLPLOpt": MLPLOpt, "VeLOpt": VeLOpt}


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
  """Write θ (orbax) and metadata.json for ``lopt`` (an LO config dataclass)."""
  import orbax.checkpoint as ocp
  lopt.check_theta(theta)
  directory = Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
          "architecture": type(lopt).__name__, "config": dataclasses.asdict(lopt),
          **(metadata or {})}
  theta_dir = directory / "theta"
  if theta_dir.exists():
    import shutil
    shutil.rmtree(theta_dir)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(theta_dir, jax.device_get(theta))
  (directory / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
  return directory


def validate_metadata(meta: Any, where: str = "metadata.json") -> None:
  """Raise a clear error if the metadata is not a loadable pretrained LO."""
  if not isinstance(meta, dict):
    raise ValueError(f"{where}: expected a JSON object, got {type(meta).__name__}.")
  missing = [k for k in REQUIRED_KEYS if k not in meta]
  if missing:
    raise ValueError(f"{where} is missing {missing}; is this a lopt pretrained checkpoint?")
  if meta["format"] != FORMAT:
    raise ValueError(f"{where}: format is {meta['format']!r}, expected {FORMAT!r}.")
  if meta["format_version"] != FORMAT_VERSION:
    raise ValueError(f"{where}: format_version {meta['format_version']} is not supported by "
                     f"this lopt (it reads version {FORMAT_VERSION}); upgrade lopt or re-export.")
  archs = _architectures()
  if meta["architecture"] not in archs:
    raise ValueError(f"{where}: unknown architecture {meta['architecture']!r}; this lopt "
                     f"knows {sorted(archs)}.")
  fields = {f.name for f in dataclasses.fields(archs[meta["architecture"]])}
  unknown = sorted(set(meta["config"]) - fields)
  if unknown:
    raise ValueError(f"{where}: config fields {unknown} are not understood by "
                     f"{meta['architecture']} in this lopt version.")


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
    shipped = shipped_dir() / str(name_or_path)
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


def load_metadata(name_or_path: str | os.PathLike) -> dict[str, Any]:
  path = _resolve(name_or_path)
  try:
    meta = json.loads((path / "metadata.json").read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path / 'metadata.json'} is not valid JSON: {e}") from e
  validate_metadata(meta, str(path / "metadata.json"))
  return meta


def load_pretrained(name_or_path: str | os.PathLike) -> tuple[Any, Any]:
  """``(lopt, theta)`` of a shipped name (see ``available()``) or a directory."""
  import orbax.checkpoint as ocp
  path = _resolve(name_or_path)
  meta = load_metadata(path)
  lopt = _architectures()[meta["architecture"]](**meta["config"])
  abstract = jax.eval_shape(lopt.init, jax.random.PRNGKey(0))
  try:
    with ocp.StandardCheckpointer() as ckptr:
      theta = ckptr.restore((path / "theta").absolute())
  except Exception as e:
    raise ValueError(f"Could not read θ from {path / 'theta'} ({type(e).__name__}: {e}). "
                     "The checkpoint is missing or corrupt.") from e
  theta = jax.tree_util.tree_map(np.asarray, theta)
  lopt.check_theta(theta)  # names the tensor if the architecture does not match
  theta = jax.tree_util.tree_map(lambda a, s: np.asarray(a, s.dtype), theta, abstract)
  return lopt, theta


def pretrained_optax(name_or_path: str | os.PathLike, num_steps: int | None = None,
                     mup: Any = None):
  """The pretrained LO as an optax transformation, ready to use.

  ``num_steps``, the planned number of training steps (optimizer updates), is
  required: a pretrained LO was meta-trained on known horizons and reads the
  fraction of training done, and the shipped ones anneal their step with a
  cosine schedule over it. Past ``num_steps`` that schedule holds its final
  value, 0: update ``num_steps`` and every later one is exactly 0, so training
  stops (``check_num_steps(opt_state, num_steps)`` raises once it has).
  ``mup``: the μP spec of your params (``lopt.mup.infer_kinds``) for a μP LO.
  Works with optax, linen's ``TrainState`` and ``nnx.Optimizer``.
  """
  _resolve(name_or_path)  # a bad name or path is reported before num_steps
  if num_steps is None:
    raise ValueError(
        f"pretrained_optax({str(name_or_path)!r}) needs num_steps=<your planned number of "
        "training steps (optimizer updates)>: a pretrained learned optimizer reads the "
        "fraction of training done, and the shipped ones anneal their step to 0 over "
        "num_steps with a cosine schedule. E.g. lopt.pretrained_optax("
        f"{str(name_or_path)!r}, num_steps=10_000, mup=kinds).")
  lopt, theta = load_pretrained(name_or_path)
  return lopt.as_optax(theta, num_steps=num_steps, mup=mup)


def _lo_states(opt_state: Any) -> list[Any]:
  from lopt.mlp_lopt import MLPLOptState
  from lopt.velo import VeLOptState
  from lopt import mup as mup_lib
  opt_state = getattr(opt_state, "opt_state", opt_state)  # TrainState, nnx.Optimizer
  kinds = (MLPLOptState, VeLOptState)
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
    raise ValueError("check_num_steps: no learned-optimizer state (MLPLOptState or "
                     "VeLOptState) found in opt_state.")
  done = max(int(np.max(np.asarray(s.count))) for s in states)
  if done >= num_steps:
    raise RuntimeError(
        f"The learned optimizer has applied {done} updates, its planned num_steps={num_steps}. "
        "Past num_steps a cosine-scheduled LO (lr_schedule='cosine', every shipped one) holds "
        "its schedule's final value, 0, so every further update is exactly 0 and training has "
        "stopped; other LOs run outside the horizon they were built for. Build the "
        "transformation with num_steps = the total number of steps you will train.")
  return done
