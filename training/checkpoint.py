"""Orbax checkpoints of the complete meta-training state, with safe resume.

The state pytree (θ, outer optimizer state, every estimator's particles and
noise, RNG key, counters) is saved as a flat dict of arrays: the tree structure
comes from the code at restore time, which keeps checkpoints independent of
orbax's handling of NamedTuples. θ is also saved as its own nested item, so an
LO can be exported from any checkpoint. Nothing is ever pickled.

Resume rules:
* ``config.json`` in the workdir holds the recipe; resuming with a different
  recipe is an error that names the differing fields.
* A checkpoint that fails to restore (partial or corrupt) is reported and the
  previous one is tried; if none restores, it is an error: never a silent restart.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from training.config import MetaTrainConfig, config_from_json, dumps

log = logging.getLogger(__name__)


def _flat(tree: Any) -> dict[str, Any]:
  return {f"{i:05d}": x for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def check_or_write_config(workdir: str, config: MetaTrainConfig) -> None:
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      saved = config_from_json(json.load(f))
    diff = {k: (saved.recipe()[k], v) for k, v in config.recipe().items()
            if saved.recipe().get(k) != v}
    if diff:
      lines = "\n".join(f"  {k}: workdir has {a!r}, command asks {b!r}" for k, (a, b) in diff.items())
      raise ValueError(f"The workdir {workdir} holds a run with a different config:\n{lines}\n"
                       "Use a new --workdir, or repeat the original settings to resume.")
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    f.write(dumps(config))


class Checkpointer:
  """Keeps the last ``keep`` checkpoints of a run under ``workdir/checkpoints``."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, theta: Any, meta: dict[str, Any]) -> None:
    state = jax.device_get(state)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_flat(state)),
        theta=ocp.args.StandardSave(jax.device_get(theta)),
        meta=ocp.args.JsonSave(meta)))
    self.manager.wait_until_finished()

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
    """(step, state, meta) of the newest checkpoint that restores, or None if
    there is none at all. Raises if checkpoints exist but none is readable."""
    steps = self.steps()
    if not steps:
      return None
    leaves, treedef = jax.tree_util.tree_flatten(abstract_state)
    target = {f"{i:05d}": jax.ShapeDtypeStruct(np.shape(x), x.dtype) for i, x in enumerate(leaves)}
    errors = []
    for step in reversed(steps):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        flat = restored["state"]
        for key, spec in target.items():
          if tuple(np.shape(flat[key])) != spec.shape:
            raise ValueError(f"leaf {key} has shape {np.shape(flat[key])}, expected {spec.shape}")
        state = jax.tree_util.tree_unflatten(treedef, [flat[k] for k in sorted(flat)])
      except Exception as e:  # orbax raises many types for partial/corrupt files
        errors.append((step, f"{type(e).__name__}: {e}"[:300]))
        continue
      if errors:
        message = (f"checkpoint(s) {[s for s, _ in errors]} could not be restored "
                   f"({errors[0][1]}); resuming from step {step}.")
        log.warning(message)
        print(f"WARNING: {message}")
      return step, state, restored["meta"]
    raise RuntimeError(
        f"Found checkpoints {steps} in {self.directory} but none could be restored:\n"
        + "\n".join(f"  step {s}: {msg}" for s, msg in errors)
        + "\nRefusing to start over in this workdir (that would lose the run); use a new "
          "--workdir or remove the damaged checkpoints.")

  def close(self) -> None:
    self.manager.close()


def restore_theta(checkpoint_dir: str, step: int | None = None) -> Any:
  """θ from a run's checkpoints (the newest if ``step`` is None), as a nested dict."""
  manager = ocp.CheckpointManager(os.path.abspath(checkpoint_dir))
  steps = sorted(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"No checkpoints in {checkpoint_dir}.")
  step = steps[-1] if step is None else step
  restored = manager.restore(step, args=ocp.args.Composite(theta=ocp.args.StandardRestore()))
  manager.close()
  return restored["theta"]
