"""Provenance: the git commit, package versions and device a result came from.

One helper for every record that says where it came from: evaluation's
results.json, an exported LO's metadata (``training.export``), meta-validation
and ``scripts/gpu_check.py``. Importing it starts no JAX (gpu_check's
orchestrator imports it); the functions import what they read.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> Optional[str]:
  try:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def git_dirty() -> Optional[bool]:
  """Whether tracked files differ from HEAD; None outside a git checkout."""
  status = _git("status", "--porcelain", "--untracked-files=no")
  return None if status is None else bool(status)


def git_commit(mark_dirty: bool = False) -> Optional[str]:
  """HEAD of the checkout this code runs from (``+dirty`` appended when asked
  and tracked files changed); None outside a git checkout."""
  commit = _git("rev-parse", "HEAD") or None
  return commit + "+dirty" if commit and mark_dirty and git_dirty() else commit


def versions() -> dict[str, Any]:
  """Python's and the numerical packages' versions, and lopt's commit."""
  out = {"python": sys.version.split()[0]}
  for name in ("jax", "jaxlib", "optax", "flax", "numpy"):
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  return {**out, "lopt_commit": git_commit(), "lopt_dirty": git_dirty()}


def device_info() -> dict[str, Any]:
  import jax
  devices = jax.devices()
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "device_count": len(devices)}
