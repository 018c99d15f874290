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


def _resolve(name_or_path: str | os.PathLike) -> Path:
  path = Path(name_or_path)
  if (path / "metadata.json").is_file():
    return path
  if (path / "export" / "metadata.json").is_file():  # a meta-training workdir
    return path / "export"
  shipped = shipped_dir() / str(name_or_path)
  if (shipped / "metadata.json").is_file():
    return shipped
  if path.exists():
    raise FileNotFoundError(f"{path} exists but holds no metadata.json: not a pretrained "
                            "learned optimizer (save one with lopt.save_pretrained or "
                            "scripts/meta_train.py).")
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
  """The pretrained LO as an optax transformation, ready to use."""
  lopt, theta = load_pretrained(name_or_path)
  return lopt.as_optax(theta, num_steps=num_steps, mup=mup)
