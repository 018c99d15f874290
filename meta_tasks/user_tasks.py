"""Tasks written the way users write their models: plain flax, default initializers.

These are the evaluation's stand-ins for "the models users bring". Nothing in
them knows about μP: ``nn.Dense``/``nn.Conv``/``nn.Embed`` with flax's default
initializers, a plain ``nn.Dense`` readout (no 1/fan_in output multiplier) and
``nn.MultiHeadDotProductAttention``. So, like a user, the evaluation gets the
optimizer's μP spec from ``lopt.mup.infer_kinds(params, narrow params)``:
``narrow_task()`` is the same model at a narrower width (see
``training.task_spec``). ``kinds`` is meta_tasks' own module-name view, used
only where no narrow copy exists.

* ``PlainMLPTask``: MLP on an image or tabular dataset (digits, with optional
  on-device augmentation; the teacher; scikit-learn's breast cancer and wine).
* ``PlainCNNTask``: conv layers, global average pool, dense readout.
* ``PlainTransformerLMTask``: pre-LN decoder with flax's attention module.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta_tasks import datasets, text
from meta_tasks.base import check_choice, check_int, check_range
from meta_tasks.tasks import ByteLMTask, FlaxTask, name_suffix

# The narrow copy (what a user would pass as the base model) is this many times
# narrower, and at least ``MIN_NARROW_WIDTH`` wide.
NARROW_FACTOR = 4
MIN_NARROW_WIDTH = 4


class PlainMLP(nn.Module):
  width: int
  depth: int           # linear layers, readout included
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for _ in range(self.depth - 1):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.num_outputs)(x)


class PlainCNN(nn.Module):
  width: int
  depth: int           # conv layers
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    for i in range(self.depth):
      x = nn.relu(nn.Conv(self.width, (3, 3), strides=2 if i == 0 else 1)(x))
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_outputs)(x)


class PlainBlock(nn.Module):
  num_heads: int

  @nn.compact
  def __call__(self, x, mask):
    d = x.shape[-1]
    h = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(h, h, mask=mask)
    h = nn.Dense(4 * d)(nn.LayerNorm()(x))
    return x + nn.Dense(d)(nn.gelu(h))


class PlainTransformerLM(nn.Module):
  width: int
  depth: int
  num_heads: int
  seq_len: int
  vocab_size: int = text.VOCAB_SIZE

  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(self.vocab_size, self.width)(tokens)
    x = x + nn.Embed(self.seq_len, self.width)(jnp.arange(tokens.shape[1]))[None]
    mask = nn.make_causal_mask(tokens)
    for _ in range(self.depth):
      x = PlainBlock(self.num_heads)(x, mask)
    return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))


class _PlainTask(FlaxTask):
  """Shared: SP by construction and the narrow copy."""

  def narrow_task(self):
    """The same model, ``NARROW_FACTOR`` times narrower: the base copy for ``infer_kinds``."""
    if self.width // NARROW_FACTOR < MIN_NARROW_WIDTH:
      raise ValueError(f"{self.name}: width {self.width} is too small for a narrower copy "
                       f"(needs >= {NARROW_FACTOR * MIN_NARROW_WIDTH}).")
    return dataclasses.replace(self, width=self.width // NARROW_FACTOR)

  def _kinds(self, params: Any) -> Any:
    raise NotImplementedError(
        f"{self.name} is a plain flax model with no μP kinds of its own: take them as a user "
        "would, lopt.mup.infer_kinds(params, narrow params) with narrow_task() "
        "(training.task_spec.optimizer_spec does this).")


def _check_common(task) -> None:
  check_int("width", task.width)
  check_int("batch_size", task.batch_size)
  check_range("init_scale_range", task.init_scale_range)
  check_choice("parameterization", task.parameterization, ("sp",))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _PlainClassifierTask(_PlainTask):
  """Shared by the plain MLP and CNN: a dataset of ``datasets.load_dataset``,
  optionally augmented on device; the model is ``MODEL(width, depth, classes)``."""
  dataset: str = "digits"
  augment: bool = False
  width: int = 128
  depth: int = 3
  batch_size: int = 128
  init_scale_range: tuple[float, float] = (1.0, 1.0)
  parameterization: str = "sp"
  reserve_valid: bool = False   # see Task.reserve_valid
  data_dir: str | None = dataclasses.field(default=None, compare=False)

  KIND: ClassVar[str] = ""
  MODEL: ClassVar[type] = nn.Module
  MIN_DEPTH: ClassVar[int] = 1
  DATASETS: ClassVar[tuple[str, ...]] = tuple(datasets.IMAGE_DATASETS)

  def __post_init__(self):
    check_choice("dataset", self.dataset, self.DATASETS)
    check_int("depth", self.depth, self.MIN_DEPTH)
    _check_common(self)
    if self.augment and self.dataset not in datasets.IMAGE_DATASETS:
      raise ValueError(f"augment=True needs an image dataset, got {self.dataset!r}.")

  @property
  def name(self) -> str:
    return (f"user-{self.KIND}_{self.dataset}{'aug' if self.augment else ''}_w{self.width}_"
            f"d{self.depth}_b{self.batch_size}"
            + name_suffix(1.0, self.init_scale_range, self.reserve_valid))

  num_classes = property(lambda self: datasets.num_classes(self.dataset))
  reference_loss = property(lambda self: math.log(self.num_classes))
  model = property(lambda self: self.MODEL(self.width, self.depth, self.num_classes))

  def _dummy_input(self) -> jax.Array:
    return jnp.zeros((1,) + datasets.input_shape(self.dataset), jnp.float32)

  def data(self) -> Any:
    return datasets.load_dataset(self.dataset, datasets.resolve_data_dir(self.data_dir))

  def _sample(self, data: Any, key: jax.Array, split: str) -> Any:
    return datasets.sample_dataset(self.dataset, data, key, self.batch_size, split,
                                   augment=self.augment)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlainMLPTask(_PlainClassifierTask):
  """A plain flax MLP classifier on images (flattened), the teacher, or tabular data."""
  KIND: ClassVar[str] = "mlp"
  MODEL: ClassVar[type] = PlainMLP
  MIN_DEPTH: ClassVar[int] = 2
  DATASETS: ClassVar[tuple[str, ...]] = (datasets.DATASETS + tuple(datasets.TABULAR_DATASETS)
                                         + tuple(datasets.SYNTHETIC_TABULAR))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlainCNNTask(_PlainClassifierTask):
  """A plain flax CNN on an image dataset (optionally augmented on device)."""
  width: int = 32
  depth: int = 2
  KIND: ClassVar[str] = "cnn"
  MODEL: ClassVar[type] = PlainCNN


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlainTransformerLMTask(_PlainTask, ByteLMTask):
  """A plain flax decoder-only byte LM (``nn.MultiHeadDotProductAttention``)."""
  dataset: str = "pydocs"
  seq_len: int = 64
  width: int = 64
  depth: int = 2
  num_heads: int = 4
  batch_size: int = 32
  max_bytes: int = text.DEFAULT_MAX_BYTES
  init_scale_range: tuple[float, float] = (1.0, 1.0)
  parameterization: str = "sp"
  reserve_valid: bool = False   # see Task.reserve_valid
  data_dir: str | None = dataclasses.field(default=None, compare=False)

  def __post_init__(self):
    check_choice("text dataset", self.dataset, tuple(text.TEXT_DATASETS))
    for what in ("seq_len", "depth", "num_heads", "max_bytes"):
      check_int(what, getattr(self, what))
    _check_common(self)
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} must be divisible by num_heads {self.num_heads}.")

  def narrow_task(self):
    narrow = super().narrow_task()  # keeps num_heads: only the head dimension narrows
    if narrow.width % self.num_heads:
      raise ValueError(f"{self.name}: the narrow width {narrow.width} is not divisible by "
                       f"num_heads {self.num_heads}.")
    return narrow

  @property
  def name(self) -> str:
    size = "" if self.max_bytes == text.DEFAULT_MAX_BYTES else f"_mb{self.max_bytes}"
    return (f"user-lm_{self.dataset}{size}_t{self.seq_len}_w{self.width}_d{self.depth}_"
            f"h{self.num_heads}_b{self.batch_size}"
            + name_suffix(1.0, self.init_scale_range, self.reserve_valid))

  model = property(lambda self: PlainTransformerLM(self.width, self.depth, self.num_heads,
                                                   self.seq_len))
