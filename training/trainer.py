"""The outer loop: θ ← AdamW(θ, mean of the estimators' meta-gradients).

Every static task config of the distribution gets its own ``LOTrainingSystem``
and estimator (its own particles); one jitted ``outer_step`` runs all of them
and the θ update, so an outer step is one XLA program and one dispatch. Metrics
come back to the host only every ``log_every`` steps.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.protocol import LearnedOptimizer
from training import checkpoint, meta_validation, sharding, tracking
from training.config import MetaTrainConfig
from training.estimators import make_estimator
from training.lo_system import LOG_META_FLOOR, LOTrainingSystem


class MetaState(NamedTuple):
  theta: Any
  opt_state: Any
  estimator_states: tuple
  key: jax.Array         # base key; step keys are fold_in(key, step)
  step: jax.Array        # int32: outer steps done
  skipped: jax.Array     # int32: outer steps whose meta-gradient was non-finite
  # With dro_eta: float32 [2, tasks], EMAs of each task's summed gap to θ₀ and of
  # its counted steps (their ratio is the mean gap). (): off, and no leaves, so
  # the checkpoints of runs without it restore as they were written.
  task_gaps: Any = ()
  # With theta_ema: θ̄, the running average of θ that the run validates and
  # exports (checkpoint.exported_theta). (): off, no leaves, as task_gaps.
  theta_avg: Any = ()


def split_init_key(key: jax.Array) -> jax.Array:
  """The (θ, estimators, run) keys of a run's initial state, from PRNGKey(seed)."""
  return jax.random.split(key, 3)


def initial_theta(config: MetaTrainConfig) -> Any:
  """θ at outer step 0 of a run with this config: the untrained LO, or the
  warm start ``config.init_theta``."""
  if config.init_theta is not None:
    return load_init_theta(config)
  return config.lo.init(split_init_key(jax.random.PRNGKey(config.seed))[0])


def load_init_theta(config: MetaTrainConfig) -> Any:
  """θ of the pretrained LO ``config.init_theta``, checked against ``config.lo``."""
  import lopt
  try:
    lo, theta = lopt.load_pretrained(config.init_theta)
  except (OSError, ValueError) as e:
    raise ValueError(f"init_theta {config.init_theta!r} is not a readable pretrained LO "
                     f"({' '.join(str(e).split())[:300]}). Pass a shipped name or an export "
                     "directory such as WORKDIR/export_best.") from None
  theta = with_added_rules(lo, theta, config.lo, config.seed)
  if theta is not None:
    return jax.tree_util.tree_map(jnp.asarray, theta)
  raise ValueError(f"init_theta {config.init_theta!r} holds a {type(lo).__name__} with config "
                   f"{lo.to_record()}, but this run's lo is a {type(config.lo).__name__} with "
                   f"{config.lo.to_record()}. Warm-start from an LO of the same config (or one "
                   "whose step rules this run's extend), or set --lo to match it.")


def with_added_rules(lo: Any, theta: Any, target: Any, seed: int) -> Any:
  """θ of the warm start ``lo`` for ``target``: as it is if the configs are
  equal; with the zero-initialized θ of ``target``'s extra step rules added if
  ``target`` is ``lo`` with step rules added (each new rule is the identity at
  its init, so the LO starts exactly where ``lo`` was); None otherwise."""
  if type(lo) is type(target) and lo.to_record() == target.to_record():
    return theta
  steps = getattr(target, "step", None)
  if type(lo) is not type(target) or steps is None:
    return None
  kept = tuple(r for r in steps if r in lo.step)
  if kept != tuple(lo.step) or dataclasses.replace(target, step=kept).to_record() != lo.to_record():
    return None
  fresh = target.init(split_init_key(jax.random.PRNGKey(seed))[0])
  added = {r.theta_key for r in steps if r not in lo.step and r.theta_key}
  return {**theta, **{k: fresh[k] for k in added}}


def make_outer_optimizer(config: MetaTrainConfig,
                         mask: Any = None) -> optax.GradientTransformation:
  """Clipped AdamW under warmup and cosine; leaves where ``mask`` is 0 get no update."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.outer_lr, warmup_steps=config.warmup_steps,
      decay_steps=max(config.outer_steps, config.warmup_steps + 1),
      end_value=config.outer_final_lr)
  opt = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                    optax.adamw(schedule, weight_decay=config.weight_decay))
  if mask is None:
    return opt
  labels = jax.tree_util.tree_map(lambda m: "train" if m else "frozen", mask)
  return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


class MetaTrainer:
  """Builds the systems and estimators of a config; ``outer_step`` is pure."""

  def __init__(self, config: MetaTrainConfig, mesh=None):
    import meta_tasks
    self.config = config
    self.mesh = mesh
    self.lopt: LearnedOptimizer = config.lo
    self.tasks = list(meta_tasks.get_distribution(config.distribution).configs())
    self.theta0 = load_init_theta(config) if config.init_theta is not None else None
    # θ₀ of the recipe (the untrained LO), the reference of the task weights.
    self.reference = (None if config.dro_eta is None else
                      self.lopt.init(split_init_key(jax.random.PRNGKey(config.seed))[0]))
    self.mask = config.frozen_mask(self.theta0 if self.theta0 is not None else
                                   jax.eval_shape(self.lopt.init, jax.random.PRNGKey(0)))
    self.optimizer = make_outer_optimizer(config, self.mask)
    self.particles_per_step = 2 * config.num_pairs * len(self.tasks)
    # What an estimator's ``nan_resets`` counts when every pair (TBPTT: particle) diverged.
    self.resets_if_all_diverged = config.num_pairs * (2 if config.estimator == "tbptt" else 1)
    sharding.check_divisible(config.num_pairs, mesh)

  def data(self) -> tuple:
    """Every task's on-device arrays: an argument of ``outer_step``."""
    return tuple(task.data() for task in self.tasks)

  def estimators(self, data: tuple | None = None, outer_step: Any = 0) -> list:
    """One estimator per static task config. Cheap to build, so ``outer_step``
    builds them while tracing, with the traced ``data`` and outer step (for the
    horizon curriculum) inside each system."""
    c = self.config
    schedule = c.schedule()
    data = data if data is not None else (None,) * len(self.tasks)
    out = []
    for task, task_data in zip(self.tasks, data):
      system = LOTrainingSystem(self.lopt, task, c.truncation_length, schedule,
                                meta_loss=c.meta_loss, log_meta_loss=c.log_meta_loss,
                                final_fraction=c.final_fraction,
                                step_mult_spread=c.step_mult_spread, data=task_data,
                                outer_step=outer_step)
      kwargs = dict(system=system, num_pairs=c.num_pairs, mesh=self.mesh,
                    log_mean_floor=LOG_META_FLOOR if c.log_mean_meta_loss else None)
      if c.estimator != "tbptt":
        kwargs.update(sigma=c.sigma, delta_clip=c.delta_clip, sign_delta=c.sign_delta,
                      noise_mask=self.mask, reference_theta=self.reference)
      if c.estimator == "full_es":
        kwargs["episode_truncations"] = -(-c.max_horizon // c.truncation_length)
      out.append(make_estimator(c.estimator, **kwargs))
    return out

  def init(self, key: jax.Array) -> MetaState:
    k_theta, k_est, k_run = split_init_key(key)
    theta = self.theta0 if self.theta0 is not None else self.lopt.init(k_theta)
    states = tuple(e.init(jax.random.fold_in(k_est, i), theta)
                   for i, e in enumerate(self.estimators()))
    gaps = () if self.reference is None else jnp.zeros((2, len(self.tasks)), jnp.float32)
    # A copy: θ and θ̄ are donated to the jitted step as separate buffers.
    average = jax.tree_util.tree_map(jnp.copy, theta) if self.config.theta_ema else ()
    return MetaState(theta, self.optimizer.init(theta), states, k_run,
                     jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), gaps, average)

  def outer_step(self, state: MetaState, data: tuple) -> tuple[MetaState, dict[str, jax.Array]]:
    """One θ update from every task's estimate.

    A task whose every pair diverged this step contributes nothing (its
    meta-loss is NaN, not 0); if that is every task, or if the meta-gradient,
    the new θ or the new optimizer state is non-finite, θ and the optimizer
    state stay as they were and ``skipped`` counts the step.
    """
    key = jax.random.fold_in(state.key, state.step)
    grads, alive, losses, new_states, gaps, task_noise, metrics = [], [], [], [], [], [], {}
    estimators = self.estimators(data, state.step)
    for i, (est, est_state) in enumerate(zip(estimators, state.estimator_states)):
      g, est_state, m = est.estimate(state.theta, est_state, jax.random.fold_in(key, i))
      ok = m["nan_resets"] < self.resets_if_all_diverged
      grads.append(g)
      alive.append(ok)
      losses.append(m["meta_loss"])
      task_noise.append(m["noise_sq"])
      new_states.append(est_state)
      if self.reference is not None:
        gaps.append((m["ref_gap"], m["ref_steps"]))
      metrics[f"meta_loss/{self.tasks[i].name}"] = jnp.where(ok, m["meta_loss"], jnp.nan)
      metrics["nan_resets"] = metrics.get("nan_resets", 0) + m["nan_resets"]
      metrics["episodes_finished"] = metrics.get("episodes_finished", 0) + m["episodes_finished"]
    for task, g in zip(self.tasks, grads):
      metrics[f"task_grad_norm/{task.name}"] = optax.tree.norm(g)
    weights, task_gaps = None, state.task_gaps
    if self.reference is not None:
      task_gaps, weights = self._task_weights(state.task_gaps, gaps, metrics)
    coefs = task_coefficients(grads, alive, self.config.unit_task_grads, weights)
    grad = _weighted_sum(grads, alive, coefs)
    # The tasks' estimates are independent: the combination's noise is Σ c_t² noise_t.
    noise_sq = sum(jnp.where(a, c * c * n, 0.0) for a, c, n in zip(alive, coefs, task_noise))
    num_alive = sum(a.astype(jnp.int32) for a in alive)
    denominator = jnp.maximum(num_alive, 1)  # for the meta-loss mean below
    updates, opt_state = self.optimizer.update(grad, state.opt_state, state.theta)
    theta = optax.apply_updates(state.theta, updates)
    ok = (num_alive > 0) & _all_finite(grad) & _all_finite(theta) & _all_finite(opt_state)
    # Skipped: θ and the outer optimizer (momentum, weight decay, count) stay put.
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)
    theta, opt_state = keep(theta, state.theta), keep(opt_state, state.opt_state)
    loss_sum = sum(jnp.where(a, l, 0.0) for a, l in zip(alive, losses))
    grad_norm = optax.tree.norm(grad)
    metrics.update(
        meta_loss=jnp.where(num_alive > 0, loss_sum / denominator, jnp.nan),
        grad_norm=grad_norm, theta_norm=optax.tree.norm(theta),
        # Signal and noise of the meta-gradient (‖ĝ‖² = signal + noise in
        # expectation): averaged over steps, whether ES sees anything.
        grad_noise_sq=noise_sq, grad_signal_sq=jnp.square(grad_norm) - noise_sq,
        skipped=state.skipped + (~ok).astype(jnp.int32), **small_theta_parts(theta))
    average = state.theta_avg
    if self.config.theta_ema:
      d = self.config.theta_ema
      average = jax.tree_util.tree_map(lambda a, t: d * a + (1 - d) * t, average, theta)
    new_state = MetaState(theta, opt_state, tuple(new_states), state.key, state.step + 1,
                          metrics["skipped"], task_gaps, average)
    if self.mesh is not None:  # θ, counters and metrics replicated on every device
      new_state = new_state._replace(
          theta=sharding.constrain_replicated(new_state.theta, self.mesh),
          opt_state=sharding.constrain_replicated(new_state.opt_state, self.mesh),
          step=sharding.constrain_replicated(new_state.step, self.mesh),
          skipped=sharding.constrain_replicated(new_state.skipped, self.mesh),
          task_gaps=sharding.constrain_replicated(new_state.task_gaps, self.mesh),
          theta_avg=sharding.constrain_replicated(new_state.theta_avg, self.mesh))
      metrics = sharding.constrain_replicated(metrics, self.mesh)
    return new_state, metrics

  def _task_weights(self, ema: jax.Array, gaps: list, metrics: dict) -> tuple:
    """The new gap EMAs and this step's task weights (``dro_eta``), from each
    task's (summed gap, counted steps) this step; logs the mean gaps and weights.
    A task with no counted steps leaves its EMA as it was."""
    decay = self.config.dro_ema
    step = jnp.asarray(gaps, jnp.float32).T  # [2, tasks]
    step = jnp.where(jnp.isfinite(step), step, 0.0)
    ema = jnp.where(step[1] > 0, decay * ema + (1 - decay) * step, ema)
    gap = ema[0] / jnp.maximum(ema[1], 1e-30)
    weights = dro_weights(gap, self.config.dro_eta)
    for i, task in enumerate(self.tasks):
      metrics[f"ref_gap/{task.name}"] = jnp.where(ema[1, i] > 0, gap[i], jnp.nan)
      metrics[f"task_weight/{task.name}"] = weights[i]
    return ema, weights


def small_theta_parts(theta: Any, max_size: int = 4) -> dict[str, jax.Array]:
  """θ's small leaves (learned scales, schedule shape, EpochScales' w, ...)
  element by element as ``theta/<path>[i]``: logged every step, so a run's
  global knobs can be followed (and a random walk seen) without exporting."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(theta)[0]:
    if 0 < jnp.size(leaf) <= max_size:
      name = "theta/" + ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
      flat = jnp.ravel(leaf)
      out.update({name if flat.shape[0] == 1 else f"{name}[{i}]": flat[i]
                  for i in range(flat.shape[0])})
  return out


def dro_weights(gap: jax.Array, eta: float) -> jax.Array:
  """Task weights softmax(η · max(gap, −1/η)) × tasks: mean 1, the largest
  where θ is furthest behind θ₀ (gap = θ's meta-loss − θ₀'s). A task far ahead
  of θ₀ keeps e⁻¹ of the weight of one level with it, not ~0, so the tasks θ
  already wins are not given up for the others. η = 0 gives all 1."""
  if eta == 0:
    return jnp.ones_like(gap)
  return gap.shape[0] * jax.nn.softmax(eta * jnp.maximum(gap, -1.0 / eta))


def task_coefficients(grads: list, alive: list, unit: bool = False,
                      weights: jax.Array | None = None) -> list[jax.Array]:
  """The combined meta-gradient is Σ_t c_t ĝ_t; these are the c_t: the mean of
  the alive tasks' meta-gradients (0 if none is alive); with ``unit``, each
  scaled to unit norm first (one vote per task); with ``weights`` [tasks], each
  times its weight, the alive tasks' weights rescaled to mean 1 (a diverged
  task's weight goes to the others)."""
  num_alive = sum(a.astype(jnp.float32) for a in alive)
  w = [jnp.ones((), jnp.float32) for _ in alive]
  if weights is not None:
    total = sum(jnp.where(a, weights[i], 0.0) for i, a in enumerate(alive))
    w = [weights[i] * num_alive / jnp.maximum(total, 1e-30) for i in range(len(alive))]
  if unit:
    w = [wi / (optax.tree.norm(g) + 1e-30) for wi, g in zip(w, grads)]
  denominator = jnp.maximum(num_alive, 1.0)
  return [jnp.where(a, wi, 0.0) / denominator for a, wi in zip(alive, w)]


def combine_task_grads(grads: list, alive: list, unit: bool = False,
                       weights: jax.Array | None = None) -> Any:
  """Σ_t c_t ĝ_t with ``task_coefficients``' c_t."""
  return _weighted_sum(grads, alive, task_coefficients(grads, alive, unit, weights))


def _weighted_sum(grads: list, alive: list, coefs: list) -> Any:
  # where, not a product: a dead task's estimate may be NaN.
  return jax.tree_util.tree_map(
      lambda *gs: sum(jnp.where(a, g * c.astype(g.dtype), jnp.zeros_like(g))
                      for a, c, g in zip(alive, coefs, gs)), *grads)


def _all_finite(tree: Any) -> jax.Array:
  leaves = [x for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves \
      else jnp.asarray(True)


def state_shardings(abstract_state: MetaState, mesh) -> MetaState:
  """Shardings of a ``MetaState`` on ``mesh``: each estimator's particles and
  noise split over the particle axis, everything else replicated."""
  whole = sharding.replicated_sharding(mesh)
  out = jax.tree_util.tree_map(lambda _: whole, abstract_state)
  return out._replace(estimator_states=tuple(
      sharding.estimator_state_shardings(s, mesh) for s in abstract_state.estimator_states))


class _StopFlag:
  """SIGTERM/SIGINT ask the loop to checkpoint and exit at the next step."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no handlers, run uninterruptible
        pass
    return self

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.requested = True
    print(f"\nSignal {signal.Signals(signum).name}: checkpointing and stopping.", flush=True)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


# Exit status of scripts/meta_train.py when a signal stopped the run before
# outer_steps (a checkpoint was written: re-run the same command to resume).
# 75 is EX_TEMPFAIL of sysexits.h: "temporary failure, try again".
EXIT_PREEMPTED = 75


def _host_record(metrics: dict[str, jax.Array]) -> dict[str, float | None]:
  """Host floats; a non-finite value (no finite pair this step) becomes None."""
  record = {}
  for k, v in jax.device_get(metrics).items():
    v = float(v)
    record[k] = v if math.isfinite(v) else None
  return record


def _cpu_hours_before(workdir: str, start: int) -> float:
  """CPU-hours the run had spent by outer step ``start`` (0 for a new run)."""
  import os
  if start == 0 or not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    return 0.0
  done = [r for r in tracking.read_metrics(workdir) if r.get("step", 0) <= start]
  return float(next((r["cpu_hours"] for r in reversed(done) if r.get("cpu_hours")), 0.0))


@checkpoint.holds_workdir_lock  # one writer per workdir, locked before any write
def run(config: MetaTrainConfig, workdir: str, *, stop_after: int | None = None,
        callback: Callable[[int, dict], None] | None = None, progress: bool = True) -> MetaState:
  """Meta-train in ``workdir``, resuming from its newest checkpoint if any.

  ``stop_after``: stop (with a checkpoint) after this many outer steps in this
  call, as a preemption would. ``callback(step, record)`` sees every logged
  record (on every process; only process 0 writes files). The returned state's
  ``step`` is below ``config.outer_steps`` when a signal or ``stop_after``
  stopped the run.

  Everything is validated before anything is written: the workdir, the recipe
  against ``config.json`` and against the restored checkpoint's own record, the
  distribution and the device layout. Problems are ``ValueError``s
  (``checkpoint.WorkdirError`` for the workdir and its checkpoints) with a
  one-line message.
  """
  from tqdm.auto import tqdm

  # The distributed init and the workdir check ran in ``holds_workdir_lock``.
  multi = jax.process_count() > 1
  lead = jax.process_index() == 0
  recorded = checkpoint.read_config(workdir)
  if recorded is not None:
    checkpoint.check_recipe(recorded, config, "workdir", workdir, checkpoint.newest_step(workdir))
  mesh = sharding.particle_mesh() if jax.device_count() > 1 else None
  trainer = MetaTrainer(config, mesh)
  init_key = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(trainer.init, init_key)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  wandb = None
  try:
    restored = ckpt.restore_latest(
        abstract, config, shardings=None if mesh is None else state_shardings(abstract, mesh))
    if restored is None:
      state, start = trainer.init(init_key), 0
      if mesh is not None:
        state = sharding.replicate(state._replace(estimator_states=()), mesh)._replace(
            estimator_states=tuple(sharding.shard_estimator_state(s, mesh)
                                   for s in state.estimator_states))
    else:
      start, state, _ = restored
      if mesh is None:
        state = jax.tree_util.tree_map(jnp.asarray, state)
      if lead:
        print(f"Resumed {workdir} from outer step {start}.")
    validator = meta_validation.for_run(config, workdir, start)  # None unless validate_every
    # Only now, with everything validated, does the workdir record this recipe.
    checkpoint.write_config(workdir, config)

    if lead:
      metrics_log = tracking.MetricsLog(workdir, start)
      wandb = tracking.WandbLogger(workdir, config.wandb_project, config.to_json(),
                                   config.wandb_mode)
    compiles_before = tracking.compile_count()
    step_fn = jax.jit(trainer.outer_step, donate_argnums=0)
    data = trainer.data()
    if multi:
      data = sharding.replicate(data, mesh)  # the same host data on every process: one global array
      # Compile ahead, then start together: a process that compiles slower (or
      # misses the compile cache) must not leave the others' first collective waiting.
      step_fn = step_fn.lower(state, data).compile()
      sharding.process_barrier("compiled")
    meta = {"config": config.to_json(), "tasks": [t.name for t in trainer.tasks]}

    # The run's cost so far, carried across resumes through metrics.jsonl:
    # process CPU time (all threads) and inner steps, recorded in the export.
    cpu_before = _cpu_hours_before(workdir, start)
    cpu0 = time.process_time()
    step, last_time, last_step = start, time.perf_counter(), start
    # The meta-gradient's split summed on device over the steps between two
    # records (no host round-trip): one step's estimate of the signal is far
    # too noisy to read alone (training/stats.signal_noise_windows).
    split_sum, split_steps = None, 0
    with _StopFlag() as stop, tqdm(total=config.outer_steps, initial=start,
                                   disable=not (progress and lead), desc="meta-train",
                                   dynamic_ncols=True) as bar:
      while step < config.outer_steps:
        state, metrics = step_fn(state, data)
        split = (metrics["grad_signal_sq"], metrics["grad_noise_sq"])
        split_sum = split if split_sum is None else tuple(map(jnp.add, split_sum, split))
        split_steps += 1
        step += 1
        bar.update(1)
        done = step == config.outer_steps
        validating = meta_validation.is_validation_step(config, step)
        if step % config.log_every == 0 or done or validating:
          record = _host_record({**metrics, "grad_signal_sq_mean": split_sum[0] / split_steps,
                                 "grad_noise_sq_mean": split_sum[1] / split_steps})
          record["grad_split_steps"] = split_steps
          split_sum, split_steps = None, 0
          now = time.perf_counter()
          record.update(step=step, particle_steps_per_s=trainer.particles_per_step
                        * config.truncation_length * (step - last_step) / (now - last_time),
                        compiles=tracking.compile_count() - compiles_before,
                        inner_steps=step * trainer.particles_per_step * config.truncation_length,
                        cpu_hours=cpu_before + (time.process_time() - cpu0) / 3600)
          last_time, last_step = now, step
          if validating and validator is not None:  # reads θ only; its time is not throughput
            record.update(validator(step, checkpoint.exported_theta(state)))
            last_time = time.perf_counter()
          if lead:
            metrics_log.write(record)
            wandb.log({k: v for k, v in record.items() if v is not None}, step)
          loss = record["meta_loss"]
          bar.set_postfix(meta_loss="all diverged" if loss is None else f"{loss:.4f}")
          if callback is not None:
            callback(step, record)
        preempted = stop.requested or (stop_after is not None and step - start >= stop_after)
        if multi:  # a signal may reach one process only: all stop at the same step
          preempted = sharding.any_process(preempted, "preempted")
        if step % config.checkpoint_every == 0 or done or preempted:
          ckpt.save(step, state, checkpoint.exported_theta(state), {**meta, "step": step})
        if preempted:
          break
  finally:
    ckpt.close()
    if wandb is not None:
      wandb.finish()
  return state
