"""Export a meta-training run as a pretrained learned optimizer (lopt format)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import jax

from lopt.pretrained import save_pretrained
from training import checkpoint, tracking
from training.records import git_commit
from training.trainer import initial_theta


def export_workdir(workdir: str, out_dir: str | None = None, step: int | None = None,
                   extra_metadata: dict[str, Any] | None = None,
                   initial: bool = False, device: str | None = None) -> str:
  """Write ``out_dir`` (default ``workdir/export``) from the run's newest checkpoint
  (or the checkpoint of ``step``).

  ``initial=True`` exports the run's θ at outer step 0 instead (default
  ``workdir/export_init``): the untrained LO, to measure what meta-training bought.
  A θ with a non-finite entry is never exported (a ValueError naming the tensor); a
  missing or unreadable ``config.json`` or checkpoint is a ``checkpoint.WorkdirError``.
  ``device``: the device kind recorded in the metadata (default: this process's).

  With several JAX processes, use ``export_in_subprocess``: orbax's save would
  wait for the other processes.
  """
  config = checkpoint.read_config(workdir)
  if config is None:
    raise checkpoint.WorkdirError(
        f"{workdir} has no readable config.json: is it a meta-training workdir? (Re-running "
        "the training command on it rewrites config.json.)")
  lopt = config.lo
  if initial:
    theta, step = initial_theta(config), 0  # save_pretrained refuses a non-finite θ
    out_dir = out_dir or os.path.join(workdir, "export_init")
  else:
    step, theta = checkpoint.restore_theta(os.path.join(workdir, "checkpoints"), step)
  metadata = {**run_metadata(config, workdir, step, device), **(extra_metadata or {})}
  out_dir = out_dir or os.path.join(workdir, "export")
  save_pretrained(out_dir, lopt, theta, metadata)
  return out_dir


def run_metadata(config: Any, workdir: str, step: int, device: str | None = None
                 ) -> dict[str, Any]:
  """The metadata every export of θ at outer step ``step`` of ``workdir``'s run
  carries: recipe, budget (inner steps and CPU-hours from the newest metrics row
  at or before ``step``; absent at step 0) and provenance."""
  metrics = (tracking.read_metrics(workdir)
             if step and os.path.exists(os.path.join(workdir, "metrics.jsonl")) else [])
  upto = [r for r in metrics if r.get("step", 0) <= step]
  last = upto[-1] if upto else {}
  training = {
      "recipe": config.recipe(),
      "estimator": config.estimator,
      "distribution": config.distribution,
      "outer_steps": int(step),
      "final_meta_loss": last.get("meta_loss"),
      "inner_steps": last.get("inner_steps"),
      "cpu_hours": last.get("cpu_hours"),
      "device": device or jax.devices()[0].device_kind,
      "commit": git_commit(),
  }
  if config.init_theta is not None:  # a warm start: the budget includes the parent's
    from lopt.pretrained import load_metadata
    parent = load_metadata(config.init_theta).get("training", {})
    training["warm_start"] = {"from": config.init_theta,
                              **{k: parent.get(k) for k in ("outer_steps", "inner_steps",
                                                            "cpu_hours")}}
    for k in ("inner_steps", "cpu_hours"):
      if parent.get(k) is not None:
        training[k] = parent[k] + (training[k] or 0)
  return {"parameterization": "mup" if config.lo.mup else "sp", "training": training}


def split_step(source: str) -> tuple[str, int | None]:
  """``"WORKDIR@STEP"`` -> (WORKDIR, STEP); a plain ``"WORKDIR"`` -> (WORKDIR, None)."""
  workdir, sep, step = source.rpartition("@")
  if not sep:
    return source, None
  if not step.isdigit():
    raise ValueError(f"{source!r}: expected WORKDIR@STEP with STEP an outer step "
                     "(0 is the untrained θ), e.g. runs/mulo-m@400.")
  return workdir, int(step)


def export_source(source: str, out_dir: str | None = None,
                  extra_metadata: dict[str, Any] | None = None) -> str:
  """Export ``WORKDIR`` (newest checkpoint) or ``WORKDIR@STEP`` (that checkpoint;
  ``@0`` is the initial θ, the start of meta-training) to ``out_dir``; by
  default ``WORKDIR/export``, ``WORKDIR/export@STEP`` or ``WORKDIR/export_init``."""
  workdir, step = split_step(source)
  if out_dir is None and step:
    out_dir = os.path.join(workdir, f"export@{step}")
  return export_workdir(workdir, out_dir, step=step or None, initial=step == 0,
                        extra_metadata=extra_metadata)


# Launch variables that would make a child process join the distributed run.
_LAUNCH_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                "JAX_LOCAL_DEVICE_IDS", "LOPT_DISTRIBUTED", "SLURM_NTASKS",
                "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_SIZE")


def run_cpu_child(args: list[str], what: str, min_lines: int = 0) -> list[str]:
  """The stdout lines of ``python -m ARGS`` in a fresh single CPU process, outside
  the distributed run: what process 0 of a multi-process run exports with
  (orbax's save would otherwise wait for the other processes). A failure (or
  fewer than ``min_lines`` lines) is a ``WorkdirError``: "``what`` failed"."""
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARS}
  env.update(JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p))
  out = subprocess.run([sys.executable, "-m", *args], env=env, cwd=root, capture_output=True,
                       text=True)
  lines = out.stdout.strip().splitlines()
  if out.returncode != 0 or len(lines) < min_lines:
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    raise checkpoint.WorkdirError(f"{what} failed: {last}")
  return lines


def export_in_subprocess(workdir: str) -> tuple[str, str]:
  """``export_workdir`` of the trained and the initial θ in a ``run_cpu_child``;
  returns both output directories."""
  lines = run_cpu_child(["training.export", workdir, "--device", jax.devices()[0].device_kind],
                        f"exporting {workdir}", min_lines=2)
  return lines[-2], lines[-1]


def main(argv: list[str] | None = None) -> int:
  """``python -m training.export WORKDIR [--device KIND]``: export the trained
  and the initial θ; prints the two directories, one a line."""
  import argparse
  parser = argparse.ArgumentParser(prog="python -m training.export")
  parser.add_argument("workdir")
  parser.add_argument("--device", default=None)
  args = parser.parse_args(argv)
  try:
    trained = export_workdir(args.workdir, device=args.device)
    initial = export_workdir(args.workdir, initial=True, device=args.device)
  except (ValueError, FloatingPointError, OSError) as e:
    from training.cli import error_status
    return error_status(e)
  print(trained)
  print(initial)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
