"""meta_tasks data: embedded digits and text, the teacher, tfds under mock data, the npz cache."""

import jax
import numpy as np
import pytest

import meta_tasks as mt
from meta_tasks import datasets, text

KEY = jax.random.key(0)


def test_digits_split_is_deterministic_and_complete():
  a = datasets.load_numpy_images("digits")
  b = datasets.load_numpy_images("digits")
  assert a["train_images"].shape == (1438, 8, 8, 1) and a["test_images"].shape == (359, 8, 8, 1)
  assert a["train_images"].dtype == np.uint8 and a["train_images"].max() == 255
  np.testing.assert_array_equal(a["test_labels"], b["test_labels"])
  counts = np.bincount(np.concatenate([a["train_labels"], a["test_labels"]]), minlength=10)
  assert counts.sum() == 1797 and counts.min() >= 170   # all of sklearn's digits, every class
  big = datasets.load_numpy_images("digits", image_size=32)["train_images"]
  assert big.shape == (1438, 32, 32, 1)
  assert abs(big.mean() - a["train_images"].mean()) < 3   # resizing keeps the brightness


def test_resize_and_grayscale():
  x = np.arange(4 * 4, dtype=np.uint8).reshape(1, 4, 4, 1) * 10
  np.testing.assert_array_equal(datasets.resize_images(x, 2)[0, :, :, 0],
                                [[25, 45], [105, 125]])     # exact 2x2 block means
  rgb = np.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]]], np.uint8)
  np.testing.assert_array_equal(datasets.to_grayscale(rgb)[0, 0, :, 0], [76, 150, 29, 100])


def test_teacher_labels_are_a_fixed_function_of_inputs():
  sample = jax.jit(datasets.sample_teacher, static_argnums=(1, 2))
  a, b, t = sample(KEY, 512, "train"), sample(KEY, 512, "train"), sample(KEY, 512, "test")
  np.testing.assert_array_equal(a["labels"], b["labels"])
  assert not np.allclose(a["inputs"], t["inputs"])
  assert len(np.unique(np.asarray(a["labels"]))) >= 5
  logits = jax.jit(datasets._teacher_logits)(t["inputs"])  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.argmax(np.asarray(logits), -1), t["labels"])


def test_pydocs_corpus_is_deterministic_text():
  a, b = text.gather_python_docs(200_000), text.gather_python_docs(200_000)
  assert a == b and len(a) == 200_000
  printable = np.frombuffer(a, np.uint8)
  assert np.mean((printable >= 32) & (printable < 127) | (printable == 10)) > 0.95
  data = text.load_text("pydocs", None, 200_000)
  assert data.train_tokens.shape == (180_000,) and data.test_tokens.shape == (20_000,)


def test_dataset_not_prepared_error_says_how_to_prepare(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(mt.DatasetNotPreparedError) as err:
    datasets.load_numpy_images("mnist", data_dir=str(tmp_path))
  msg = str(err.value)
  assert isinstance(err.value, ValueError)
  for needle in ("'mnist'", str(tmp_path), "tfds build mnist --file_format=array_record",
                 "download_and_prepare()", "LOPT_DATA_DIR", "digits"):
    assert needle in msg, needle


def test_tfds_image_path_under_mock_data_and_npz_cache(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  data_dir, cache_dir = str(tmp_path / "tfds"), str(tmp_path / "cache")
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    arrays = datasets.load_numpy_images("cifar10", image_size=8, grayscale=True,
                                        data_dir=data_dir, cache_dir=cache_dir)
    imagenet = datasets.load_numpy_images("imagenet_resized/32x32", image_size=16,
                                          data_dir=data_dir)
    task = mt.ImageMLPTask(dataset="svhn_cropped", image_size=16, width=16, batch_size=32,
                           data_dir=data_dir)
    batch = jax.jit(task.sample_batch)(KEY)
    eval_batch = jax.jit(task.sample_eval_batch, static_argnums=1)(KEY, "test")
  assert arrays["train_images"].shape == (24, 8, 8, 1) and arrays["train_images"].dtype == np.uint8
  assert arrays["test_labels"].shape == (24,) and arrays["test_labels"].max() < 10
  assert imagenet["test_images"].shape == (24, 16, 16, 3)        # "validation" split
  assert batch["inputs"].shape == (32, 16, 16, 3) and eval_batch["labels"].shape == (32,)
  assert np.isfinite(float(jax.jit(lambda k: task.loss(task.init(k), batch, k))(KEY)))
  # The cache is plain numpy: a machine without tfds reads it back.
  def no_tfds(*args, **kwargs):
    raise AssertionError("tfds must not be used when the npz cache exists")
  monkeypatch.setattr(datasets, "open_tfds_source", no_tfds)
  cached = datasets.load_numpy_images("cifar10", image_size=8, grayscale=True,
                                      data_dir=data_dir, cache_dir=cache_dir)
  for k, v in arrays.items():
    np.testing.assert_array_equal(cached[k], v)


def test_tfds_text_path_under_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=20, policy=tfds.testing.MockPolicy.USE_CODE):
    task = mt.TransformerLMTask(dataset="tiny_shakespeare", seq_len=8, width=16, num_heads=2,
                                depth=1, batch_size=4, data_dir=str(tmp_path))
    data = task.data()
    batch = jax.jit(task.sample_batch)(KEY)
  assert data.train_tokens.dtype == np.uint8 and data.train_tokens.shape[0] > 100
  assert batch["inputs"].shape == (4, 8)
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_tabular_tables_are_standardized_fixed_splits_and_diabetes_is_its_median_split():
  import sklearn.datasets
  for name, (loader, classes) in datasets.TABULAR_DATASETS.items():
    bunch = getattr(sklearn.datasets, loader)()
    t = datasets.load_tabular(name)
    n = len(bunch.target)
    assert t.train_x.shape[0] + t.test_x.shape[0] == n and t.test_x.shape[0] == n - round(0.8 * n)
    np.testing.assert_allclose(np.asarray(t.train_x).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(t.train_x).std(0), 1, atol=1e-4)
    assert set(np.unique(np.asarray(t.train_y))) <= set(range(classes))
  # diabetes: regression targets -> 1 where above the median of all 442 rows.
  target = sklearn.datasets.load_diabetes().target
  tr, te = datasets._split_80_20(len(target))
  d = datasets.load_tabular("diabetes")
  np.testing.assert_array_equal(np.asarray(d.train_y), target[tr] > np.median(target))
  np.testing.assert_array_equal(np.asarray(d.test_y), target[te] > np.median(target))
  assert datasets.num_classes("diabetes") == 2 and datasets.input_shape("diabetes") == (10,)


def _clear_data_caches():
  for f in (datasets._open_bundle, datasets.load_tabular, text.load_text):
    f.cache_clear()


def test_offline_bundle_reproduces_the_embedded_data_without_sklearn(tmp_path, monkeypatch):
  """The GPU device has no scikit-learn and another Python: with the bundle
  (scripts/make_data_bundle.py) every embedded source loads bit-identically,
  and scikit-learn is never imported."""
  import importlib.util, sys
  spec = importlib.util.spec_from_file_location("make_data_bundle", "scripts/make_data_bundle.py")
  make = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(make)
  small = 300_000   # pydocs cap of this bundle; load_text's is larger
  path = tmp_path / "data.npz"
  np.savez_compressed(path, **make.bundle_arrays(pydocs_bytes=small))
  _clear_data_caches()
  direct = {"digits": datasets.load_numpy_images("digits"),
            **{n: datasets.load_tabular(n) for n in datasets.TABULAR_DATASETS},
            "pydocs": text.load_text("pydocs", max_bytes=small)}
  monkeypatch.setenv(datasets.DATA_BUNDLE_ENV, str(path))
  monkeypatch.setitem(sys.modules, "sklearn", None)        # import sklearn now fails
  monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
  _clear_data_caches()
  try:
    via = datasets.load_numpy_images("digits")
    for k in direct["digits"]:
      np.testing.assert_array_equal(via[k], direct["digits"][k])
    for n in datasets.TABULAR_DATASETS:
      for a, b in zip(datasets.load_tabular(n), direct[n]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(text.load_text("pydocs", max_bytes=small), direct["pydocs"]):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A shorter corpus is a prefix; a longer one than the bundle holds is refused.
    short = text.load_text("pydocs", max_bytes=small // 2)
    np.testing.assert_array_equal(np.asarray(short.train_tokens),
                                  np.asarray(direct["pydocs"].train_tokens)[:len(short.train_tokens)])
    with pytest.raises(ValueError, match="--pydocs_bytes"):
      text.load_text("pydocs", max_bytes=2 * small)
    monkeypatch.setenv(datasets.DATA_BUNDLE_ENV, str(tmp_path / "missing.npz"))
    _clear_data_caches()
    with pytest.raises(FileNotFoundError, match="make_data_bundle"):
      datasets.load_tabular("wine")
  finally:
    monkeypatch.undo()
    _clear_data_caches()
