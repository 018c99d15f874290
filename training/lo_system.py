"""Inner training with a learned optimizer, as a truncated-unroll system.

One particle = one instance of a task (fresh params from a dynamic sample)
trained by the LO at θ. ``unroll`` runs K inner steps as one ``lax.scan``:
sample a batch on device, take the loss gradient, apply the LO update. When
the particle's episode reaches its horizon it resets in place to a new task
instance and a new horizon from the truncation schedule.

The reset state is built once per truncation, outside the scan, and selected
in at the step where the episode ends, so no step pays for a re-init. That
needs the truncation length K to be at most the shortest horizon (one reset
per truncation at most), which ``__post_init__`` checks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lopt.protocol import LearnedOptimizer
from training.system import UnrollOutput, scan_unroll, tree_where
from training.task_spec import optimizer_spec


@dataclasses.dataclass(frozen=True)
class TruncationSchedule:
  """Episode lengths in [min_length, longest] with density ∝ length ** -power,
  constant if equal.

  ``power`` 1 (log-uniform episodes) spends the inner steps uniformly over
  lengths, so the meta-gradient weighs an episode by its length; ``power`` 2
  spends them log-uniformly: 50-300 steps get as much as 300-1800.
  ``curriculum``: knots ``((outer_step, longest), ...)``; between two knots the
  longest length grows log-linearly with the outer step, before the first and
  after the last it holds. Empty: ``max_length`` at every outer step.
  """
  min_length: int = 100
  max_length: int = 1000
  curriculum: tuple[tuple[int, int], ...] = ()
  power: float = 1.0

  def __post_init__(self):
    if not 1 <= self.min_length <= self.max_length:
      raise ValueError(f"Need 1 <= min_length <= max_length, got {self.min_length}, "
                       f"{self.max_length}.")
    if not (math.isfinite(self.power) and self.power >= 0):
      raise ValueError(f"power must be a finite float >= 0, got {self.power!r}.")
    steps = [s for s, _ in self.curriculum]
    if steps != sorted(set(steps)) or any(
        not self.min_length <= h <= self.max_length for _, h in self.curriculum):
      raise ValueError(f"curriculum knots need increasing outer steps and lengths in "
                       f"[{self.min_length}, {self.max_length}], got {self.curriculum}.")

  def longest(self, outer_step) -> jax.Array:
    """The longest episode length at ``outer_step`` (a traced int is fine)."""
    if not self.curriculum:
      return jnp.asarray(self.max_length, jnp.int32)
    steps, lengths = zip(*self.curriculum)
    log_h = jnp.interp(jnp.asarray(outer_step, jnp.float32), jnp.asarray(steps, jnp.float32),
                       jnp.log(jnp.asarray(lengths, jnp.float32)))
    return jnp.round(jnp.exp(log_h)).astype(jnp.int32)

  def sample(self, key: jax.Array, outer_step=0) -> jax.Array:
    if not self.curriculum:  # Python-float bounds: the draws of runs made before curricula
      lo, hi, top = math.log(self.min_length), math.log(self.max_length + 1), self.max_length
    else:
      top = self.longest(outer_step)
      lo, hi = math.log(self.min_length), jnp.log(top.astype(jnp.float32) + 1)
    if self.power == 1:
      h = jnp.exp(jax.random.uniform(key, (), minval=lo, maxval=hi))
    else:  # inverse CDF of density ∝ x ** -power on [min_length, top + 1)
      a = 1.0 - self.power
      low, high = self.min_length ** a, jnp.exp(a * hi)
      h = (low + jax.random.uniform(key, ()) * (high - low)) ** (1.0 / a)
    return jnp.clip(jnp.floor(h), self.min_length, top).astype(jnp.int32)


class InnerState(NamedTuple):
  params: Any
  opt_state: Any
  step: jax.Array      # int32: inner steps taken in this episode
  horizon: jax.Array   # int32: length of this episode
  # float32: this episode's factor on every update (``step_mult_spread``); None: off.
  step_scale: Any = None


# Normalized losses below this are "solved": keeps log(meta-loss) bounded.
LOG_META_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class LOTrainingSystem:
  """A ``TruncatedSystem`` whose inner problem is ``task`` trained by ``lopt``.

  ``lopt`` is any learned optimizer with the functional interface
  ``init_state(params)`` / ``update(theta, grads, state, params, num_steps=, mup=, loss=)``.
  ``meta_loss``: "train" (normalized training loss of each step's batch) or
  "valid" (normalized loss on a batch of the task's validation split, which
  its training batches never draw from and evaluation never reports).
  ``log_meta_loss``: use log(normalized loss + ``LOG_META_FLOOR``) instead, so
  that halving the loss late in training counts as much as halving it early
  (a linear mean barely sees the difference between 1e-2 and 1e-3).
  """
  lopt: LearnedOptimizer
  task: Any
  truncation_length: int = 50
  schedule: TruncationSchedule = TruncationSchedule()
  meta_loss: str = "train"
  log_meta_loss: bool = False
  random_initial_offset: bool = True
  # Only the last ``final_fraction`` of each episode's steps carry meta-loss
  # (the others report 0, identically for both members of a pair, so they add
  # nothing to Δ): users judge the end of training, and an average over the
  # whole trajectory rewards speed, which on small data is memorization.
  final_fraction: float = 1.0
  # Each episode's updates are multiplied by a factor drawn log-uniformly in
  # [1/spread, spread] (1: off), the same for both members of a pair. The
  # objective is then smoothed over the global step size, so ES sees beyond
  # its local slope there, and the adaptive head is rewarded for correcting a
  # step that is too large or too small for the task (as a user's model
  # without μP, or with another init, has).
  step_mult_spread: float = 1.0
  # The task's on-device arrays (``task.data()``). Pass them in as an argument of
  # the jitted step, not closed over: a closed-over dataset becomes a constant
  # baked into the program, which is slow to compile at ImageNet scale.
  data: Any = dataclasses.field(default=None, compare=False)
  # The outer step (traced) that sets the schedule's curriculum; 0 outside training.
  outer_step: Any = dataclasses.field(default=0, compare=False)

  def __post_init__(self):
    if self.meta_loss not in ("train", "valid"):
      raise ValueError(f"meta_loss must be 'train' or 'valid', got {self.meta_loss!r}.")
    if not 0 < self.final_fraction <= 1:
      raise ValueError(f"final_fraction must be in (0, 1], got {self.final_fraction!r}.")
    if not (math.isfinite(self.step_mult_spread) and self.step_mult_spread >= 1):
      raise ValueError(f"step_mult_spread must be a finite float >= 1, "
                       f"got {self.step_mult_spread!r}.")
    if self.meta_loss == "valid" and not getattr(self.task, "reserve_valid", False):
      raise ValueError(
          f"meta_loss='valid' needs a validation split disjoint from the test split that "
          f"evaluation reports, but task {self.task.name} has none: build it with "
          "reserve_valid=True.")
    if not 1 <= self.truncation_length <= self.schedule.min_length:
      raise ValueError(
          f"truncation_length ({self.truncation_length}) must be between 1 and the "
          f"shortest episode ({self.schedule.min_length}): a particle resets at most "
          "once per truncation.")

  def _fresh(self, key: jax.Array, horizon: jax.Array) -> InnerState:
    params = self.task.init(key)
    scale = None
    if self.step_mult_spread > 1:  # its own key: params are those of a run without it
      log_s = math.log(self.step_mult_spread)
      scale = jnp.exp(jax.random.uniform(jax.random.fold_in(key, 1), (), minval=-log_s,
                                         maxval=log_s))
    return InnerState(params, self.lopt.init_state(params), jnp.zeros((), jnp.int32), horizon,
                      scale)

  def init_state(self, key: jax.Array, *, random_offset: bool = True) -> InnerState:
    k_init, k_h, k_off = jax.random.split(key, 3)
    horizon = self.schedule.sample(k_h, self.outer_step)
    if random_offset and self.random_initial_offset:
      # A shorter first episode desynchronises the particles' resets, without
      # showing the LO a mid-training step counter on freshly initialised params.
      horizon = jax.random.randint(k_off, (), self.truncation_length, horizon + 1)
    return self._fresh(k_init, horizon.astype(jnp.int32))

  def inner_step(self, theta, state: InnerState, key: jax.Array):
    """One LO step on one batch: returns (new_state, raw training loss)."""
    k_batch, k_loss = jax.random.split(key)
    batch = self.task.sample_batch(k_batch, data=self.data)
    loss, grads = jax.value_and_grad(self.task.loss)(state.params, batch, k_loss)
    # Tensor roles (kinds) exist for SP and μP tasks alike; an SP-mode LO ignores them.
    # An LO that reads the data budget gets the episode's planned passes over
    # the task's training split, as a user passes epochs=.
    extra = ({"epochs": state.horizon * self.task.epochs_per_step(self.data)}
             if getattr(self.lopt, "reads_epochs", False) else {})
    updates, opt_state = self.lopt.update(theta, grads, state.opt_state, state.params,
                                          num_steps=state.horizon, mup=optimizer_spec(self.task),
                                          loss=loss, **extra)
    if state.step_scale is not None:
      updates = jax.tree_util.tree_map(lambda u: u * state.step_scale, updates)
    params = jax.tree_util.tree_map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
    return InnerState(params, opt_state, state.step + 1, state.horizon, state.step_scale), loss

  def unroll(self, theta_cur, theta_next, state: InnerState, key: jax.Array):
    k_reset, k_h, k_steps = jax.random.split(key, 3)
    fresh = self._fresh(k_reset, self.schedule.sample(k_h, self.outer_step))

    def step(theta, state, k):
      new_state, loss = self.inner_step(theta, state, k)
      if self.meta_loss == "valid":
        k_eval = jax.random.fold_in(k, 1)
        batch = self.task.sample_eval_batch(k_eval, split="valid", data=self.data)
        loss = self.task.loss(new_state.params, batch, k_eval)
      end = new_state.step >= new_state.horizon
      # A diverged particle reports NaN (not the normalizer's clipped max) so the
      # estimator excludes its pair, resets it and counts the reset.
      meta = self.task.normalizer(loss)
      if self.log_meta_loss:
        meta = jnp.log(meta + LOG_META_FLOOR)
      meta = jnp.where(jnp.isfinite(loss), meta, jnp.nan)
      if self.final_fraction < 1:
        counted = new_state.step > (1 - self.final_fraction) * new_state.horizon
        meta = jnp.where(counted, meta, 0.0)
      return tree_where(end, fresh, new_state), meta, end

    return scan_unroll(step, theta_cur, theta_next, state, k_steps, self.truncation_length)
