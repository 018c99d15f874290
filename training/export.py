"""Export a meta-training run as a pretrained learned optimizer (lopt format)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import jax

from lopt.pretrained import save_pretrained
from training import checkpoint, tracking
from training.config import config_from_json
from training.trainer import initial_theta, make_lopt


def git_commit() -> str | None:
  try:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                         text=True, timeout=10)
    return out.stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def export_workdir(workdir: str, out_dir: str | None = None, step: int | None = None,
                   extra_metadata: dict[str, Any] | None = None,
                   initial: bool = False) -> str:
  """Write ``out_dir`` (default ``workdir/export``) from the run's newest checkpoint.

  ``initial=True`` exports the run's θ at outer step 0 instead (default
  ``workdir/export_init``): the untrained LO, to measure what meta-training bought.
  """
  with open(os.path.join(workdir, "config.json")) as f:
    config = config_from_json(json.load(f))
  lopt = make_lopt(config)
  if initial:
    theta, last = initial_theta(config), {"step": 0}
    out_dir = out_dir or os.path.join(workdir, "export_init")
  else:
    theta = checkpoint.restore_theta(os.path.join(workdir, "checkpoints"), step)
    metrics = tracking.read_metrics(workdir) if os.path.exists(
        os.path.join(workdir, "metrics.jsonl")) else []
    last = metrics[-1] if metrics else {}
  metadata = {
      "parameterization": "mup" if config.mup else "sp",
      "training": {
          "recipe": config.recipe(),
          "estimator": config.estimator,
          "distribution": config.distribution,
          "outer_steps": int(last.get("step", 0)),
          "final_meta_loss": last.get("meta_loss"),
          "device": jax.devices()[0].device_kind,
          "commit": git_commit(),
      },
      **(extra_metadata or {}),
  }
  out_dir = out_dir or os.path.join(workdir, "export")
  save_pretrained(out_dir, lopt, theta, metadata)
  return out_dir
