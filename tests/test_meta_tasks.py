"""meta_tasks: μP init and multipliers, normalizer, on-device batches, compile counts, bad input."""

import dataclasses
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import meta_tasks as mt
import training.config
from lopt.mup import multipliers
from meta_tasks import models, suites
from meta_tasks.families import META_INIT_SCALE

KEY = jax.random.key(0)


def _flat(tree):
  return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


# ------------------------------------------------------------------ μP init and multipliers

def test_mup_mlp_init_variances_and_multipliers():
  task = mt.ImageMLPTask(dataset="teacher", width=1024, depth=3)
  params = jax.jit(task.init)(KEY)
  # Empirical variance of a wide init vs 1/fan_in (64*1024 and 1024^2 samples: ~1% error).
  assert np.var(params["input"]["kernel"]) == pytest.approx(1 / 64, rel=0.03)
  assert np.var(params["hidden_1"]["kernel"]) == pytest.approx(1 / 1024, rel=0.02)
  assert np.mean(params["hidden_1"]["kernel"]) == pytest.approx(0.0, abs=1e-3)
  assert not np.any(params["readout"]["kernel"])          # μP readout: zero init
  assert all(not np.any(params[m]["bias"]) for m in params)
  assert task.kinds == {"input": {"kernel": "input", "bias": "vector"},
                        "hidden_1": {"kernel": "hidden", "bias": "vector"},
                        "readout": {"kernel": "output", "bias": "vector"}}
  assert task.mup == task.kinds and task.parameterization == "mup"
  mult = multipliers(task.mup, params)
  assert mult["hidden_1"]["kernel"] == 1 / 1024
  assert mult["input"]["kernel"] == mult["readout"]["kernel"] == mult["input"]["bias"] == 1.0


def test_sp_mlp_init_readout_and_no_mup():
  task = mt.ImageMLPTask(dataset="teacher", width=1024, depth=3, parameterization="sp")
  params = jax.jit(task.init)(KEY)
  assert np.var(params["readout"]["kernel"]) == pytest.approx(1 / 1024, rel=0.1)
  assert np.var(params["hidden_1"]["kernel"]) == pytest.approx(1 / 1024, rel=0.02)
  assert task.mup is None and task.kinds["hidden_1"]["kernel"] == "hidden"


def test_readout_multiplier_is_output_mult_over_fan_in():
  x = jax.random.normal(KEY, (4, 8))
  ones = {"params": {"kernel": jnp.ones((8, 3)), "bias": jnp.zeros((3,))}}
  mup = models.Readout(3, mup=True, output_mult=2.0).apply(ones, x)
  sp = models.Readout(3, mup=False, output_mult=2.0).apply(ones, x)
  np.testing.assert_allclose(mup[:, 0], 2.0 * x.sum(-1) / 8, rtol=1e-5)
  np.testing.assert_allclose(sp[:, 0], x.sum(-1), rtol=1e-5)


def test_cnn_init_and_kinds():
  cnn = mt.ImageCNNTask(dataset="digits", width=256, depth=2)
  p = jax.jit(cnn.init)(KEY)
  assert p["conv_1"]["kernel"].shape == (3, 3, 256, 256)
  assert np.var(p["conv_1"]["kernel"]) == pytest.approx(1 / (9 * 256), rel=0.02)
  assert np.var(p["input"]["kernel"]) == pytest.approx(1 / 9, rel=0.3)   # 9*1*256 samples
  assert multipliers(cnn.mup, p)["conv_1"]["kernel"] == 1 / (9 * 256)



@pytest.mark.parametrize("mup", [True, False])
def test_attention_logit_scale(mup):
  """μP scales q.k by 1/d_head, SP by 1/sqrt(d_head): compare with a NumPy reference."""
  d, heads, dh = 8, 2, 4
  eye = {"kernel": jnp.eye(d), "bias": jnp.zeros((d,))}
  params = {"params": {n: eye for n in ("query", "key", "value", "out")}}
  x = np.asarray(jax.random.normal(KEY, (1, 3, d)))
  got = models.CausalSelfAttention(heads, mup).apply(params, jnp.asarray(x))
  scale = 1 / dh if mup else 1 / math.sqrt(dh)
  want = np.zeros_like(x)
  for h in range(heads):
    xh = x[0, :, h * dh:(h + 1) * dh]
    logits = xh @ xh.T * scale + np.triu(np.full((3, 3), -np.inf), 1)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    want[0, :, h * dh:(h + 1) * dh] = (w / w.sum(-1, keepdims=True)) @ xh
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dynamic_init_scale_is_log_uniform_per_key():
  task = mt.ImageMLPTask(dataset="teacher", width=256, depth=3, init_scale_range=(0.5, 2.0))
  params = jax.jit(jax.vmap(task.init))(jax.random.split(KEY, 16))
  std = np.std(np.asarray(params["hidden_1"]["kernel"]).reshape(16, -1), axis=1) * 16  # *sqrt(256)
  assert std.min() >= 0.5 * 0.97 and std.max() <= 2.0 * 1.03
  assert std.max() / std.min() > 1.5                      # really drawn per key
  assert not np.any(params["readout"]["kernel"])          # zero readout stays zero


# ------------------------------------------------------------------ normalizer

def test_normalizer_maps_nan_and_inf_to_max():
  task = mt.ImageMLPTask(dataset="digits", width=8)
  losses = jnp.array([jnp.nan, jnp.inf, -jnp.inf, -1.0, math.log(10), 1e9])
  got = np.asarray(jax.jit(jax.vmap(task.normalizer))(losses))
  top = task.MAX_NORMALIZED_LOSS
  np.testing.assert_allclose(got, [top, top, top, 0.0, 1.0, top], rtol=1e-6)
  lm = mt.TransformerLMTask(width=16, seq_len=8)
  assert float(lm.normalizer(jnp.float32(math.log(256) / 2))) == pytest.approx(0.5)
  quad = mt.QuadraticTask(dim=4, condition_number=1.0, noise=0.0)
  assert quad.reference_loss == pytest.approx(0.5)
  assert float(quad.normalizer(jnp.float32(jnp.nan))) == top


# ------------------------------------------------------------------ batches

def test_batches_sampled_on_device_inside_jit_and_deterministic():
  task = mt.ImageMLPTask(dataset="digits", width=8, batch_size=64)
  sample = jax.jit(task.sample_batch)
  a, b, c = sample(jax.random.key(1)), sample(jax.random.key(1)), sample(jax.random.key(2))
  assert isinstance(a["inputs"], jax.Array) and a["inputs"].shape == (64, 8, 8, 1)
  np.testing.assert_array_equal(a["inputs"], b["inputs"])
  np.testing.assert_array_equal(a["labels"], b["labels"])
  assert np.mean(np.asarray(a["labels"]) != np.asarray(c["labels"])) > 0.5
  # One program: an on-device gather of the stored uint8 images, no host callback.
  jaxpr = str(jax.make_jaxpr(task.sample_batch)(jax.random.key(1)))
  assert "gather" in jaxpr and "u8[1438,8,8,1]" in jaxpr and "callback" not in jaxpr
  # Standardized with the train statistics.
  assert float(np.mean(a["inputs"])) == pytest.approx(0.0, abs=0.1)
  assert float(np.std(a["inputs"])) == pytest.approx(1.0, abs=0.1)


def test_data_as_jit_argument_matches_closure_and_keeps_program_small():
  task = mt.ImageMLPTask(dataset="digits", width=8, batch_size=16)
  data = task.data()
  f = jax.jit(lambda d, k: task.sample_batch(k, data=d))
  np.testing.assert_array_equal(f(data, jax.random.key(5))["inputs"],
                                jax.jit(task.sample_batch)(jax.random.key(5))["inputs"])
  test_batch = jax.jit(lambda d, k: task.sample_eval_batch(k, "test", data=d))(data, KEY)
  assert test_batch["labels"].shape == (16,)
  # Closed-over data is embedded in the program; passed data is not.
  as_arg = len(f.lower(data, KEY).as_text())
  closure = len(jax.jit(task.sample_batch).lower(KEY).as_text())
  assert as_arg < 50_000 and closure > as_arg + 100_000   # the 92 KB of train images


def test_eval_split_is_held_out():
  task = mt.ImageMLPTask(dataset="digits", width=8)
  data = task.data()
  assert data.train_images.shape[0] == 1438 and data.test_images.shape[0] == 359
  with pytest.raises(ValueError, match="'val'.*'train', 'valid', 'test'"):
    task.sample_eval_batch(KEY, split="val")


def test_valid_split_is_disjoint_from_fit_and_test():
  """reserve_valid: training batches come from the first 80% of the training
  rows, validation batches from the last 20%; the test split is untouched."""
  from meta_tasks import datasets
  plain = mt.ImageMLPTask(dataset="digits", width=8, batch_size=512)
  task = mt.ImageMLPTask(dataset="digits", width=8, batch_size=512, reserve_valid=True)
  assert task.name.endswith("_rv") and task.name != plain.name
  n = task.data().train_images.shape[0]
  assert datasets.train_range(n, "fit") == (0, 1150) and datasets.train_range(n, "valid") == (1150, n)
  with pytest.raises(ValueError, match="reserve_valid=True"):
    plain.sample_eval_batch(KEY, split="valid")
  data = task.data()
  rows = np.asarray(data.train_images).reshape(n, -1)
  def row_ids(batch):
    x = np.asarray(batch["inputs"]) * np.asarray(data.std) + np.asarray(data.mean)
    x = np.rint(x.reshape(x.shape[0], -1) * 255.0)
    return [int(np.flatnonzero((rows == xi).all(axis=1))[0]) for xi in x]
  fit = row_ids(task.sample_batch(KEY))
  valid = row_ids(task.sample_eval_batch(KEY, split="valid"))
  assert max(fit) < 1150 <= min(valid)
  # The plain task's training batches are what they were (the whole train split).
  np.testing.assert_array_equal(
      np.asarray(plain.sample_batch(KEY)["labels"]),
      np.asarray(data.train_labels)[np.asarray(jax.random.randint(KEY, (512,), 0, n))])


def test_text_valid_windows_stay_in_their_range():
  from meta_tasks import datasets, text
  data = text.TextArrays(jnp.arange(1000, dtype=jnp.int32), jnp.zeros((100,), jnp.int32))
  lo, hi = datasets.train_range(1000, "valid")
  for split, (a, b) in (("fit", (0, lo)), ("valid", (lo, hi))):
    w = text.sample_windows(data, KEY, 256, 16, split)
    starts, last = np.asarray(w["inputs"])[:, 0], np.asarray(w["targets"])[:, -1]
    assert starts.min() >= a and last.max() < b and last.max() > b - 40


def test_synthetic_tables_are_small_noisy_and_fixed():
  from meta_tasks import datasets
  for name, (dim, classes, rows, flip, _) in datasets.SYNTHETIC_TABULAR.items():
    d = datasets.load_synthetic_tabular(name)
    assert d.train_x.shape == (rows, dim) and d.test_x.shape[1] == dim
    counts = np.bincount(np.asarray(d.train_y), minlength=classes)
    assert counts.min() > 0.05 * rows  # every class present
  again = datasets.load_synthetic_tabular.__wrapped__("synth-a")
  np.testing.assert_array_equal(np.asarray(again.train_x),
                                np.asarray(datasets.load_synthetic_tabular("synth-a").train_x))


# ------------------------------------------------------------------ compilation

class CompileCounter:
  """Counts executables built for jit cache misses (jax.monitoring).

  The event wraps XLA's compile-or-load-from-persistent-cache step, so it
  fires even when tests/conftest.py's on-disk compile cache is warm.
  """
  EVENT = "/jax/core/compile/backend_compile_duration"

  def __enter__(self):
    self.count = 0
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def _listen(self, event, duration, **kwargs):
    if event == self.EVENT:
      self.count += 1

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)


@pytest.mark.parametrize("family, num_configs", [("tiny", 2), ("quadratic", 1)])
def test_family_compiles_once_for_many_dynamic_samples(family, num_configs):
  for task in mt.get_distribution(family).configs()[:num_configs]:
    init, loss, sample = jax.jit(task.init), jax.jit(task.loss), jax.jit(task.sample_batch)
    vinit, vsample = jax.jit(jax.vmap(task.init)), jax.jit(jax.vmap(task.sample_batch))
    # Keys are made up front: eager slicing inside the counted region would compile too.
    keys = list(jax.random.split(jax.random.key(7), 10))
    key_groups = list(jax.random.split(jax.random.key(8), 30).reshape(3, 10))
    with CompileCounter() as first:
      params, batch = init(keys[0]), sample(keys[0])
      jax.block_until_ready((loss(params, batch, keys[0]), vinit(key_groups[0]),
                             vsample(key_groups[0])))
    with CompileCounter() as rest:
      instances = [init(k) for k in keys[1:]]
      losses = [loss(p, sample(k), k) for p, k in zip(instances, keys[1:])]
      vmapped = [(vinit(g), vsample(g)) for g in key_groups[1:]]
      jax.block_until_ready((losses, vmapped))
    assert first.count >= 5, task.name      # the five programs were compiled ...
    assert rest.count == 0, task.name       # ... once: new keys never recompile
    # ... and the keys really draw different instances.
    norms = {round(sum(float(np.sum(np.square(x))) for x in jax.tree.leaves(p)), 3)
             for p in instances}
    assert len(norms) == 9, task.name


# ------------------------------------------------------------------ training works

def _train_with_adam(task, lr, steps):
  """Init params, and held-out metrics before and after ``steps`` Adam steps, in one jit."""
  opt = optax.adam(lr)

  @jax.jit
  def run(key):
    def step(carry, k):
      params, state = carry
      grads = jax.grad(task.loss)(params, task.sample_batch(k), k)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None
    params = task.init(key)
    (trained, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    eval_batch = task.sample_eval_batch(jax.random.fold_in(key, 1), "test")
    return params, task.metrics(params, eval_batch), task.metrics(trained, eval_batch)

  return run(KEY)


def test_mlp_on_digits_trains():
  task = mt.get_suite("smoke")[0].task
  _, before, after = _train_with_adam(task, 3e-3, 150)
  assert float(before["loss"]) == pytest.approx(math.log(10), abs=1e-5)   # zero readout
  assert float(after["loss"]) < 0.6 and float(after["accuracy"]) > 0.8


def test_transformer_lm_init_kinds_and_learning():
  task = mt.TransformerLMTask(width=64, depth=1, num_heads=4, seq_len=16, batch_size=16,
                              max_bytes=300_000)
  p, before, after = _train_with_adam(task, 1e-2, 40)
  assert np.var(p["embed"]) == pytest.approx(1.0, rel=0.05)           # one-hot input: N(0,1)
  assert np.var(p["block_0"]["mlp_in"]["kernel"]) == pytest.approx(1 / 64, rel=0.05)
  assert not np.any(p["readout"]["kernel"])
  kinds, mult = _flat(task.kinds), _flat(multipliers(task.mup, p))
  assert kinds["['embed']"] == kinds["['pos_embed']"] == "embedding"  # lookup tables
  assert kinds["['readout']['kernel']"] == "output"
  assert kinds["['block_0']['attn']['query']['kernel']"] == "hidden"
  assert mult["['block_0']['attn']['query']['kernel']"] == 1 / 64
  assert mult["['block_0']['mlp_out']['kernel']"] == 1 / 256            # (4d, d) kernel
  assert mult["['block_0']['ln_attn']['scale']"] == 1.0
  assert float(before["loss"]) == pytest.approx(math.log(256), abs=1e-4)
  assert float(after["loss"]) < float(before["loss"]) - 1.0             # 5.55 -> ~4.1 nats
  assert 0.0 <= float(after["accuracy"]) <= 1.0
  assert 0 < float(task.normalizer(after["loss"])) < 0.82


def test_quadratic_task():
  task = mt.QuadraticTask(dim=8, noise=0.5, batch_size=4)

  @jax.jit
  def check(key):
    curvature, center = task._problem()  # pylint: disable=protected-access
    exact, noisy = task.sample_eval_batch(key, "test"), task.sample_batch(key)
    grad = jax.grad(task.loss)({"x": center + 1.0}, exact, None)["x"]
    return (curvature, task.loss({"x": center}, exact, None),
            task.loss({"x": center}, noisy, None), grad, task.metrics({"x": center}, exact))

  curvature, exact_loss, noisy_loss, grad, metrics = check(KEY)
  assert float(exact_loss) == 0.0 and float(noisy_loss) > 0.0     # test split is noise-free
  np.testing.assert_allclose(grad, curvature / 8, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(curvature)[[0, -1]], [1.0, 100.0], rtol=1e-5)
  assert set(metrics) == {"loss"}                                  # no accuracy for quadratics
  assert task.kinds == {"x": "vector"} and task.mup is None


# ------------------------------------------------------------------ families and suites

def test_distributions_and_suites():
  rng = np.random.default_rng(0)
  for name in mt.distribution_names():
    family = mt.get_distribution(name)
    configs = family.configs()
    assert family.name == name and len({t.name for t in configs}) == len(configs)
    assert all(family.sample(rng) in configs for _ in range(5))
  tiny = mt.get_distribution("tiny").configs()
  assert [(t.width, t.depth, t.dataset, t.parameterization) for t in tiny] == [
      (32, 3, "digits", "mup"), (64, 3, "digits", "mup")]
  assert {t.parameterization for t in mt.get_distribution("sp-m-digits").configs()} == {"sp"}
  assert [t.width for t in mt.get_distribution("mulo-m").configs()] == [128, 512, 1024]
  img, img_cnn = (mt.get_distribution(n).configs() for n in ("tiny-mix-img", "tiny-mix-img-cnn"))
  assert img_cnn[:-1] == img and (img_cnn[-1].KIND, img_cnn[-1].parameterization,
                                  img_cnn[-1].width, img_cnn[-1].reserve_valid) == (
                                      "cnn", "sp", 16, True)
  tables = mt.get_distribution("tiny-mix-tables").configs()
  assert tables[:-2] == img_cnn and [(t.dataset, t.width, t.depth, t.batch_size)
                                     for t in tables[-2:]] == [("synth-f", 128, 3, 32),
                                                               ("synth-g", 64, 3, 16)]

  def configs(names):
    return {dataclasses.replace(t, init_scale_range=(1.0, 1.0))
            for n in names for t in mt.get_distribution(n).configs()}
  # GPU suites are held out from every distribution; CPU suites from the CPU-scale ones
  # (the offline ``*-digits`` stand-ins reach width 1024, beyond what a CPU suite can run).
  cpu_configs = configs([n for n in mt.distribution_names() if n.startswith("tiny")
                         or n.endswith("-cpu")])
  all_configs = configs(mt.distribution_names())
  held_out = ("heldout-width", "heldout-depth", "heldout-arch", "heldout-data", "heldout-user")
  # The screening suite (looked at while choosing recipes) and the held-out one are disjoint.
  screen = {e.task for e in mt.get_suite("screen-user-cpu")}
  assert not screen & {e.task for e in mt.get_suite("heldout-user-cpu")}
  # The broad screen extends the screen and shares no config with any held-out suite.
  broad = [e.task for e in mt.get_suite("screen-broad-cpu")]
  assert screen <= set(broad) and len({(e.task, e.num_steps)
                                       for e in mt.get_suite("screen-broad-cpu")}) == 14
  assert not set(broad) & {e.task for n in mt.suite_names() if n.startswith("heldout")
                           for e in mt.get_suite(n)}
  for name in mt.suite_names():
    for entry in mt.get_suite(name):
      assert entry.num_steps > 0 and entry.tuning_task is not None
      if name.startswith(held_out):
        assert entry.task not in (cpu_configs if name.endswith("-cpu") else all_configs), (
            name, entry.task.name)
  ratios = [e.task.width / e.tuning_task.width for e in mt.get_suite("heldout-width")]
  assert ratios == [4, 16]
  assert [e.task.width for e in mt.get_suite("heldout-width-cpu")] == [512, 2048]
  # One spelling per config: the native image size is stored, so these are the same task.
  assert mt.ImageMLPTask(dataset="digits") == mt.ImageMLPTask(dataset="digits", image_size=8)
  assert all(e.task.depth == 4 * e.tuning_task.depth for e in mt.get_suite("heldout-depth"))
  assert [e.num_steps for e in mt.get_suite("heldout-horizon")] == [
      5 * suites.META_HORIZON, 25 * suites.META_HORIZON]
  # The -cpu horizons are held out from the longest *-cpu meta-training horizon.
  longest = max(training.config.get_preset(p).max_horizon
                for p in ("mulo-m-cpu", "mulo-s-cpu", "sp-lo-cpu"))
  assert suites.META_HORIZON_CPU == longest
  assert [e.num_steps for e in mt.get_suite("heldout-horizon-cpu")] == [5 * longest,
                                                                        25 * longest]
  assert len(mt.get_suite("full")) == sum(len(mt.get_suite(n)) for n in (
      "heldout-width", "heldout-depth", "heldout-horizon", "heldout-arch", "heldout-data"))
  assert META_INIT_SCALE[0] < 1 < META_INIT_SCALE[1]


def test_import_needs_no_tfds_sklearn_or_other_project_packages():
  code = ("import sys, meta_tasks; "
          "bad = [m for m in ('tensorflow_datasets', 'sklearn', 'lopt', 'training') "
          "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=60, check=False)
  assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("make, match", [
    (lambda: mt.ImageMLPTask(dataset="mnits"), r"dataset 'mnits'.*'mnist'"),
    (lambda: mt.ImageMLPTask(activation="swish"), r"activation 'swish'.*'relu', 'gelu'"),
    (lambda: mt.ImageMLPTask(width=0), r"width must be an integer >= 1, got 0"),
    (lambda: mt.ImageMLPTask(width=12.5), r"width must be an integer >= 1, got 12.5"),
    (lambda: mt.ImageMLPTask(depth=1), r"depth must be an integer >= 2, got 1"),
    (lambda: mt.ImageMLPTask(batch_size=-4), r"batch_size must be an integer >= 1, got -4"),
    (lambda: mt.ImageMLPTask(image_size=12), r"image_size for digits 12.*None, 8, 16, 32"),
    (lambda: mt.ImageMLPTask(dataset="mnist", image_size=30), r"30.*None, 8, 16, 32, 28"),
    (lambda: mt.ImageMLPTask(parameterization="ntk"), r"parameterization 'ntk'.*'mup', 'sp'"),
    (lambda: mt.ImageMLPTask(init_scale_range=(2.0, 1.0)), r"init_scale_range"),
    (lambda: mt.ImageCNNTask(dataset="teacher"), r"needs an image dataset"),
    (lambda: mt.TransformerLMTask(width=30, num_heads=4), r"width 30.*num_heads 4"),
    (lambda: mt.TransformerLMTask(dataset="wiki"), r"text dataset 'wiki'.*'pydocs'"),
    (lambda: mt.QuadraticTask(condition_number=0.5), r"condition_number must be >= 1"),
    (lambda: mt.get_distribution("mulo-xl"), r"distribution 'mulo-xl'.*tiny.*mulo-s-digits"),
    (lambda: mt.get_suite("heldout-colour"), r"suite 'heldout-colour'.*smoke.*heldout-width"),
    (lambda: models.get_activation("softplus"), r"activation 'softplus'.*'tanh', 'silu'"),
])
def test_bad_input_errors(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_epochs_per_step_is_batch_over_the_training_split():
  """Passes over the split a task trains on per step (an LO's epochs= is
  num_steps × this): batch ÷ rows of the "fit" split with reserve_valid, of the
  whole training split without; windows of seq_len for text; 0 for fresh data."""
  from meta_tasks import user_tasks
  plain = mt.ImageMLPTask(dataset="digits", width=8, batch_size=32)
  fit = mt.ImageMLPTask(dataset="digits", width=8, batch_size=32, reserve_valid=True)
  n = plain.data().train_images.shape[0]
  assert plain.train_examples() == n and fit.train_examples() == 1150
  assert fit.epochs_per_step() == 32 / 1150
  table = user_tasks.PlainMLPTask(dataset="synth-a", width=8, batch_size=16)
  assert table.epochs_per_step() == 16 / table.data().train_x.shape[0]
  teacher = mt.ImageMLPTask(dataset="teacher", width=8, batch_size=32)
  assert teacher.train_examples() is None and teacher.epochs_per_step() == 0.0
  lm = mt.TransformerLMTask(seq_len=16, width=16, depth=1, num_heads=2, batch_size=8)
  assert lm.train_examples() == lm.data().train_tokens.shape[0] // 16
