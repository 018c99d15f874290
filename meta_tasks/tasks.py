"""Concrete tasks: image MLP/CNN classifiers, a byte-level transformer LM, quadratics.

Every task is a frozen, keyword-only dataclass of static config. Its single
dynamic parameter is the init scale, drawn log-uniform in ``init_scale_range``
from the ``init`` key (the default range (1, 1) disables it).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_tasks import datasets, models, text
from meta_tasks.base import (PARAMETERIZATIONS, Task, check_choice, check_int, check_range,
                             kinds_by_module, log_uniform, scale_matrices)


def _fmt(x: float) -> str:
  return f"{x:g}"


def name_suffix(output_mult: float, init_scale_range: tuple[float, float],
            reserve_valid: bool = False) -> str:
  """Name suffix for non-default knobs, so names stay unique per static config."""
  s = "" if output_mult == 1.0 else f"_om{_fmt(output_mult)}"
  if init_scale_range != (1.0, 1.0):
    s += f"_is{_fmt(init_scale_range[0])}-{_fmt(init_scale_range[1])}"
  return s + ("_rv" if reserve_valid else "")


def classification_metrics(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  logits = logits.astype(jnp.float32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = (jnp.argmax(logits, axis=-1) == labels).mean(dtype=jnp.float32)
  return {"loss": loss, "accuracy": accuracy}


class FlaxTask(Task):
  """Shared init/loss/metrics for tasks backed by a flax model."""

  @property
  @abc.abstractmethod
  def model(self) -> nn.Module:
    """The flax module (built on demand: modules are cheap, hashable configs)."""

  @abc.abstractmethod
  def _dummy_input(self) -> jax.Array:
    """A batch-of-one input with the right shape and dtype, for ``model.init``."""

  def _targets(self, batch: dict[str, jax.Array]) -> jax.Array:
    return batch["labels"]

  def init(self, key: jax.Array) -> Any:
    k_scale, k_init = jax.random.split(key)
    params = self.model.init(k_init, self._dummy_input())["params"]
    return scale_matrices(params, log_uniform(k_scale, *self.init_scale_range))

  def apply(self, params: Any, inputs: jax.Array, capture_intermediates: bool = False):
    """Model outputs; with ``capture_intermediates`` also flax's per-module outputs."""
    if not capture_intermediates:
      return self.model.apply({"params": params}, inputs)
    out, state = self.model.apply({"params": params}, inputs, capture_intermediates=True,
                                  mutable=["intermediates"])
    return out, state["intermediates"]

  def loss(self, params: Any, batch: Any, key: jax.Array) -> jax.Array:
    del key  # deterministic models: no dropout
    return self.metrics(params, batch)["loss"]

  def metrics(self, params: Any, batch: Any) -> dict[str, jax.Array]:
    return classification_metrics(self.apply(params, batch["inputs"]), self._targets(batch))

  def _kinds(self, params: Any) -> Any:
    return kinds_by_module(params, models.INPUT_MODULES, models.OUTPUT_MODULES,
                           sp_readout=self.parameterization == "sp")



def _check_model_fields(task) -> None:
  """Fields every flax-model task shares: activation, parameterization, init scale, readout."""
  check_choice("activation", task.activation, tuple(models.ACTIVATIONS))
  check_choice("parameterization", task.parameterization, PARAMETERIZATIONS)
  check_range("init_scale_range", task.init_scale_range)
  if not (task.output_mult > 0 and math.isfinite(task.output_mult)):
    raise ValueError(f"output_mult must be a positive float, got {task.output_mult!r}.")

@dataclasses.dataclass(frozen=True, kw_only=True)
class _ImageTask(FlaxTask):
  """An image (or teacher-student) classification task; the model is a subclass choice."""
  dataset: str = "digits"
  image_size: int | None = None
  grayscale: bool = False
  width: int = 128
  depth: int = 3
  activation: str = "relu"
  batch_size: int = 128
  parameterization: str = "mup"
  output_mult: float = 1.0
  init_scale_range: tuple[float, float] = (1.0, 1.0)
  # On-device augmentation of training batches (shifts, noise): the data can no
  # longer be memorized within a horizon, so lower training loss is real progress.
  augment: bool = False
  reserve_valid: bool = False   # see Task.reserve_valid
  data_dir: str | None = dataclasses.field(default=None, compare=False)

  MIN_DEPTH: ClassVar[int] = 2
  KIND: ClassVar[str] = ""    # the model's short name, first part of ``name``

  def __post_init__(self):
    check_choice("dataset", self.dataset, datasets.DATASETS)
    # One spelling per config, so equal tasks compare (and hash) equal: the
    # native size is stored explicitly, and the teacher has no image size.
    if self.dataset == "teacher":
      object.__setattr__(self, "image_size", None)
    else:
      info = datasets.check_image_config(self.dataset, self.image_size)
      object.__setattr__(self, "image_size", self.image_size or info.native_size)
    check_int("width", self.width)
    check_int("depth", self.depth, self.MIN_DEPTH)
    check_int("batch_size", self.batch_size)
    _check_model_fields(self)
    if self.augment and self.dataset == "teacher":
      raise ValueError("augment=True needs an image dataset; the teacher draws fresh data.")

  @property
  def name(self) -> str:
    if self.dataset == "teacher":
      data = f"teacher{datasets.TEACHER_INPUT_DIM}"
    else:
      short = datasets.IMAGE_DATASETS[self.dataset].short
      data = (f"{short}{self.image_size}{'g' if self.grayscale else ''}"
              f"{'aug' if self.augment else ''}")
    return (f"{self.KIND}-{self.parameterization}_{data}_w{self.width}_d{self.depth}_"
            f"{self.activation}_b{self.batch_size}"
            + name_suffix(self.output_mult, self.init_scale_range, self.reserve_valid))

  num_classes = property(lambda self: datasets.num_classes(self.dataset))
  reference_loss = property(lambda self: math.log(self.num_classes))

  @property
  def input_shape(self) -> tuple[int, ...]:
    if self.dataset == "teacher":
      return (datasets.TEACHER_INPUT_DIM,)
    return datasets.image_shape(self.dataset, self.image_size, self.grayscale)

  def _dummy_input(self) -> jax.Array:
    return jnp.zeros((1,) + self.input_shape, jnp.float32)

  def data(self) -> Any:
    if self.dataset == "teacher":
      return ()
    return datasets.load_images(self.dataset, self.image_size, self.grayscale,
                                datasets.resolve_data_dir(self.data_dir))

  def _sample(self, data: Any, key: jax.Array, split: str) -> Any:
    if self.dataset == "teacher":
      return datasets.sample_teacher(key, self.batch_size, split)
    if not self.augment:  # the same draws as before augmentation existed
      return datasets.sample_images(data, key, self.batch_size, split)
    return datasets.sample_dataset(self.dataset, data, key, self.batch_size, split, augment=True)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageMLPTask(_ImageTask):
  """MLP classifier; ``depth`` counts linear layers (3 = in -> w -> w -> classes)."""
  KIND: ClassVar[str] = "mlp"

  @property
  def model(self) -> nn.Module:
    return models.MLP(self.width, self.depth, self.num_classes, self.activation,
                      self.parameterization == "mup", self.output_mult)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageCNNTask(_ImageTask):
  """Small CNN: ``depth`` 3x3 conv layers of ``width`` channels, pool, readout."""
  width: int = 32
  depth: int = 3
  MIN_DEPTH: ClassVar[int] = 1
  KIND: ClassVar[str] = "cnn"

  def __post_init__(self):
    super().__post_init__()
    if self.dataset == "teacher":
      raise ValueError("ImageCNNTask needs an image dataset; 'teacher' has flat inputs. "
                       f"Valid datasets: {', '.join(datasets.IMAGE_DATASETS)}.")

  @property
  def model(self) -> nn.Module:
    return models.CNN(self.width, self.depth, self.num_classes, self.activation,
                      self.parameterization == "mup", self.output_mult)


class ByteLMTask(FlaxTask):
  """Shared by the byte-level LMs (``TransformerLMTask`` and ``user_tasks``'
  plain one): windows of ``seq_len`` bytes of a text dataset, next-byte targets."""

  reference_loss = property(lambda self: math.log(text.VOCAB_SIZE))

  def _dummy_input(self) -> jax.Array:
    return jnp.zeros((1, self.seq_len), jnp.int32)

  def _targets(self, batch):
    return batch["targets"]

  def data(self) -> Any:
    data = text.load_text(self.dataset, datasets.resolve_data_dir(self.data_dir), self.max_bytes)
    shortest = min(data.train_tokens.shape[0], data.test_tokens.shape[0])
    if shortest <= self.seq_len + 1:
      raise ValueError(f"Text dataset {self.dataset!r} has a split of {shortest} bytes, too "
                       f"short for seq_len {self.seq_len}.")
    return data

  def _sample(self, data: Any, key: jax.Array, split: str) -> Any:
    return text.sample_windows(data, key, self.batch_size, self.seq_len, split)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerLMTask(ByteLMTask):
  """Decoder-only byte-level LM; ``depth`` counts transformer blocks."""
  dataset: str = "pydocs"
  seq_len: int = 64
  width: int = 128
  depth: int = 2
  num_heads: int = 4
  activation: str = "gelu"
  batch_size: int = 32
  parameterization: str = "mup"
  output_mult: float = 1.0
  init_scale_range: tuple[float, float] = (1.0, 1.0)
  max_bytes: int = text.DEFAULT_MAX_BYTES
  reserve_valid: bool = False   # see Task.reserve_valid
  data_dir: str | None = dataclasses.field(default=None, compare=False)

  def __post_init__(self):
    check_choice("text dataset", self.dataset, tuple(text.TEXT_DATASETS))
    for what in ("seq_len", "width", "depth", "num_heads", "batch_size", "max_bytes"):
      check_int(what, getattr(self, what))
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}.")
    _check_model_fields(self)

  @property
  def name(self) -> str:
    size = "" if self.max_bytes == text.DEFAULT_MAX_BYTES else f"_mb{self.max_bytes}"
    return (f"lm-{self.parameterization}_{self.dataset}{size}_t{self.seq_len}_w{self.width}_"
            f"d{self.depth}_h{self.num_heads}_{self.activation}_b{self.batch_size}"
            + name_suffix(self.output_mult, self.init_scale_range, self.reserve_valid))

  @property
  def model(self) -> nn.Module:
    return models.TransformerLM(self.width, self.depth, self.num_heads, self.seq_len,
                                text.VOCAB_SIZE, self.activation,
                                self.parameterization == "mup", self.output_mult)



@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadraticTask(Task):
  """Noisy diagonal quadratic 0.5 * mean_i a_i (x_i - c_i - noise)^2, for fast tests.

  Curvatures a (log-spaced over ``condition_number``) and centers c come from
  the static ``seed``; the init point is c + scale * N(0, 1) with scale
  log-uniform in ``init_scale_range``. The "test" split is noise-free, so its
  loss is the exact objective. No accuracy metric.
  """
  dim: int = 16
  condition_number: float = 100.0
  noise: float = 0.1
  batch_size: int = 8
  seed: int = 0
  parameterization: str = "sp"
  init_scale_range: tuple[float, float] = (1.0, 1.0)

  def __post_init__(self):
    check_int("dim", self.dim)
    check_int("batch_size", self.batch_size)
    check_int("seed", self.seed, 0)
    check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
    check_range("init_scale_range", self.init_scale_range)
    if not self.condition_number >= 1:
      raise ValueError(f"condition_number must be >= 1, got {self.condition_number!r}.")
    if not self.noise >= 0:
      raise ValueError(f"noise must be >= 0, got {self.noise!r}.")

  @property
  def name(self) -> str:
    return (f"quadratic-{self.parameterization}_n{self.dim}_c{_fmt(self.condition_number)}_"
            f"s{_fmt(self.noise)}_b{self.batch_size}_seed{self.seed}"
            + name_suffix(1.0, self.init_scale_range))

  def _problem(self) -> tuple[np.ndarray, np.ndarray]:
    """Curvatures and centers: host constants from the static seed (no PRNG in the program)."""
    curvature = np.logspace(0.0, math.log10(self.condition_number), self.dim)
    center = np.random.default_rng(self.seed).standard_normal(self.dim)
    return curvature.astype(np.float32), center.astype(np.float32)

  @property
  def reference_loss(self) -> float:
    # Expected loss at init with scale 1: 0.5 * mean(a) * (1 + noise^2).
    a = [self.condition_number ** (i / max(self.dim - 1, 1)) for i in range(self.dim)]
    return 0.5 * sum(a) / self.dim * (1.0 + self.noise ** 2)

  def init(self, key: jax.Array) -> Any:
    k_scale, k_x = jax.random.split(key)
    _, center = self._problem()
    scale = log_uniform(k_scale, *self.init_scale_range)
    return {"x": center + scale * jax.random.normal(k_x, (self.dim,))}

  def _sample(self, data: Any, key: jax.Array, split: str) -> Any:
    noise = self.noise if split == "train" else 0.0
    return {"noise": noise * jax.random.normal(key, (self.batch_size, self.dim))}

  def loss(self, params: Any, batch: Any, key: jax.Array) -> jax.Array:
    del key
    a, c = self._problem()
    r = params["x"][None, :] - c[None, :] - batch["noise"]
    return 0.5 * jnp.mean(a * r ** 2)

  def metrics(self, params: Any, batch: Any) -> dict[str, jax.Array]:
    return {"loss": self.loss(params, batch, None)}

  def _kinds(self, params: Any) -> Any:
    return {"x": "vector"}
