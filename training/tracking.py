"""Experiment tracking: metrics.jsonl, wandb (offline by default), compile counts."""

from __future__ import annotations

import json
import os
import secrets
import threading
from typing import Any

import jax

# ------------------------------------------------------------------ compilations
_compile_lock = threading.Lock()
_compile_count = 0
_listening = False


def _on_event(event: str, duration: float, **kwargs) -> None:
  global _compile_count
  if event == "/jax/core/compile/backend_compile_duration":
    with _compile_lock:
      _compile_count += 1


def compile_count() -> int:
  """XLA backend compilations in this process since tracking started."""
  global _listening
  if not _listening:
    jax.monitoring.register_event_duration_secs_listener(_on_event)
    _listening = True
  return _compile_count


# ------------------------------------------------------------------ metrics log
class MetricsLog:
  """Appends one JSON object per logged step to ``workdir/metrics.jsonl``.

  On resume, lines past the restored step are dropped: they came from steps
  that will be re-run, and keeping them would log those steps twice.
  """

  def __init__(self, workdir: str, resume_step: int):
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = []
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          line = line.strip()
          if line:
            try:
              record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
              continue
            if record.get("step", 0) <= resume_step:
              kept.append(line)
    with open(self.path, "w") as f:
      f.writelines(line + "\n" for line in kept)

  def write(self, record: dict[str, Any]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every record of ``workdir/metrics.jsonl`` (a line cut by a kill is skipped).
  A value that was non-finite (e.g. the meta-loss of a step where every pair
  diverged) is None."""
  records = []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  return records


# ------------------------------------------------------------------ wandb
class WandbLogger:
  """wandb run in offline mode unless an API key or WANDB_MODE says otherwise.

  The run id is kept in the workdir so a resumed run continues the same wandb
  run. If wandb is not installed (e.g. a bare GPU machine) logging is skipped
  with a message: metrics.jsonl still has everything.
  """

  def __init__(self, workdir: str, project: str, config: dict[str, Any], mode: str | None):
    self.run = None
    if mode == "disabled":
      return
    try:
      import wandb
    except ImportError:
      print("wandb is not installed: logging to metrics.jsonl only.")
      return
    if mode is None:
      mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    id_path = os.path.join(workdir, "wandb_run_id")
    # Our own id: wandb.util.generate_id is gone from recent wandb releases.
    run_id = (open(id_path).read().strip() if os.path.exists(id_path)
              else secrets.token_hex(4))
    with open(id_path, "w") as f:
      f.write(run_id)
    self.run = wandb.init(project=project, name=os.path.basename(os.path.abspath(workdir)),
                          id=run_id, resume="allow", dir=workdir, mode=mode, config=config)

  def log(self, record: dict[str, Any], step: int) -> None:
    if self.run is not None:
      self.run.log(record, step=step)

  def finish(self) -> None:
    if self.run is not None:
      self.run.finish()
