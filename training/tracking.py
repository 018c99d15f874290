"""Experiment tracking: metrics.jsonl, wandb (offline by default), compile counts."""

from __future__ import annotations

import contextlib
import json
import os
import re
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
  that will be re-run, and keeping them would log those steps twice. That
  rewrite is atomic (a kill leaves the old file or the new one), and each
  record is one ``write`` of a whole line, flushed at once. metrics.jsonl is the
  source of truth: wandb only mirrors it.
  """

  def __init__(self, workdir: str, resume_step: int):
    from lopt import diskio
    self.path = os.path.join(workdir, "metrics.jsonl")
    kept = [line for line, record in (_lines(self.path) if os.path.exists(self.path) else [])
            if isinstance(record, dict) and record.get("step", 0) <= resume_step]
    diskio.write_atomic(self.path, "".join(line + "\n" for line in kept))

  def write(self, record: dict[str, Any]) -> None:
    try:
      with open(self.path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as e:
      from lopt import diskio
      raise diskio.as_disk_error(e, f"cannot write {self.path}") from None


def _lines(path: str) -> list[tuple[str, Any]]:
  """(line, record) of every non-blank line of a metrics.jsonl that parses (a
  line cut by a kill does not)."""
  out = []
  with open(path) as f:
    for line in map(str.strip, f):
      try:
        out.append((line, json.loads(line)))
      except json.JSONDecodeError:
        continue
  return out


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every record of ``workdir/metrics.jsonl`` (a line cut by a kill is skipped).
  A value that was non-finite (e.g. the meta-loss of a step where every pair
  diverged) is None."""
  return [record for _, record in _lines(os.path.join(workdir, "metrics.jsonl"))]


# ------------------------------------------------------------------ wandb
_RUN_ID = re.compile(r"^[a-z0-9]{4,64}$")


def _warn(message: str) -> None:
  print(f"WARNING: {message}", flush=True)


def _has_api_key() -> bool:
  if os.environ.get("WANDB_API_KEY", "").strip():
    return True
  try:  # a key saved by `wandb login` (~/.netrc)
    import netrc
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    return bool(netrc.netrc().authenticators(host))
  except Exception:  # noqa: BLE001 - no netrc, unreadable netrc
    return False


def wandb_mode(mode: str | None = None) -> str:
  """The wandb mode to use: ``mode``, else WANDB_MODE, else online with an API key
  (WANDB_API_KEY or `wandb login`) and offline without; online without a key
  falls back to offline with a warning."""
  if mode is None:
    mode = os.environ.get("WANDB_MODE") or ("online" if _has_api_key() else "offline")
  if mode == "online" and not _has_api_key():
    _warn("wandb online mode needs an API key (WANDB_API_KEY or `wandb login`); "
          "logging offline instead (sync later with `wandb sync`).")
    mode = "offline"
  return mode


class WandbLogger:
  """wandb run in offline mode unless an API key or WANDB_MODE says otherwise.

  wandb can never stop a run: every wandb failure (not installed, no API key
  for online mode, an empty or corrupt ``wandb_run_id``, a network error in
  ``init``, ``log`` or ``finish``) is one warning, after which logging goes on
  offline (a failed online ``init``) or without wandb. ``metrics.jsonl`` has
  every record regardless.

  The run id is kept in ``WORKDIR/wandb_run_id`` (written atomically) so a
  resumed run continues the same wandb run; an unusable one is replaced.
  """

  def __init__(self, workdir: str, project: str, config: dict[str, Any], mode: str | None):
    self.run = None
    if mode == "disabled":
      return
    try:
      import wandb
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
      _warn(f"wandb cannot be imported ({type(e).__name__}); logging to metrics.jsonl only.")
      return
    mode = wandb_mode(mode)
    run_id = self._run_id(workdir)
    name = os.path.basename(os.path.abspath(workdir))
    for attempt in ([mode, "offline"] if mode == "online" else [mode]):
      try:
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow",
                              dir=workdir, mode=attempt, config=config)
        return
      except Exception as e:  # noqa: BLE001 - wandb raises many types (UsageError, CommError...)
        text = " ".join(str(e).split())[:200]
        fallback = "trying offline" if attempt == "online" else "logging to metrics.jsonl only"
        _warn(f"wandb init ({attempt}) failed ({type(e).__name__}: {text}); {fallback}.")
        with contextlib.suppress(Exception):  # noqa: BLE001
          wandb.finish(exit_code=1)

  @staticmethod
  def _run_id(workdir: str) -> str:
    from lopt import diskio
    id_path = os.path.join(workdir, "wandb_run_id")
    run_id = None
    if os.path.exists(id_path):
      try:
        with open(id_path) as f:
          run_id = f.read().strip()
      except (OSError, UnicodeDecodeError) as e:
        run_id = f"<unreadable: {type(e).__name__}>"
      if not _RUN_ID.match(run_id):
        _warn(f"{id_path} holds no usable wandb run id ({run_id[:40]!r}); starting a new "
              "wandb run.")
        run_id = None
    if run_id is None:
      # Our own id: wandb.util.generate_id is gone from recent wandb releases.
      run_id = secrets.token_hex(4)
      diskio.write_atomic(id_path, run_id)
    return run_id

  def log(self, record: dict[str, Any], step: int) -> None:
    if self.run is not None:
      try:
        self.run.log(record, step=step)
      except Exception as e:  # noqa: BLE001
        _warn(f"wandb log failed ({type(e).__name__}); logging to metrics.jsonl only.")
        self.run = None

  def finish(self) -> None:
    if self.run is not None:
      run, self.run = self.run, None
      try:
        run.finish()
      except Exception as e:  # noqa: BLE001
        _warn(f"wandb finish failed ({type(e).__name__}); metrics.jsonl has every record.")
