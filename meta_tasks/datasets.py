"""Image classification data, loaded once into device memory and sampled inside jit.

Sources:

* ``digits``: scikit-learn's handwritten digits (8x8, 1797 images), shipped
  with scikit-learn, so it works offline. Deterministic 80/20 train/test split.
* ``teacher``: a synthetic teacher-student problem. Gaussian inputs are labelled
  by a fixed random MLP teacher; every batch is generated on device from the key.
* Named tfds datasets (``IMAGE_DATASETS``), read with ``tfds.data_source``,
  which needs no TensorFlow once the dataset is prepared in ArrayRecord format.

Images are stored as uint8 (N, H, W, C) arrays; the resize (area when the size
divides evenly, else antialiased bilinear) and the grayscale conversion happen
once at load time. Loaded arrays are cached per (dataset, size, grayscale,
data_dir) in-process, so every Task on the same data shares one device copy.

Optionally the decoded arrays are also cached on disk as ``.npz`` in
``cache_dir`` (argument or ``LOPT_CACHE_DIR``). A machine without tfds (or
without the raw dataset) can then load them with numpy alone.

A machine without scikit-learn (the GPU device) reads the embedded sources
from an offline bundle instead: ``LOPT_DATA_BUNDLE=path.npz``, written on a
machine that has them by ``scripts/make_data_bundle.py`` (``bundled``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_tasks.base import check_choice, check_int


class ImageInfo(NamedTuple):
  short: str               # used in task names, e.g. "imagenet" -> "mlp-mup_imagenet8_..."
  tfds_name: str | None    # None for embedded sources
  test_split: str
  num_classes: int
  native_size: int
  channels: int


IMAGE_DATASETS: dict[str, ImageInfo] = {
    "digits": ImageInfo("digits", None, "test", 10, 8, 1),
    "mnist": ImageInfo("mnist", "mnist", "test", 10, 28, 1),
    "fashion_mnist": ImageInfo("fmnist", "fashion_mnist", "test", 10, 28, 1),
    "cifar10": ImageInfo("cifar10", "cifar10", "test", 10, 32, 3),
    "svhn_cropped": ImageInfo("svhn", "svhn_cropped", "test", 10, 32, 3),
    "imagenet_resized/32x32": ImageInfo("imagenet", "imagenet_resized/32x32", "validation",
                                        1000, 32, 3),
}
IMAGE_SIZES = (None, 8, 16, 32)   # None (or the native size) keeps the native size

# The synthetic teacher-student problem (static: it is part of the dataset's identity).
TEACHER_INPUT_DIM = 64
TEACHER_HIDDEN = 128
TEACHER_CLASSES = 10
TEACHER_SEED = 0

DATASETS = tuple(IMAGE_DATASETS) + ("teacher",)

# Tabular classification data shipped with scikit-learn: name -> (loader, classes).
# ``diabetes`` is a regression set; its label is "disease progression above the
# median" (442 rows, noisy: a real small table where memorizing hurts).
TABULAR_DATASETS = {"breast_cancer": ("load_breast_cancer", 2), "wine": ("load_wine", 3),
                    "iris": ("load_iris", 3), "diabetes": ("load_diabetes", 2)}
# On-device augmentation of image batches: random shifts of up to this many
# pixels (zero padding) and Gaussian noise of this std on standardized pixels.
AUGMENT_SHIFT = 1
AUGMENT_NOISE = 0.2


class ImageArrays(NamedTuple):
  """On-device image data. ``mean``/``std`` are per-channel train statistics in [0, 1] units."""
  train_images: jax.Array   # uint8 (N, H, W, C)
  train_labels: jax.Array   # int32 (N,)
  test_images: jax.Array
  test_labels: jax.Array
  mean: jax.Array           # float32 (C,)
  std: jax.Array


class DatasetNotPreparedError(ValueError):
  """A named tfds dataset is not available offline."""


def resolve_data_dir(data_dir: str | None) -> str | None:
  """Explicit argument, else ``$LOPT_DATA_DIR``, else None (tfds' own default)."""
  return data_dir or os.environ.get("LOPT_DATA_DIR") or None


def check_image_config(dataset: str, image_size: int | None) -> ImageInfo:
  check_choice("dataset", dataset, tuple(IMAGE_DATASETS))
  info = IMAGE_DATASETS[dataset]
  sizes = IMAGE_SIZES if info.native_size in IMAGE_SIZES else IMAGE_SIZES + (info.native_size,)
  check_choice(f"image_size for {dataset}", image_size, sizes)
  return info


def image_shape(dataset: str, image_size: int | None, grayscale: bool) -> tuple[int, int, int]:
  info = check_image_config(dataset, image_size)
  size = image_size or info.native_size
  return (size, size, 1 if grayscale else info.channels)


def not_prepared_message(name: str, data_dir: str | None) -> str:
  where = data_dir or "the tfds default (~/tensorflow_datasets or $TFDS_DATA_DIR)"
  return (
      f"Dataset {name!r} is not prepared in {where}. lopt reads it with "
      "tfds.data_source, which needs the ArrayRecord format. Prepare it on a machine "
      "with internet access:\n"
      f"  tfds build {name} --file_format=array_record --data_dir=DIR\n"
      "or in Python:\n"
      f"  tfds.builder({name!r}, data_dir=DIR, file_format='array_record')"
      ".download_and_prepare()\n"
      "then pass data_dir=DIR (or set LOPT_DATA_DIR=DIR). Offline alternatives: the "
      "embedded 'digits' and 'teacher' datasets, or an .npz array cache (LOPT_CACHE_DIR).")


def open_tfds_source(name: str, split: str, data_dir: str | None):
  """``tfds.data_source`` without downloading; a clear error if it is not prepared."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise DatasetNotPreparedError(
        f"Dataset {name!r} needs tensorflow_datasets, which is not installed here "
        "(pip install tensorflow-datasets), or an .npz array cache written elsewhere "
        "(see meta_tasks.datasets, LOPT_CACHE_DIR).") from e
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises several types (NotImplementedError, AssertionError, ...)
    raise DatasetNotPreparedError(not_prepared_message(name, data_dir) +
                                  f"\n(tfds said: {type(e).__name__}: {e})") from e


def read_records(source, start: int, stop: int) -> list[dict[str, Any]]:
  """Records [start, stop) of a data source, batched where the source supports it."""
  keys = list(range(start, stop))
  try:
    return list(source.__getitems__(keys))
  except TypeError:
    # tfds.testing.mock_data's sources only implement per-item access.
    return [source[i] for i in keys]


def resize_images(images: np.ndarray, size: int, chunk: int = 4096) -> np.ndarray:
  """uint8 (N, H, W, C) -> uint8 (N, size, size, C); area if it divides, else bilinear."""
  n, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  out = np.empty((n, size, size, c), np.uint8)
  for s in range(0, n, chunk):
    x = images[s:s + chunk].astype(np.float32)
    if h % size == 0 and w % size == 0:
      y = x.reshape(len(x), size, h // size, size, w // size, c).mean(axis=(2, 4))
    else:
      y = np.asarray(jax.image.resize(x, (len(x), size, size, c), "linear", antialias=True))
    out[s:s + chunk] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
  return out


def to_grayscale(images: np.ndarray) -> np.ndarray:
  if images.shape[-1] == 1:
    return images
  luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


def _split_80_20(n: int) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, test rows): a fixed (seeded, the same on every machine) 80/20 split."""
  return tuple(np.split(np.random.default_rng(0).permutation(n), [int(round(0.8 * n))]))


# The offline bundle of the embedded sources (scripts/make_data_bundle.py):
# scikit-learn's arrays and the pydocs corpus of the machine that wrote it, so
# that a machine without scikit-learn, or with another Python (another pydocs
# corpus), trains on exactly the same data.
DATA_BUNDLE_ENV = "LOPT_DATA_BUNDLE"


@functools.lru_cache(maxsize=None)
def _open_bundle(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{DATA_BUNDLE_ENV}={path!r} is not a file: write it with "
                            f"`python scripts/make_data_bundle.py {path}` or unset {DATA_BUNDLE_ENV}.")
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def bundled(key: str) -> np.ndarray | None:
  """Array ``key`` of the bundle named by ``LOPT_DATA_BUNDLE``; None if unset."""
  path = os.environ.get(DATA_BUNDLE_ENV)
  if not path:
    return None
  bundle = _open_bundle(path)
  if key not in bundle:
    raise KeyError(f"the data bundle {path!r} has no {key!r} (it has {sorted(bundle)}): "
                   f"re-write it with `python scripts/make_data_bundle.py {path}`.")
  return bundle[key]


def sklearn_arrays(loader: str) -> tuple[np.ndarray, np.ndarray]:
  """(data, target) of ``sklearn.datasets.<loader>()``, or of the bundle where one is set."""
  data = bundled(f"sklearn/{loader}/data")
  if data is not None:
    return data, bundled(f"sklearn/{loader}/target")
  import sklearn.datasets  # pylint: disable=import-outside-toplevel
  bunch = getattr(sklearn.datasets, loader)()
  return np.asarray(bunch.data), np.asarray(bunch.target)


def _load_digits() -> dict[str, np.ndarray]:
  data, target = sklearn_arrays("load_digits")
  images = np.rint(data.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = target.astype(np.int32)
  tr, te = _split_80_20(len(labels))
  return {"train_images": images[tr], "train_labels": labels[tr],
          "test_images": images[te], "test_labels": labels[te]}


def _load_tfds_split(name: str, split: str, data_dir: str | None, size: int | None,
                     grayscale: bool, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
  source = open_tfds_source(name, split, data_dir)
  n = len(source)
  images, labels = [], np.empty((n,), np.int32)
  for s in range(0, n, chunk):
    records = read_records(source, s, min(n, s + chunk))
    x = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    if grayscale:
      x = to_grayscale(x)
    images.append(resize_images(x, size) if size else x)
    labels[s:s + len(records)] = [int(r["label"]) for r in records]
  return np.concatenate(images), labels


def cache_path(cache_dir: str, dataset: str, size: int | None, grayscale: bool) -> Path:
  """The .npz array cache of one dataset config (size None and the native size share it)."""
  size = size or IMAGE_DATASETS[dataset].native_size
  stem = f"{dataset.replace('/', '_')}_{size}{'_gray' if grayscale else ''}"
  return Path(cache_dir) / f"{stem}.npz"


def load_numpy_images(dataset: str, image_size: int | None = None, grayscale: bool = False,
                      data_dir: str | None = None,
                      cache_dir: str | None = None) -> dict[str, np.ndarray]:
  """Host (numpy) arrays: train/test images (uint8 NHWC) and labels (int32)."""
  info = check_image_config(dataset, image_size)
  data_dir = resolve_data_dir(data_dir)
  cache_dir = cache_dir or os.environ.get("LOPT_CACHE_DIR") or None
  path = cache_path(cache_dir, dataset, image_size, grayscale) if cache_dir else None
  if path is not None and path.exists():
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  if info.tfds_name is None:
    arrays = _load_digits()
    for k in ("train_images", "test_images"):
      x = to_grayscale(arrays[k]) if grayscale else arrays[k]
      arrays[k] = resize_images(x, image_size) if image_size else x
    return arrays  # embedded: cheap to rebuild, never written to the cache
  arrays = {}
  for part, split in (("train", "train"), ("test", info.test_split)):
    arrays[f"{part}_images"], arrays[f"{part}_labels"] = _load_tfds_split(
        info.tfds_name, split, data_dir, image_size, grayscale)
  if path is not None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
  return arrays


@functools.lru_cache(maxsize=None)
def load_images(dataset: str, image_size: int | None = None, grayscale: bool = False,
                data_dir: str | None = None) -> ImageArrays:
  """Device arrays for ``dataset``, loaded once per process per config."""
  # The first load may happen while a jit is tracing: evaluate eagerly so the
  # cached arrays are concrete device arrays, not that trace's tracers.
  with jax.ensure_compile_time_eval():
    return _to_device(load_numpy_images(dataset, image_size, grayscale, data_dir))


def _to_device(arrays: dict[str, np.ndarray]) -> ImageArrays:
  train = arrays["train_images"]
  # Per-channel statistics in float64 over chunks: exact and light on memory.
  total = np.zeros(train.shape[-1]); total_sq = np.zeros(train.shape[-1])
  for s in range(0, len(train), 65536):
    x = train[s:s + 65536].astype(np.float64) / 255.0
    total += x.sum(axis=(0, 1, 2)); total_sq += (x ** 2).sum(axis=(0, 1, 2))
  count = train.shape[0] * train.shape[1] * train.shape[2]
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-6))
  return ImageArrays(
      jnp.asarray(train), jnp.asarray(arrays["train_labels"], jnp.int32),
      jnp.asarray(arrays["test_images"]), jnp.asarray(arrays["test_labels"], jnp.int32),
      jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))


# The "valid" split: the last VALID_FRACTION of a dataset's training data. A
# meta-training task that validates on it trains on the rest ("fit"), so its
# meta-objective never sees the test split that evaluation reports.
VALID_FRACTION = 0.2
TRAIN_SPLITS = ("train", "fit", "valid")


def train_range(n: int, split: str) -> tuple[int, int]:
  """Index range [lo, hi) of ``split`` ("train": all, "fit", "valid") in n training rows."""
  cut = n - max(1, int(round(VALID_FRACTION * n)))
  return {"train": (0, n), "fit": (0, cut), "valid": (cut, n)}[split]


def pick_split(split: str, train: tuple, test: tuple) -> tuple[tuple, int, int]:
  """(arrays, lo, hi) to sample ``split`` from: a training range, or all of test."""
  if split in TRAIN_SPLITS:
    return (train,) + train_range(train[0].shape[0], split)
  return test, 0, test[0].shape[0]


def sample_images(data: ImageArrays, key: jax.Array, batch_size: int,
                  split: str) -> dict[str, jax.Array]:
  """Random batch by index gather on device; images standardized to float32."""
  (images, labels), lo, hi = pick_split(split, (data.train_images, data.train_labels),
                                       (data.test_images, data.test_labels))
  idx = jax.random.randint(key, (batch_size,), lo, hi)
  x = jnp.take(images, idx, axis=0).astype(jnp.float32) / 255.0
  return {"inputs": (x - data.mean) / data.std, "labels": jnp.take(labels, idx, axis=0)}


@functools.lru_cache(maxsize=1)
def _teacher_weights() -> tuple[np.ndarray, np.ndarray]:
  # Host RNG: small constants, identical on every machine, and no PRNG in the program.
  rng = np.random.default_rng(TEACHER_SEED)
  w1 = rng.standard_normal((TEACHER_INPUT_DIM, TEACHER_HIDDEN)) / np.sqrt(TEACHER_INPUT_DIM)
  w2 = rng.standard_normal((TEACHER_HIDDEN, TEACHER_CLASSES)) / np.sqrt(TEACHER_HIDDEN)
  return w1.astype(np.float32), w2.astype(np.float32)


def _teacher_logits(x: jax.Array) -> jax.Array:
  w1, w2 = _teacher_weights()
  return jnp.tanh(x @ w1) @ w2


def sample_teacher(key: jax.Array, batch_size: int, split: str) -> dict[str, jax.Array]:
  """Fresh Gaussian inputs labelled by the fixed teacher; split picks a disjoint key stream."""
  check_int("batch_size", batch_size)
  # Infinite data: "fit" is "train"; "valid" and "test" are streams of their own.
  key = jax.random.fold_in(key, {"train": 0, "fit": 0, "test": 1, "valid": 2}[split])
  x = jax.random.normal(key, (batch_size, TEACHER_INPUT_DIM), jnp.float32)
  return {"inputs": x, "labels": jnp.argmax(_teacher_logits(x), axis=-1).astype(jnp.int32)}


# --------------------------------------------------------------------------
# Tabular data and a uniform (dataset name -> arrays / batches) front end.

class TabularArrays(NamedTuple):
  """On-device standardized features (float32) and int32 labels."""
  train_x: jax.Array
  train_y: jax.Array
  test_x: jax.Array
  test_y: jax.Array


@functools.lru_cache(maxsize=None)
def load_tabular(name: str) -> TabularArrays:
  """A scikit-learn tabular dataset: fixed 80/20 split, standardized by train stats."""
  check_choice("tabular dataset", name, tuple(TABULAR_DATASETS))
  x, y = sklearn_arrays(TABULAR_DATASETS[name][0])
  x = x.astype(np.float64)
  if name == "diabetes":
    y = y > np.median(y)
  y = y.astype(np.int32)
  tr, te = _split_80_20(len(y))
  mean, std = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-8
  f = lambda a: jnp.asarray((a - mean) / std, jnp.float32)
  with jax.ensure_compile_time_eval():
    return TabularArrays(f(x[tr]), jnp.asarray(y[tr]), f(x[te]), jnp.asarray(y[te]))


# Small-data synthetic tables for meta-training only (never evaluated on):
# name -> (features, classes, training rows, label-flip probability, seed).
# Few rows and noisy labels: an MLP memorizes them within a few hundred steps,
# after which only restraint keeps the validation loss down. That is the
# regime where users' small datasets trained long punish an optimizer.
# synth-d and synth-e have few rows and clean labels, as real small tables do:
# there the test loss grows late, from overconfidence, not from noise.
# synth-f and synth-g are as clean, for the wider MLPs users fit such tables
# with (results/probes/clean_table_kin.txt: on clean kin tables of other
# shapes the shipped LO loses to small-LR AdamW as on the held-out ones).
SYNTHETIC_TABULAR = {"synth-a": (16, 2, 320, 0.15, 1), "synth-b": (24, 3, 480, 0.1, 2),
                     "synth-c": (12, 4, 640, 0.2, 3), "synth-d": (10, 3, 200, 0.03, 4),
                     "synth-e": (20, 2, 400, 0.05, 5), "synth-f": (20, 2, 350, 0.02, 6),
                     "synth-g": (8, 3, 240, 0.02, 7)}
_SYNTH_TEST_ROWS = 2048


@functools.lru_cache(maxsize=None)
def load_synthetic_tabular(name: str) -> TabularArrays:
  """Gaussian inputs labelled by a fixed random tanh teacher, labels flipped at
  random with the config's probability; the test rows are fresh draws."""
  check_choice("synthetic tabular dataset", name, tuple(SYNTHETIC_TABULAR))
  dim, classes, rows, flip, seed = SYNTHETIC_TABULAR[name]
  rng = np.random.default_rng(seed)
  w1 = rng.standard_normal((dim, 32)) / np.sqrt(dim)
  w2 = rng.standard_normal((32, classes)) * 2.0 / np.sqrt(32)

  def draw(n):
    x = rng.standard_normal((n, dim))
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=-1)
    flipped = rng.random(n) < flip
    y = np.where(flipped, rng.integers(0, classes, n), y)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
  with jax.ensure_compile_time_eval():
    return TabularArrays(*draw(rows), *draw(_SYNTH_TEST_ROWS))


def num_classes(dataset: str) -> int:
  if dataset in SYNTHETIC_TABULAR:
    return SYNTHETIC_TABULAR[dataset][1]
  if dataset in TABULAR_DATASETS:
    return TABULAR_DATASETS[dataset][1]
  if dataset == "teacher":
    return TEACHER_CLASSES
  return IMAGE_DATASETS[dataset].num_classes


def input_shape(dataset: str) -> tuple[int, ...]:
  """Shape of one example at the dataset's native size."""
  if dataset in SYNTHETIC_TABULAR:
    return (SYNTHETIC_TABULAR[dataset][0],)
  if dataset in TABULAR_DATASETS:
    return (int(load_tabular(dataset).train_x.shape[1]),)
  if dataset == "teacher":
    return (TEACHER_INPUT_DIM,)
  return image_shape(dataset, None, False)


def load_dataset(dataset: str, data_dir: str | None = None) -> Any:
  """On-device arrays of any dataset at its native size (() for the teacher)."""
  if dataset in SYNTHETIC_TABULAR:
    return load_synthetic_tabular(dataset)
  if dataset in TABULAR_DATASETS:
    return load_tabular(dataset)
  if dataset == "teacher":
    return ()
  return load_images(dataset, None, False, data_dir)


def augment_images(key: jax.Array, x: jax.Array) -> jax.Array:
  """Per-example random shifts (up to ``AUGMENT_SHIFT`` px, zero padding) plus
  Gaussian noise, on standardized NHWC images, on device."""
  n, h, w, _ = x.shape
  k_shift, k_noise = jax.random.split(key)
  s = AUGMENT_SHIFT
  padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
  offsets = jax.random.randint(k_shift, (n, 2), 0, 2 * s + 1)
  crop = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0),
                                                       (h, w, x.shape[-1])))
  return crop(padded, offsets) + AUGMENT_NOISE * jax.random.normal(k_noise, x.shape, x.dtype)


def sample_dataset(dataset: str, data: Any, key: jax.Array, batch_size: int, split: str,
                   augment: bool = False) -> dict[str, jax.Array]:
  """A batch of ``dataset`` (``load_dataset``'s arrays); ``augment`` applies
  ``augment_images`` to training batches of an image dataset."""
  if dataset in TABULAR_DATASETS or dataset in SYNTHETIC_TABULAR:
    (x, y), lo, hi = pick_split(split, (data.train_x, data.train_y), (data.test_x, data.test_y))
    idx = jax.random.randint(key, (batch_size,), lo, hi)
    return {"inputs": jnp.take(x, idx, axis=0), "labels": jnp.take(y, idx, axis=0)}
  if dataset == "teacher":
    return sample_teacher(key, batch_size, split)
  k_batch, k_aug = jax.random.split(key)
  batch = sample_images(data, k_batch, batch_size, split)
  if augment and split == "train":
    batch["inputs"] = augment_images(k_aug, batch["inputs"])
  return batch
