"""Orbax checkpoints of the complete meta-training state, with safe resume.

The state pytree (θ, outer optimizer state, every estimator's particles and
noise, RNG key, counters) is saved as a flat dict of arrays: the tree structure
comes from the code at restore time, which keeps checkpoints independent of
orbax's handling of NamedTuples. θ is also saved as its own nested item, so an
LO can be exported from any checkpoint, and ``meta`` records the run's config.
Nothing is ever pickled.

With several processes (``jax.distributed``), every process takes part in each
save and restore: each writes and reads its own shards of the particle-sharded
estimator state, and process 0 writes the replicated parts, ``config.json``
and the metrics.

Resume rules:
* The recipe (``MetaTrainConfig.recipe()``) of the command must match the one
  the workdir records, both in ``config.json`` and in the metadata of the
  checkpoint that is restored; a mismatch is an error that names the differing
  fields. An unreadable ``config.json`` is reported and rewritten from the
  checkpoint's own record.
* A checkpoint is used only if all of its items restore, its θ item equals the
  θ inside its state and is finite, and its metadata is a valid config. One
  that fails (partial or corrupt) is reported and the previous one is tried; the
  failed ones are moved to ``WORKDIR/checkpoints_corrupt/`` so the run writes
  those steps again. If none restores, it is an error: never a silent restart.
* θ is never checkpointed unless every entry is finite.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from training import sharding
from training.config import MetaTrainConfig, config_from_json, dumps

log = logging.getLogger(__name__)

CORRUPT_DIR = "checkpoints_corrupt"


class WorkdirError(ValueError):
  """The workdir, its config or its checkpoints cannot be used as asked (one-line message)."""


def _flat(tree: Any) -> dict[str, Any]:
  return {f"{i:05d}": x for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def _warn(message: str) -> None:
  log.warning(message)
  if jax.process_index() == 0:
    print(f"WARNING: {message}", flush=True)


def _short(error: BaseException, limit: int = 200) -> str:
  text = " ".join(f"{type(error).__name__}: {error}".split())
  return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------- workdir
def check_workdir(workdir: Any, flag: str = "--workdir") -> str:
  """Create ``workdir`` if needed (with its parents) and check that it is a
  writable directory; ``WorkdirError`` naming ``flag`` otherwise."""
  if not isinstance(workdir, str) or not workdir.strip():
    raise WorkdirError(f"{flag} must be a directory path, got {workdir!r}.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"{flag} {workdir} is an existing file, not a directory.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"{flag} {workdir} cannot be created: {e.strerror or e}.") from None
  try:  # os.access is not enough: root ignores permission bits, read-only mounts do not
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write-test-"):
      pass
  except OSError as e:
    raise WorkdirError(f"{flag} {workdir} is not writable: {e.strerror or e}.") from None
  return workdir


def _recipe_diff(recorded: MetaTrainConfig, config: MetaTrainConfig) -> dict[str, tuple]:
  theirs = recorded.recipe()
  return {k: (theirs.get(k), v) for k, v in config.recipe().items() if theirs.get(k) != v}


def check_recipe(recorded: MetaTrainConfig, config: MetaTrainConfig, where: str,
                 workdir: str) -> None:
  """``WorkdirError`` naming every recipe field in which ``config`` differs."""
  diff = _recipe_diff(recorded, config)
  if diff:
    fields = "; ".join(f"{k}: {where} has {a!r}, command asks {b!r}"
                       for k, (a, b) in diff.items())
    raise WorkdirError(f"The workdir {workdir} holds a run with a different config ({fields}). "
                       "Use a new --workdir, or repeat the original settings to resume.")


def read_config(workdir: str) -> MetaTrainConfig | None:
  """The config recorded in ``workdir/config.json``; None if there is none, or
  if it is unreadable (reported: the checkpoints' own record is checked instead)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      data = json.load(f)
    if not isinstance(data, dict):
      raise ValueError(f"expected a JSON object, got {type(data).__name__}")
  except (OSError, ValueError) as e:
    _warn(f"{path} is unreadable ({_short(e)}); checking the command against the "
          "checkpoints' own record of the config instead, and rewriting it.")
    return None
  try:
    return config_from_json(data)
  except ValueError as e:
    raise WorkdirError(f"{path} does not hold a valid config of this version "
                       f"({' '.join(str(e).split())}).") from None


def check_or_write_config(workdir: str, config: MetaTrainConfig) -> None:
  """Compare ``config`` with the recorded one (if readable), then write it."""
  recorded = read_config(workdir)
  if recorded is not None:
    check_recipe(recorded, config, "workdir", workdir)
  write_config(workdir, config)


def write_config(workdir: str, config: MetaTrainConfig) -> None:
  """Write ``workdir/config.json`` atomically (process 0 only)."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, "config.json")
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(dumps(config))
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _check_finite(theta: Any, what: str) -> None:
  bad = sum(int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            for x in jax.tree_util.tree_leaves(theta))
  if bad:
    total = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(theta))
    raise FloatingPointError(f"{what}: θ has {bad} of {total} entries non-finite.")


def _host(tree: Any) -> Any:
  """Host numpy copies (works for arrays replicated over several processes too)."""
  return jax.tree_util.tree_map(np.asarray, tree)


# ---------------------------------------------------------------------- checkpoints
class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a run under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, theta: Any, meta: dict[str, Any]) -> None:
    theta = _host(theta)
    _check_finite(theta, f"refusing to checkpoint step {step}")
    leaves = jax.tree_util.tree_leaves(state)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
      state = jax.device_get(state)  # one process: plain host arrays
    # Several processes: global arrays, each process writes its own shards.
    saved = self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_flat(state)),
        theta=ocp.args.StandardSave(theta),
        meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()
    if not saved:
      raise WorkdirError(f"orbax did not save step {step} in {self.directory} (it holds steps "
                         f"{self.steps()}); remove the checkpoints past the step to resume from.")

  def _restore_one(self, step: int, target: dict, theta_target: Any, treedef,
                   num_theta_leaves: int) -> tuple[Any, dict]:
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), theta=ocp.args.StandardRestore(theta_target),
        meta=ocp.args.JsonRestore()))
    flat, meta = restored["state"], restored["meta"]
    if sorted(flat) != sorted(target):
      raise ValueError(f"state has {len(flat)} arrays, expected {len(target)}")
    for key, spec in target.items():
      if tuple(np.shape(flat[key])) != tuple(spec.shape):
        raise ValueError(f"leaf {key} has shape {np.shape(flat[key])}, expected {spec.shape}")
    state = jax.tree_util.tree_unflatten(treedef, [flat[k] for k in sorted(flat)])
    theta = jax.tree_util.tree_leaves(restored["theta"])
    in_state = jax.tree_util.tree_leaves(state)[:num_theta_leaves]
    if len(theta) != num_theta_leaves or any(
        np.shape(a) != np.shape(b) or not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(theta, in_state)):
      raise ValueError("the theta item differs from the θ inside the state")
    _check_finite(theta, "non-finite θ")
    if not isinstance(meta, dict) or meta.get("step", step) != step:
      raise ValueError(f"metadata is not this step's ({str(meta)[:80]})")
    meta["recorded_config"] = config_from_json(meta["config"]) if "config" in meta else None
    return state, meta

  def restore_latest(self, abstract_state: Any, config: MetaTrainConfig | None = None,
                     shardings: Any = None) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest checkpoint that restores, or None if
    there is none at all. Raises ``WorkdirError`` if checkpoints exist but none
    is readable, or if the restored one records a recipe other than ``config``'s.

    ``shardings`` (a pytree of shardings shaped like ``abstract_state``) places
    the restored arrays on a mesh; without it they come back as host arrays.
    A checkpoint fails if any item (state, θ, metadata) is unreadable, if its θ
    item differs from the state's θ or is non-finite. Failed checkpoints newer
    than the restored one are moved to ``WORKDIR/checkpoints_corrupt/`` with a
    warning, so that the resumed run writes those steps again.
    """
    steps = self.steps()
    if not steps:
      return None
    leaves, treedef = jax.tree_util.tree_flatten(abstract_state)
    shard_leaves = (jax.tree_util.tree_leaves(shardings) if shardings is not None
                    else [None] * len(leaves))
    target = {f"{i:05d}": jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
              for i, (x, s) in enumerate(zip(leaves, shard_leaves))}
    abstract_theta = abstract_state.theta
    theta_target = jax.tree_util.tree_map(lambda x: np.zeros(np.shape(x), x.dtype),
                                          abstract_theta)
    num_theta = len(jax.tree_util.tree_leaves(abstract_theta))
    errors = []
    for step in reversed(steps):
      try:
        state, meta = self._restore_one(step, target, theta_target, treedef, num_theta)
        ok, error = True, None
      except Exception as e:  # orbax raises many types for partial/corrupt files
        ok, error = False, e
      # Every process must resume from the same step.
      if not sharding.all_processes_agree(ok, "restore"):
        errors.append((step, _short(error) if error is not None else "failed on another process"))
        continue
      recorded = meta.pop("recorded_config")
      if config is not None and recorded is not None:
        check_recipe(recorded, config, f"checkpoint {step}", self.workdir)
      if errors:
        moved = self._quarantine([s for s, _ in errors])
        _warn(f"checkpoint(s) {[s for s, _ in errors]} could not be restored ({errors[0][1]}); "
              f"resuming from step {step}; the damaged ones were moved to {moved}.")
      return step, state, meta
    raise WorkdirError(
        f"Found checkpoints {steps} in {self.directory} but none could be restored ("
        + "; ".join(f"step {s}: {msg}" for s, msg in errors)
        + "). Refusing to start over in this workdir (that would lose the run); use a new "
          "--workdir or remove the damaged checkpoints.")

  def _quarantine(self, steps: list[int]) -> str:
    """Move the given step directories out of the manager's sight."""
    dest_root = os.path.join(os.path.dirname(self.directory), CORRUPT_DIR)
    if jax.process_index() == 0:
      os.makedirs(dest_root, exist_ok=True)
      stamp = time.strftime("%Y%m%d-%H%M%S")
      for step in steps:
        src = os.path.join(self.directory, str(step))
        if os.path.exists(src):
          shutil.move(src, os.path.join(dest_root, f"{step}-{stamp}"))
    sharding.process_barrier("quarantine")
    self.manager.reload()
    return dest_root

  def close(self) -> None:
    self.manager.close()


def restore_theta(checkpoint_dir: str, step: int | None = None) -> tuple[int, Any]:
  """(step, θ) from a run's checkpoints (the newest if ``step`` is None), θ as a
  nested dict of host arrays. ``WorkdirError`` if there is none, if it cannot be
  read, or if θ is non-finite. Reads on this process only (no collectives)."""
  me = jax.process_index()
  directory = os.path.abspath(checkpoint_dir)
  if not os.path.isdir(directory):
    raise WorkdirError(f"No checkpoints in {checkpoint_dir}.")
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
      read_only=True, multiprocessing_options=ocp.options.MultiprocessingOptions(
          primary_host=me, active_processes={me})))
  try:
    steps = sorted(manager.all_steps())
    if not steps:
      raise WorkdirError(f"No checkpoints in {checkpoint_dir}.")
    if step is None:
      step = steps[-1]
    elif step not in steps:
      raise WorkdirError(f"No checkpoint of step {step} in {checkpoint_dir} (it has {steps}).")
    try:
      restored = manager.restore(step, args=ocp.args.Composite(theta=ocp.args.StandardRestore()))
    except Exception as e:  # orbax raises many types for partial/corrupt files
      raise WorkdirError(f"θ of checkpoint {step} in {checkpoint_dir} cannot be read "
                         f"({_short(e)}); re-run the training command to repair it.") from None
  finally:
    manager.close()
  theta = _host(restored["theta"])
  try:
    _check_finite(theta, f"checkpoint {step} in {checkpoint_dir}")
  except FloatingPointError as e:
    raise WorkdirError(f"{e} Refusing to export it.") from None
  return step, theta
