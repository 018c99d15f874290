"""The Task and TaskFamily interfaces, and the small helpers every task shares.

A ``Task`` is a frozen, hashable dataclass holding only the STATIC config of an
inner training problem (dataset, model, widths, batch size). Everything that
may vary per instance without recompiling (init scale, seeds) is drawn from the
key passed to ``init``/``loss``/``sample_batch``, so vmapping those functions
over keys vmaps over task instances.

μP metadata: ``kinds`` is a pytree shaped like the params whose leaves are
``"input" | "embedding" | "hidden" | "output" | "sp_output" | "vector"``
(``"embedding"``: a lookup table, see ``lopt.mup``; kernels in flax
layout, last axis is the output axis, fan_in = prod(shape[:-1])). The readout
of a μP model (which multiplies its output by 1/fan_in) is ``"output"``; the
plain readout of an SP model is ``"sp_output"``, whose step needs 1/fan_in. ``mup`` is ``kinds`` for μP
tasks and ``None`` for SP tasks, which is what ``lopt.mup.multipliers`` and the
optimizers consume.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PARAMETERIZATIONS = ("mup", "sp")
KINDS = ("input", "embedding", "hidden", "output", "sp_output", "vector")
SPLITS = ("train", "valid", "test")


# --------------------------------------------------------------------------
# Validation helpers: every bad config fails early with the bad value and the
# valid choices, before anything is traced or loaded.

def check_choice(what: str, value: Any, choices: Sequence[Any]) -> None:
  if value not in choices:
    valid = ", ".join(repr(c) for c in choices)
    raise ValueError(f"Unknown {what} {value!r}; valid choices: {valid}.")


def check_int(what: str, value: Any, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}.")


def check_range(what: str, value: Any) -> None:
  """A (low, high) pair of positive floats with low <= high."""
  ok = (isinstance(value, tuple) and len(value) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in value)
        and value[0] <= value[1])
  if not ok:
    raise ValueError(f"{what} must be a tuple (low, high) of positive floats with "
                     f"low <= high, got {value!r}.")


# --------------------------------------------------------------------------
# Shared numerics.

def log_uniform(key: jax.Array, low: float, high: float) -> jax.Array:
  """One sample, log-uniform in [low, high]; exactly ``low`` when low == high."""
  if low == high:
    return jnp.asarray(low, jnp.float32)
  u = jax.random.uniform(key, (), jnp.float32)
  return jnp.exp(jnp.log(low) + u * (math.log(high) - math.log(low)))


def scale_matrices(params: Any, scale: jax.Array) -> Any:
  """Multiply every tensor of rank >= 2 (kernels, embeddings) by ``scale``.

  This is the dynamic init-scale augmentation: biases and norm parameters keep
  their fixed init, and zero-initialized readouts stay zero.
  """
  return jax.tree.map(lambda p: p * scale.astype(p.dtype) if p.ndim >= 2 else p, params)


def normalize_loss(loss: jax.Array, reference: float, max_value: float) -> jax.Array:
  """``loss / reference`` clipped to [0, max_value]; NaN/inf map to max_value."""
  loss = jnp.asarray(loss, jnp.float32)
  scaled = jnp.clip(loss / reference, 0.0, max_value)
  return jnp.where(jnp.isfinite(loss), scaled, jnp.float32(max_value))


def kinds_by_module(params: Any, input_modules: Sequence[str],
                    output_modules: Sequence[str], sp_readout: bool = False) -> Any:
  """Kind of each leaf from the name of its top-level module.

  Rank < 2 tensors are vectors; matrices under a module named in
  ``output_modules`` are outputs (``"sp_output"`` with ``sp_readout``: an SP
  model's readout has no 1/fan_in multiplier), under ``input_modules`` inputs,
  and every other matrix is hidden. Models name their layers so this rule is exact.
  """
  def kind(path, leaf):
    top = path[0].key if hasattr(path[0], "key") else str(path[0])
    if np.ndim(leaf) < 2:
      return "vector"
    if top in output_modules:
      return "sp_output" if sp_readout else "output"
    if top in input_modules:  # a dense layer's "kernel", else a lookup table (lopt.mup.DENSE_NAMES)
      last = path[-1].key if hasattr(path[-1], "key") else str(path[-1])
      return "input" if last == "kernel" else "embedding"
    return "hidden"
  return jax.tree_util.tree_map_with_path(kind, params)


# --------------------------------------------------------------------------
# The interfaces.

class Task(abc.ABC):
  """An inner training problem. Subclasses are frozen, keyword-only dataclasses.

  Data: ``data()`` returns the task's on-device arrays (an empty tuple when the
  data is generated on the fly). ``sample_batch(key)`` reads them by closure,
  which is convenient but embeds them in the compiled program as constants;
  for datasets of more than a few MB pass them as a jit argument instead:
  ``jax.jit(lambda data, k: task.sample_batch(k, data=data))(task.data(), key)``.
  """

  # Normalized losses live in [0, MAX_NORMALIZED_LOSS]; diverged runs map to the top.
  MAX_NORMALIZED_LOSS: ClassVar[float] = 2.0
  # Closed-over data larger than this is worth passing as an argument (see above).
  _LARGE_CLOSURE_BYTES: ClassVar[int] = 16 * 2**20

  parameterization: str

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """Readable and unique per static config."""

  @abc.abstractmethod
  def init(self, key: jax.Array) -> Any:
    """Params for one task instance; the key also draws the dynamic params."""

  @abc.abstractmethod
  def loss(self, params: Any, batch: Any, key: jax.Array) -> jax.Array:
    """Mean training loss on the batch (float32 scalar)."""

  @abc.abstractmethod
  def _sample(self, data: Any, key: jax.Array, split: str) -> Any:
    """One batch from ``split`` of ``data`` (jittable)."""

  @abc.abstractmethod
  def metrics(self, params: Any, batch: Any) -> dict[str, jax.Array]:
    """At least ``{"loss": ...}``; classification and LM tasks add ``"accuracy"``."""

  @property
  @abc.abstractmethod
  def reference_loss(self) -> float:
    """The loss that normalizes to 1 (e.g. log(num_classes), the loss of a uniform guess)."""

  @abc.abstractmethod
  def _kinds(self, params: Any) -> Any:
    """Kind of each tensor of ``params`` (shapes only are used)."""

  def data(self) -> Any:
    """On-device arrays the sampler reads; loaded once per process and shared."""
    return ()

  # A task with ``reserve_valid`` (a dataclass field of the tasks that support
  # it) trains on its training data minus the last ``datasets.VALID_FRACTION``,
  # which is its "valid" split: what meta-training validates on, disjoint from
  # the "test" split that evaluation reports.
  reserve_valid: bool = False

  def _train_split(self) -> str:
    return "fit" if self.reserve_valid else "train"

  def train_examples(self, data: Any = None) -> int | None:
    """Examples in the split this task trains on (windows of ``seq_len`` tokens
    for text), from the arrays' static shapes; None for fresh data every batch
    (a teacher, a quadratic), where no example repeats."""
    from meta_tasks import datasets, text  # pylint: disable=import-outside-toplevel
    data = self._data_or_default(data)
    if isinstance(data, datasets.ImageArrays):
      n = data.train_images.shape[0]
    elif isinstance(data, datasets.TabularArrays):
      n = data.train_x.shape[0]
    elif isinstance(data, text.TextArrays):
      n = data.train_tokens.shape[0] // getattr(self, "seq_len", 1)
    else:
      return None
    lo, hi = datasets.train_range(n, self._train_split())
    return hi - lo

  def epochs_per_step(self, data: Any = None) -> float:
    """Passes over the training split per step (batch size ÷ training
    examples): what a user's planned ``epochs`` is per step; 0 for fresh data."""
    n = self.train_examples(data)
    return 0.0 if not n else getattr(self, "batch_size") / n

  def sample_batch(self, key: jax.Array, data: Any = None) -> Any:
    """A training batch, gathered on device by random index (jittable)."""
    return self._sample(self._data_or_default(data), key, self._train_split())

  def sample_eval_batch(self, key: jax.Array, split: str = "test", data: Any = None) -> Any:
    """A batch from the held-out ``"test"`` split, the ``"valid"`` split (tasks
    with ``reserve_valid`` only) or from ``"train"`` (jittable)."""
    check_choice("split", split, SPLITS)
    if split == "valid" and not self.reserve_valid:
      raise ValueError(f"Task {self.name} has no validation split: build it with "
                       "reserve_valid=True (it then trains without those rows).")
    if split == "train":
      split = self._train_split()
    return self._sample(self._data_or_default(data), key, split)

  def normalizer(self, loss: jax.Array) -> jax.Array:
    """Raw loss -> comparable range [0, MAX_NORMALIZED_LOSS]; NaN/inf -> max."""
    return normalize_loss(loss, self.reference_loss, self.MAX_NORMALIZED_LOSS)

  @functools.cached_property
  def kinds(self) -> Any:
    return self._kinds(jax.eval_shape(self.init, jax.random.key(0)))

  @property
  def mup(self) -> Any:
    return self.kinds if self.parameterization == "mup" else None

  def _data_or_default(self, data: Any) -> Any:
    if data is not None:
      return data
    data = self.data()
    nbytes = sum(getattr(x, "nbytes", 0) for x in jax.tree.leaves(data))
    if nbytes > self._LARGE_CLOSURE_BYTES:
      _warn_large_closure(self.name, nbytes)
    return data


@functools.lru_cache(maxsize=None)
def _warn_large_closure(name: str, nbytes: int) -> None:
  import warnings  # pylint: disable=import-outside-toplevel
  warnings.warn(
      f"Task {name}: sampling from {nbytes / 2**20:.0f} MB of closed-over data. Under jit "
      "this becomes a compile-time constant (slow compile, big executable); pass "
      "data=task.data() as an argument of the jitted function instead.", stacklevel=3)


@dataclasses.dataclass(frozen=True)
class TaskFamily:
  """A distribution over static task configs: uniform (or weighted) over ``tasks``.

  Dynamic per-instance params come from the key each task's ``init`` gets, so
  a family compiles at most once per config in ``configs()``.
  """
  name: str
  tasks: tuple[Task, ...]
  weights: tuple[float, ...] | None = None

  def __post_init__(self):
    if not self.tasks:
      raise ValueError(f"Task family {self.name!r} has no tasks.")
    names = [t.name for t in self.tasks]
    if len(set(names)) != len(names):
      raise ValueError(f"Task family {self.name!r} lists a config twice: {names}")
    if self.weights is not None:
      if len(self.weights) != len(self.tasks) or min(self.weights) < 0 or sum(self.weights) <= 0:
        raise ValueError(f"Task family {self.name!r}: weights {self.weights} must be "
                         f"{len(self.tasks)} non-negative numbers with a positive sum.")

  def sample(self, rng: np.random.Generator) -> Task:
    if self.weights is None:
      return self.tasks[int(rng.integers(len(self.tasks)))]
    p = np.asarray(self.weights, np.float64)
    return self.tasks[int(rng.choice(len(self.tasks), p=p / p.sum()))]

  def configs(self) -> list[Task]:
    return list(self.tasks)


class SuiteEntry(NamedTuple):
  """One held-out evaluation problem.

  ``tuning_task`` is the meta-training-size variant of ``task`` (e.g. the base
  width): tune a baseline's LR on it and transfer, as μP promises.
  """
  task: Task
  num_steps: int
  tuning_task: Task | None
