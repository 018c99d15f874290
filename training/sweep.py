"""One compiled training sweep: fresh instances of a task trained by an optax
transformation, vmapped over seeds (and over an LR or step-multiplier grid),
``lax.scan`` over steps, batches sampled on device, all inside ONE jitted
program. The transformation is built inside that program from a traced
argument, so a whole LR x seed sweep is a single compile.

* curve: the training loss of step t (t = 1..N) is the minibatch loss of the
  params *before* update t.
* final train loss / test loss / test accuracy: the metrics of the final params
  (schedule-free: its averaged params) averaged over ``eval_batches`` fixed
  batches of the train / test split.
* diverged: any non-finite training loss, or a final train loss the task's
  normalizer maps to its maximum (>= ``MAX_NORMALIZED_LOSS`` x the loss of a
  uniform guess). A diverged run's final losses are +inf. Nothing raises.
* max loss spike: the highest minibatch training loss of a run divided by its
  step-0 loss (1 = never above the start). A learned optimizer that is
  unstable shows here first.
* test curve (``test_every=k``): the test loss on the same fixed batches
  after every k-th update: a run whose training loss goes to 0 while its test
  loss climbs back shows here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_tasks import Task

EVAL_BATCHES = 4
EVAL_KEY_SEED = 2**20       # the fixed eval batches, the same for every run


@dataclasses.dataclass(frozen=True)
class Curves:
  """What one ``train_curves`` call measured. Leading axes: [lr,] seed."""
  train_loss: np.ndarray          # [..., num_steps] per-step minibatch loss
  final_train_loss: np.ndarray    # [...] +inf where diverged
  test_loss: np.ndarray           # [...] +inf where diverged
  test_accuracy: Optional[np.ndarray]  # [...] NaN where diverged; None if no accuracy
  diverged: np.ndarray            # [...] bool
  max_spike: np.ndarray           # [...] max minibatch loss / step-0 loss (+inf if diverged)
  seconds: float                  # wall time of the call, compile included
  # [..., num_steps // test_every] test loss after updates k, 2k, ... (``test_every=k``), else None
  test_curve: Optional[np.ndarray] = None


def _final_metrics(task: Task, params: Any, data: Any, split: str, num_batches: int):
  keys = jax.random.split(jax.random.PRNGKey(EVAL_KEY_SEED), num_batches)
  batches = jax.vmap(lambda k: task.sample_eval_batch(k, split, data=data))(keys)
  metrics = jax.vmap(lambda b: task.metrics(params, b))(batches)
  return jax.tree.map(lambda m: jnp.mean(m.astype(jnp.float32)), metrics)


class Sweep:
  """One compiled training sweep of ``task``, reusable: ``sweep(arg, seeds)``.

  ``make_tx(arg)`` builds the optax transformation while tracing, from ``arg``:
  an argument of the compiled program (a traced pytree: a learning rate, a step
  multiplier, a learned optimizer's θ, or None). Calling the same ``Sweep``
  again with an ``arg`` of the same structure, shapes and dtypes, and as many
  seeds, reuses the compiled program: meta-validation evaluates a new θ every
  few outer steps this way without recompiling. ``grid=True`` vmaps over the
  leading axis of ``arg``'s leaves (an LR or step-multiplier grid).
  ``eval_params(state, params)`` picks the params to evaluate (schedule-free's
  average). ``test_every=k`` (> 0) also records the test loss after every k-th
  update (``Curves.test_curve``, of the params ``eval_params`` picks; the step
  index is not batched, so the evaluation runs only every k-th step). Every
  ``update`` gets ``loss=`` (learned optimizers) and ``obj_fn=`` (Sophia);
  transformations ignore extras they do not use.

  Seed s draws the task instance (init and its dynamic init scale) and the
  batch stream, so every optimizer and LR sees the same instances and data.
  """

  def __init__(self, make_tx: Callable[[Any], optax.GradientTransformation], task: Task,
               num_steps: int, eval_params: Optional[Callable[[Any, Any], Any]] = None,
               eval_batches: int = EVAL_BATCHES, grid: bool = False, test_every: int = 0):
    if num_steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}.")
    if not (isinstance(test_every, int) and not isinstance(test_every, bool)
            and 0 <= test_every <= num_steps):
      raise ValueError(f"test_every must be an int in [0, num_steps={num_steps}] (0: no test "
                       f"curve), got {test_every!r}.")
    self.task, self.num_steps = task, num_steps
    self.data = task.data()  # loaded before jit, passed as an argument (not a constant)
    has_accuracy = "accuracy" in jax.eval_shape(
        lambda d: task.metrics(task.init(jax.random.PRNGKey(0)),
                               task.sample_batch(jax.random.PRNGKey(0), data=d)), self.data)

    # The params to evaluate: schedule-free's average, or the params as trained.
    shown = (lambda state, params: params) if eval_params is None else eval_params

    def one_run(arg, seed, data):
      tx = make_tx(arg)
      k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
      params = task.init(k_init)
      state = tx.init(params)

      def step(carry, t):
        params, state = carry
        k_batch, k_loss = jax.random.split(jax.random.fold_in(k_data, t))
        batch = task.sample_batch(k_batch, data=data)
        loss, grads = jax.value_and_grad(task.loss)(params, batch, k_loss)
        updates, state = tx.update(grads, state, params, loss=loss,
                                   obj_fn=lambda p: task.loss(p, batch, k_loss))
        params = optax.apply_updates(params, updates)
        if not test_every:
          return (params, state), loss
        # eval_params inside the taken branch: computed only on every k-th step.
        test = jax.lax.cond(
            (t + 1) % test_every == 0,
            lambda sp: _final_metrics(task, shown(*sp), data, "test", eval_batches)["loss"],
            lambda sp: jnp.full((), jnp.nan, jnp.float32), (state, params))
        return (params, state), (loss, test)

      (params, state), per_step = jax.lax.scan(step, (params, state), jnp.arange(num_steps))
      losses, tests = per_step if test_every else (per_step, None)
      final = shown(state, params)
      train = _final_metrics(task, final, data, "train", eval_batches)
      test = _final_metrics(task, final, data, "test", eval_batches)
      out = {"train_loss": losses, "final_train_loss": train["loss"], "test_loss": test["loss"],
             "normalized_final_train_loss": task.normalizer(train["loss"])}
      if has_accuracy:
        out["test_accuracy"] = test["accuracy"]
      if test_every:
        out["test_curve"] = tests[test_every - 1::test_every]
      return out

    over_seeds = jax.vmap(one_run, in_axes=(None, 0, None))
    self._run = jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None)) if grid else over_seeds)

  def __call__(self, arg: Any, seeds: Sequence[int]) -> Curves:
    seeds = np.asarray(list(seeds), np.uint32)
    if seeds.ndim != 1 or seeds.size == 0:
      raise ValueError(f"seeds must be a non-empty list of ints, got {seeds!r}.")
    start = time.perf_counter()
    out = jax.tree.map(np.asarray, self._run(arg, seeds, self.data))  # blocks until done
    return _mark_divergence(self.task, out, time.perf_counter() - start)


def train_curves(make_tx: Callable[[Any], optax.GradientTransformation], task: Task,
                 num_steps: int, seeds: Sequence[int], lrs: Optional[Sequence[float]] = None,
                 eval_params: Optional[Callable[[Any, Any], Any]] = None,
                 eval_batches: int = EVAL_BATCHES, test_every: int = 0) -> Curves:
  """Train ``len(seeds)`` fresh instances of ``task`` for ``num_steps`` steps,
  in one compiled program (a ``Sweep`` used once).

  ``make_tx(lr)`` builds the optax transformation; it is called while tracing,
  with ``lr`` a traced float32 scalar (one per grid point; also a step
  multiplier for learned optimizers) or ``None`` when ``lrs`` is None
  (optimizers without a learning rate). See ``Sweep`` for the rest.
  """
  sweep = Sweep(make_tx, task, num_steps, eval_params, eval_batches, grid=lrs is not None,
                test_every=test_every)
  return sweep(None if lrs is None else np.asarray(list(lrs), np.float32), seeds)


def _mark_divergence(task: Task, out: dict[str, np.ndarray], seconds: float) -> Curves:
  curves = out["train_loss"].astype(np.float64)
  final_train = out["final_train_loss"].astype(np.float64)
  # The normalizer clips at its maximum and maps NaN/inf there: that is "diverged".
  normalized = out["normalized_final_train_loss"]
  diverged = (~np.all(np.isfinite(curves), axis=-1) | ~np.isfinite(final_train)
              | (normalized >= task.MAX_NORMALIZED_LOSS))
  test = out["test_loss"].astype(np.float64)
  accuracy = out.get("test_accuracy")
  if accuracy is not None:
    accuracy = np.where(diverged, np.nan, accuracy.astype(np.float64))
  return Curves(train_loss=curves, final_train_loss=np.where(diverged, np.inf, final_train),
                test_loss=np.where(diverged | ~np.isfinite(test), np.inf, test),
                test_accuracy=accuracy, diverged=diverged,
                max_spike=np.where(diverged, np.inf, max_loss_spike(curves)), seconds=seconds,
                test_curve=None if "test_curve" not in out else np.where(
                    diverged[..., None], np.inf, out["test_curve"].astype(np.float64)))


def max_loss_spike(curves: np.ndarray) -> np.ndarray:
  """Highest minibatch loss ÷ the step-0 loss, over the last axis (steps);
  +inf where the curve is not finite."""
  curves = np.asarray(curves, np.float64)
  with np.errstate(all="ignore"):
    spike = np.max(curves, axis=-1) / curves[..., 0]
  return np.where(np.all(np.isfinite(curves), axis=-1) & (curves[..., 0] > 0), spike, np.inf)
