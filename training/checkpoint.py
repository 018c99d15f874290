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
* Every checkpoint carries its own integrity record (in its metadata item,
  written in the same atomic orbax commit): a checksum of every state array
  (``lopt-words-v1``, below), of every θ leaf, and the SHA-256 of the rest of
  the metadata. On restore each restored array is checksummed again; any
  mismatch makes the checkpoint corrupt (warned, moved aside, the previous one
  used). A checkpoint written before records existed is used with a warning.
* One writer per workdir: ``workdir_lock`` (an ``fcntl.flock`` on
  ``WORKDIR/.lopt.lock``, released by the OS when the process dies) is held by
  process 0 of a run from before anything is written until the run returns. A
  second run is refused with a ``WorkdirBusy`` naming the PID that holds it.
  With several processes only process 0 locks: it writes every shared file
  (config.json, metrics, the export) and the others write their checkpoint
  shards only in lockstep with it; a lock per process would make the processes
  of one run refuse each other.
* Write failures of the disk (full, file-size limit, read-only, permission)
  are ``lopt.diskio.DiskError``s with one line; orbax's logging and its
  background-thread noise are silenced, and no ``*.orbax-checkpoint-tmp``
  directory is left: a failed save removes its own, and opening the
  checkpoints removes any a killed run left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lopt import diskio
from training import sharding
from training.config import MetaTrainConfig, config_from_json, dumps

log = logging.getLogger(__name__)

CORRUPT_DIR = "checkpoints_corrupt"


class WorkdirError(ValueError):
  """The workdir, its config or its checkpoints cannot be used as asked (one-line message)."""


class WorkdirBusy(WorkdirError):
  """Another process holds the workdir's lock."""


LOCK_FILE = ".lopt.lock"
_held: dict[str, list] = {}  # lock path -> [file descriptor, depth]: re-entrant per process


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      text = f.read().split()
  except OSError:
    text = []
  if text and text[0].isdigit():
    return f"PID {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "")
  return "a process that has not written its PID yet"


def _acquire(workdir: str) -> str:
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  if path in _held:
    _held[path][1] += 1
    return path
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise diskio.as_disk_error(e, f"cannot create the lock file {path}") from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise WorkdirBusy(
          f"The workdir {workdir} is in use by another run ({_holder(path)} holds {path}); "
          "wait for it to finish, or use another --workdir.") from None
    raise
  os.ftruncate(fd, 0)
  os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
  _held[path] = [fd, 1]
  diskio.remove_stale_temps(workdir)  # what a killed writer of this workdir left
  return path


def _release(path: str) -> None:
  entry = _held.get(path)
  if entry is None:
    return
  entry[1] -= 1
  if entry[1] == 0:
    del _held[path]
    fcntl.flock(entry[0], fcntl.LOCK_UN)
    os.close(entry[0])


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Hold ``WORKDIR/.lopt.lock`` (process 0 only; every process agrees on the
  outcome). ``WorkdirBusy`` names the holder's PID if another process has it.
  Re-entrant within a process (the CLI holds it across training and export)."""
  path, error = None, None
  if jax.process_index() == 0:
    try:
      path = _acquire(workdir)
    except (WorkdirError, OSError) as e:
      error = e
  if not sharding.all_processes_agree(error is None, "workdir_lock"):
    if path is not None:
      _release(path)
    if error is not None:
      raise error
    raise WorkdirBusy(f"Process 0 could not lock the workdir {workdir}.")
  try:
    yield
  finally:
    if path is not None:
      _release(path)


def holds_workdir_lock(run):
  """Decorator for ``trainer.run(config, workdir, ...)``: the workdir is
  checked and locked before the run reads or writes anything in it."""

  @functools.wraps(run)
  def locked(config, workdir, *args, **kwargs):
    sharding.maybe_initialize_distributed()  # before jax.process_index
    check_workdir(workdir)
    with workdir_lock(workdir):
      return run(config, workdir, *args, **kwargs)

  return locked


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


_SCHEDULE_FIELDS = ("max_horizon", "horizon_curriculum")


def _schedules_agree(a: MetaTrainConfig, b: MetaTrainConfig, step: int) -> bool:
  """Whether the two recipes' longest horizons agree at every outer step in
  [0, step]: both are log-linear between the union of their knots, so the knots
  (and the ends) decide."""
  sa, sb = a.schedule(), b.schedule()
  points = {0, step} | {s for s, _ in sa.curriculum + sb.curriculum if s <= step}
  return all(int(sa.longest(t)) == int(sb.longest(t)) for t in points)


def _recipe_diff(recorded: MetaTrainConfig, config: MetaTrainConfig,
                 step: int | None = None) -> dict[str, tuple]:
  theirs = recorded.recipe()
  diff = {k: (theirs.get(k), v) for k, v in config.recipe().items() if theirs.get(k) != v}
  if (step is not None and any(k in diff for k in _SCHEDULE_FIELDS)
      and _schedules_agree(recorded, config, step)):
    for k in _SCHEDULE_FIELDS:  # a curriculum that extends the run past ``step``
      diff.pop(k, None)
  return diff


def check_recipe(recorded: MetaTrainConfig, config: MetaTrainConfig, where: str,
                 workdir: str, step: int | None = None) -> None:
  """``WorkdirError`` naming every recipe field in which ``config`` differs.
  With ``step`` (the outer step resumed from), a horizon schedule that agrees
  with the recorded one up to ``step`` is no difference."""
  diff = _recipe_diff(recorded, config, step)
  if diff:
    fields = "; ".join(f"{k}: {where} has {a!r}, command asks {b!r}"
                       for k, (a, b) in diff.items())
    raise WorkdirError(f"The workdir {workdir} holds a run with a different config ({fields}). "
                       "Use a new --workdir, or repeat the original settings to resume.")


def newest_step(workdir: str) -> int:
  """The newest checkpoint step on disk (0 if none): the most a resume starts from."""
  directory = os.path.join(workdir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return max((int(n) for n in names if n.isdigit()), default=0)


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


def write_config(workdir: str, config: MetaTrainConfig) -> None:
  """Write ``workdir/config.json`` atomically (process 0 only)."""
  if jax.process_index() != 0:
    return
  diskio.write_atomic(os.path.join(workdir, "config.json"), dumps(config))


def exported_theta(state: Any) -> Any:
  """The θ a run validates, checkpoints as its θ item and exports: the average
  θ̄ where the run keeps one (``theta_ema``), else θ itself."""
  average = getattr(state, "theta_avg", ())
  return average if jax.tree_util.tree_leaves(average) else state.theta


def _check_finite(theta: Any, what: str) -> None:
  bad = sum(int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            for x in jax.tree_util.tree_leaves(theta))
  if bad:
    total = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(theta))
    raise FloatingPointError(f"{what}: θ has {bad} of {total} entries non-finite.")


def _host(tree: Any) -> Any:
  """Host numpy copies (works for arrays replicated over several processes too)."""
  return jax.tree_util.tree_map(np.asarray, tree)


# ---------------------------------------------------------------------- integrity
# ``lopt-words-v1``: an array's bytes as 32-bit words u_i (narrower dtypes
# widened, bool as 0/1), then two sums mod 2^32:
#   a = Σ u_i (2i + 1)        b = Σ h(u_i) ((i·0x9E3779B1 + 0x7F4A7C15) | 1)
# with h(u) = v ^ (v >> 13), v = u·0x85EBCA6B. Every weight is odd, hence
# invertible mod 2^32: a change of any single word always changes ``a``, and a
# change of several words goes unnoticed with probability about 2^-64. Integer
# sums are exact in any order, so the host (numpy) and a sharded global array
# (a jitted reduction, for several processes) give the same digest.
CHECKSUM = "lopt-words-v1"
_MASK = np.uint64(0xFFFFFFFF)
_CHUNK = 1 << 22


def _words_np(x: np.ndarray) -> np.ndarray:
  a = np.ascontiguousarray(x)
  if a.dtype == np.bool_:
    return a.reshape(-1).astype(np.uint32)
  view = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}.get(a.dtype.itemsize)
  if view is None:
    raise TypeError(f"cannot checksum dtype {a.dtype}")
  return a.reshape(-1).view(view).astype(np.uint32, copy=False)


def _digest_np(x: Any) -> str:
  words = _words_np(np.asarray(x))
  a = b = 0
  for start in range(0, words.size, _CHUNK):
    u = words[start:start + _CHUNK].astype(np.uint64)
    i = np.arange(start, start + u.size, dtype=np.uint64)
    a += int(np.sum((u * ((2 * i + 1) & _MASK)) & _MASK))
    v = (u * np.uint64(0x85EBCA6B)) & _MASK
    h = v ^ (v >> np.uint64(13))
    w = (((i * np.uint64(0x9E3779B1)) & _MASK) + np.uint64(0x7F4A7C15)) & _MASK | np.uint64(1)
    b += int(np.sum((h * w) & _MASK))
  return f"{a & 0xFFFFFFFF:08x}{b & 0xFFFFFFFF:08x}"


@jax.jit
def _digest_words_jax(x: jax.Array) -> jax.Array:
  if x.dtype == jnp.bool_:
    u = x.astype(jnp.uint32)
  else:
    size = jnp.dtype(x.dtype).itemsize
    view = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
    u = jax.lax.bitcast_convert_type(x, view).astype(jnp.uint32)
  u = u.reshape(-1)
  i = jax.lax.iota(jnp.uint32, u.size)
  a = jnp.sum(u * (2 * i + 1), dtype=jnp.uint32)
  v = u * jnp.uint32(0x85EBCA6B)
  h = v ^ (v >> 13)
  b = jnp.sum(h * ((i * jnp.uint32(0x9E3779B1) + jnp.uint32(0x7F4A7C15)) | 1), dtype=jnp.uint32)
  return jnp.stack([a, b])


def digest(x: Any) -> str:
  """The ``lopt-words-v1`` checksum of one array (host or global)."""
  if getattr(x, "is_fully_addressable", True):
    return _digest_np(np.asarray(x))
  a, b = np.asarray(_digest_words_jax(x))  # a global array: reduced where it lives
  return f"{int(a):08x}{int(b):08x}"


def _meta_digest(meta: dict[str, Any]) -> str:
  body = {k: v for k, v in meta.items() if k != "integrity"}
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _integrity(flat: dict[str, Any], theta: Any, meta: dict[str, Any]) -> dict[str, Any]:
  return {"checksum": CHECKSUM,
          "state": {k: [str(np.dtype(x.dtype)), list(np.shape(x)), digest(x)]
                    for k, x in flat.items()},
          "theta": [digest(x) for x in jax.tree_util.tree_leaves(theta)],
          "meta_sha256": _meta_digest(meta)}


def _verify_meta(meta: dict[str, Any]) -> dict[str, Any] | None:
  """The checkpoint's integrity record after checking the metadata against it;
  None for a checkpoint written before records existed."""
  record = meta.get("integrity")
  if record is None:
    return None
  if not (isinstance(record, dict) and record.get("checksum") == CHECKSUM
          and isinstance(record.get("state"), dict) and isinstance(record.get("theta"), list)):
    raise ValueError("its integrity record is damaged")
  if record.get("meta_sha256") != _meta_digest(meta):
    raise ValueError("its metadata does not match its integrity record")
  return record


def _verify_arrays(record: dict[str, Any], flat: dict[str, Any] | None, theta: list) -> None:
  if flat is not None:
    if sorted(record["state"]) != sorted(flat):
      raise ValueError("its state arrays are not those of its integrity record")
    for key in sorted(flat):
      x = flat[key]
      dtype, shape, want = record["state"][key]
      if (str(np.dtype(x.dtype)), list(np.shape(x))) != (dtype, shape) or digest(x) != want:
        raise ValueError(f"state array {key} does not match its checksum (damaged on disk)")
  if len(theta) != len(record["theta"]) or any(
      digest(x) != want for x, want in zip(theta, record["theta"])):
    raise ValueError("θ does not match its checksum (damaged on disk)")


# ---------------------------------------------------------------------- checkpoints
class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a run under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    diskio.silence_closed_event_loops()
    if jax.process_index() == 0:  # what a killed or failed save left behind
      for tmp in glob.glob(os.path.join(self.directory, "*.orbax-checkpoint-tmp*")):
        shutil.rmtree(tmp, ignore_errors=True)
    sharding.process_barrier("checkpoint_tmp_cleanup")
    try:
      with diskio.quiet_orbax():
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    except Exception as e:  # noqa: BLE001 - orbax raises many types
      raise diskio.as_disk_error(e, f"cannot create {self.directory}") from None
    # Checked now, before any training: an orbax save into a folder it cannot
    # write leaves threads waiting for a signal that never comes.
    error = None
    if jax.process_index() == 0:
      try:
        diskio.check_writable(self.directory)
      except OSError as e:
        error = diskio.as_disk_error(e, f"cannot write in {self.directory}")
    if not sharding.all_processes_agree(error is None, "checkpoints_writable"):
      self.close()
      raise error or diskio.DiskError(f"process 0 cannot write in {self.directory}.")

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, theta: Any, meta: dict[str, Any]) -> None:
    theta = _host(theta)
    _check_finite(theta, f"refusing to checkpoint step {step}")
    leaves = jax.tree_util.tree_leaves(state)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
      state = jax.device_get(state)  # one process: plain host arrays
    # Several processes: global arrays, each process writes its own shards.
    flat = _flat(state)
    meta = {**meta, "integrity": _integrity(flat, theta, meta)}
    try:
      with diskio.quiet_orbax():
        saved = self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flat),
            theta=ocp.args.StandardSave(theta),
            meta=ocp.args.JsonSave(meta)))
        self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - orbax raises many types
      self._failed = True
      diskio.quiet_orbax_from_now()  # its threads may still log this failure
      if jax.process_index() == 0:  # no half-written step is left behind (orbax's other
        pattern = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp*")
        for _ in range(10):         # items may still be finishing their writes)
          for tmp in glob.glob(pattern):
            shutil.rmtree(tmp, ignore_errors=True)
          time.sleep(0.05)
          if not glob.glob(pattern):
            break
      raise diskio.as_disk_error(e, f"cannot write checkpoint {step} in {self.directory}") from None
    if not saved:
      raise WorkdirError(f"orbax did not save step {step} in {self.directory} (it holds steps "
                         f"{self.steps()}); remove the checkpoints past the step to resume from.")

  def _restore_one(self, step: int, target: dict, theta_target: Any, treedef,
                   num_theta_leaves: int) -> tuple[Any, dict]:
    with diskio.quiet_orbax():
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), theta=ocp.args.StandardRestore(theta_target),
          meta=ocp.args.JsonRestore()))
    flat, meta = restored["state"], restored["meta"]
    if not isinstance(meta, dict):
      raise ValueError(f"metadata is not a JSON object ({str(meta)[:80]})")
    record = _verify_meta(meta)
    if sorted(flat) != sorted(target):
      raise ValueError(f"state has {len(flat)} arrays, expected {len(target)}")
    for key, spec in target.items():
      if tuple(np.shape(flat[key])) != tuple(spec.shape):
        raise ValueError(f"leaf {key} has shape {np.shape(flat[key])}, expected {spec.shape}")
    state = jax.tree_util.tree_unflatten(treedef, [flat[k] for k in sorted(flat)])
    theta = jax.tree_util.tree_leaves(restored["theta"])
    in_state = jax.tree_util.tree_leaves(exported_theta(state))
    if len(theta) != num_theta_leaves or any(
        np.shape(a) != np.shape(b) or not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(theta, in_state)):
      raise ValueError("the theta item differs from the θ inside the state (θ̄ with theta_ema)")
    if record is not None:
      _verify_arrays(record, flat, theta)
    _check_finite(theta, "non-finite θ")
    if meta.get("step", step) != step:
      raise ValueError(f"metadata is not this step's ({str(meta)[:80]})")
    meta["recorded_config"] = config_from_json(meta["config"]) if "config" in meta else None
    meta["verified"] = record is not None
    return state, meta

  def restore_latest(self, abstract_state: Any, config: MetaTrainConfig | None = None,
                     shardings: Any = None) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest checkpoint that restores, or None if
    there is none at all. Raises ``WorkdirError`` if checkpoints exist but none
    is readable, or if the restored one records a recipe other than ``config``'s.

    ``shardings`` (a pytree of shardings shaped like ``abstract_state``) places
    the restored arrays on a mesh; without it they come back as host arrays.
    A checkpoint fails if any item (state, θ, metadata) is unreadable, if its θ
    item differs from the state's θ (θ̄ with ``theta_ema``) or is non-finite.
    Failed checkpoints newer than the restored one are moved to
    ``WORKDIR/checkpoints_corrupt/`` with a warning, so that the resumed run
    writes those steps again.
    """
    steps = self.steps()
    if not steps:
      return None
    leaves, treedef = jax.tree_util.tree_flatten(abstract_state)
    shard_leaves = (jax.tree_util.tree_leaves(shardings) if shardings is not None
                    else [None] * len(leaves))
    target = {f"{i:05d}": jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)
              for i, (x, s) in enumerate(zip(leaves, shard_leaves))}
    abstract_theta = exported_theta(abstract_state)
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
      if not meta.pop("verified"):
        _warn(f"checkpoint {step} in {self.directory} has no integrity record (written by an "
              "older lopt): its arrays cannot be verified. The next checkpoint will have one.")
      if config is not None and recorded is not None:
        check_recipe(recorded, config, f"checkpoint {step}", self.workdir, step)
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
          os.replace(src, os.path.join(dest_root, f"{step}-{stamp}"))  # same file system
    sharding.process_barrier("quarantine")
    self.manager.reload()
    return dest_root

  def close(self) -> None:
    try:
      with diskio.quiet_orbax():
        self.manager.close()
    except Exception:  # noqa: BLE001 - after a failed save, which was already reported
      if not getattr(self, "_failed", False):
        raise


def restore_theta(checkpoint_dir: str, step: int | None = None) -> tuple[int, Any]:
  """(step, θ) from a run's checkpoints (the newest if ``step`` is None), θ as a
  nested dict of host arrays. ``WorkdirError`` if there is none, if it cannot be
  read, or if θ is non-finite. Reads on this process only (no collectives)."""
  me = jax.process_index()
  diskio.silence_closed_event_loops()
  directory = os.path.abspath(checkpoint_dir)
  if not os.path.isdir(directory):
    raise WorkdirError(f"No checkpoints in {checkpoint_dir}.")
  with diskio.quiet_orbax():  # its read_only warnings
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
      with diskio.quiet_orbax():
        restored = manager.restore(step, args=ocp.args.Composite(
            theta=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
      meta = restored["meta"]
      if not isinstance(meta, dict):
        raise ValueError("its metadata is not a JSON object")
      record = _verify_meta(meta)
      theta = _host(restored["theta"])
      if record is not None:
        _verify_arrays(record, None, jax.tree_util.tree_leaves(theta))
    except Exception as e:  # orbax raises many types for partial/corrupt files
      raise WorkdirError(f"θ of checkpoint {step} in {checkpoint_dir} cannot be read "
                         f"({_short(e)}); re-run the training command to repair it.") from None
  finally:
    with diskio.quiet_orbax():
      manager.close()
  try:
    _check_finite(theta, f"checkpoint {step} in {checkpoint_dir}")
  except FloatingPointError as e:
    raise WorkdirError(f"{e} Refusing to export it.") from None
  return step, theta
