"""Shipped pretrained learned optimizers: offline loading, schema, bad checkpoints."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import diskio
from lopt import pretrained

SHIPPED = lopt.available()


def test_the_pretrained_los_are_shipped():
  assert {"mulo-m", "mulo-r", "mulo-s", "sp-lo"} <= set(SHIPPED), SHIPPED


def test_renamed_shipped_name_loads_the_same_checkpoint():
  """mulo-a, shipped 2026-12-03, became mulo-m: the old name loads it unchanged."""
  assert "mulo-a" not in SHIPPED and pretrained.RENAMED == {"mulo-a": "mulo-m"}
  (lo_a, theta_a), (lo_m, theta_m) = lopt.load_pretrained("mulo-a"), lopt.load_pretrained("mulo-m")
  assert lo_a == lo_m and type(lo_m).__name__ == "AdaptiveLOpt"
  for a, b in zip(jax.tree_util.tree_leaves(theta_a), jax.tree_util.tree_leaves(theta_m)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert lopt.load_metadata("mulo-m")["training"]["outer_steps"] > 0  # meta-trained


def test_epochs_reaches_only_an_lo_that_reads_it():
  """pretrained_optax(..., epochs=) refuses an LO without EpochScales (naming
  the fix) and checks the value; as_optax of one with it passes epochs on."""
  import dataclasses
  from lopt import adaptive
  with pytest.raises(ValueError, match=r"does not read it: leave epochs out"):
    lopt.pretrained_optax("mulo-m", num_steps=10, mup={}, epochs=3.0)
  lo, theta = lopt.load_pretrained("mulo-m")
  lo = dataclasses.replace(lo, step=lo.step + (adaptive.EpochScales(),))
  theta = {**theta, "epochs": {"w": jnp.asarray([[0.5, 0.0], [0.0, 0.0]], jnp.float32)}}
  params = {"w": jnp.ones((4, 3)), "b": jnp.ones(3)}
  kinds = {"w": "input", "b": "vector"}
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.1), params)
  tx = lo.as_optax(theta, num_steps=10, mup=kinds, epochs=20.0)
  got, _ = tx.update(grads, tx.init(params), params)
  want, _ = lo.update(theta, grads, lo.init_state(params), params, num_steps=10, mup=kinds,
                      epochs=20.0)
  base, _ = lo.update(theta, grads, lo.init_state(params), params, num_steps=10, mup=kinds)
  np.testing.assert_array_equal(np.asarray(got["w"]), np.asarray(want["w"]))
  assert not np.allclose(np.asarray(got["w"]), np.asarray(base["w"]))  # epochs changed the step


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_loads_and_steps(name):
  lo, theta = lopt.load_pretrained(name)
  meta = lopt.load_metadata(name)
  pretrained.validate_metadata(meta)
  for key in ("parameterization", "training", "evaluation"):
    assert key in meta, f"{name}: metadata lacks {key!r}"
  for key in ("recipe", "estimator", "outer_steps", "accelerator_hours", "device", "commit"):
    assert key in meta["training"], f"{name}: metadata['training'] lacks {key!r}"
  assert meta["parameterization"] == ("mup" if lo.mup else "sp")
  params = {"w1": jnp.ones((8, 16)) * 0.1, "w2": jnp.ones((16, 16)) * 0.1,
            "b": jnp.zeros(16), "out": jnp.ones((16, 3)) * 0.1}
  kinds = {"w1": "input", "w2": "hidden", "b": "vector", "out": "output"}
  tx = lopt.pretrained_optax(name, num_steps=100, mup=kinds)
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.01), params)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  flat = np.concatenate([np.ravel(u) for u in jax.tree_util.tree_leaves(updates)])
  assert np.all(np.isfinite(flat)) and np.abs(flat).max() > 0


def test_wrong_name_lists_the_available_ones():
  with pytest.raises(ValueError, match=r"Unknown pretrained learned optimizer 'mulo-xl'.*mulo-m"):
    lopt.load_pretrained("mulo-xl")


@pytest.fixture
def copy_of_shipped(tmp_path):
  dst = tmp_path / "lo"
  shutil.copytree(pretrained.shipped_dir() / "mulo-s", dst)
  return dst


def test_mismatched_architecture_is_rejected(copy_of_shipped):
  meta = json.loads((copy_of_shipped / "metadata.json").read_text())
  meta["config"]["hidden_size"] = 64  # θ on disk has hidden 32
  (copy_of_shipped / "metadata.json").write_text(json.dumps(meta))
  diskio.write_record(copy_of_shipped)  # sealed: the edit is deliberate, the θ check refuses it
  with pytest.raises(ValueError, match=r"θ tensor .* has shape .* expects"):
    lopt.load_pretrained(copy_of_shipped)


def test_unknown_architecture_and_version_are_rejected(copy_of_shipped):
  path = copy_of_shipped / "metadata.json"
  meta = json.loads(path.read_text())
  path.write_text(json.dumps({**meta, "architecture": "Transformer9000"}))
  diskio.write_record(copy_of_shipped)  # sealed: the schema must refuse it by itself
  with pytest.raises(ValueError, match="unknown architecture 'Transformer9000'"):
    lopt.load_pretrained(copy_of_shipped)
  path.write_text(json.dumps({**meta, "config": {**meta["config"], "wings": 2}}))
  diskio.write_record(copy_of_shipped)
  with pytest.raises(ValueError, match=r"config fields \['wings'\] are not understood"):
    lopt.load_pretrained(copy_of_shipped)
  path.write_text("{not json")
  diskio.write_record(copy_of_shipped)
  with pytest.raises(ValueError, match="not valid JSON"):
    lopt.load_pretrained(copy_of_shipped)


def test_corrupt_theta_is_rejected(copy_of_shipped):
  for f in (copy_of_shipped / "theta").rglob("*"):
    if f.is_file():
      f.write_bytes(b"corrupt")
  with pytest.raises(ValueError, match="does not match its SHA-256"):
    lopt.load_pretrained(copy_of_shipped)
  diskio.write_record(copy_of_shipped)  # sealed as it is: orbax's read fails instead
  with pytest.raises(ValueError, match="missing or corrupt"):
    lopt.load_pretrained(copy_of_shipped)


def test_a_directory_without_metadata_is_rejected(tmp_path):
  with pytest.raises(FileNotFoundError, match="holds no metadata.json"):
    lopt.load_pretrained(tmp_path)


def test_pretrained_optax_trains_a_model():
  """The shipped μLO_S, with no learning rate to tune, lowers a regression loss."""
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (128, 8))
  y = jnp.sin(x @ jnp.linspace(-1, 1, 8))[:, None]
  params = {"w1": jax.random.normal(key, (8, 32)) / np.sqrt(8), "b1": jnp.zeros(32),
            "w2": jax.random.normal(jax.random.fold_in(key, 1), (32, 32)) / np.sqrt(32),
            "out": jnp.zeros((32, 1))}
  kinds = {"w1": "input", "b1": "vector", "w2": "hidden", "out": "output"}

  def loss_fn(p):
    h = jax.nn.relu(x @ p["w1"] + p["b1"])
    h = jax.nn.relu(h @ p["w2"])
    return jnp.mean((h @ p["out"] / 32 - y) ** 2)

  tx = lopt.pretrained_optax("mulo-s", num_steps=200, mup=kinds)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    loss, g = jax.value_and_grad(loss_fn)(params)
    u, state = tx.update(g, state, params, loss=loss)
    return optax.apply_updates(params, u), state

  first = float(loss_fn(params))
  for _ in range(200):
    params, state = step(params, state)
  assert float(loss_fn(params)) < 0.8 * first


# ------------------------------------------------------------------ bad names, num_steps
def test_none_and_missing_paths_get_clear_errors(tmp_path):
  with pytest.raises(TypeError, match=r"name of a shipped pretrained.*got None.*mulo-m"):
    lopt.pretrained_optax(None, num_steps=10)
  with pytest.raises(TypeError, match="got 3 of type int"):
    lopt.load_pretrained(3)
  with pytest.raises(ValueError, match="Empty pretrained learned optimizer name"):
    lopt.pretrained_optax("", num_steps=10)
  missing = tmp_path / "no" / "such"
  for bad in (str(missing), missing, "./mulo-m-typo", "mulo-m/", "~/no-such-lopt-dir"):
    with pytest.raises(FileNotFoundError, match="No such directory"):
      lopt.pretrained_optax(bad, num_steps=10)
  # A bare name that is not shipped is still a name error listing the shipped ones.
  with pytest.raises(ValueError, match=r"Unknown pretrained learned optimizer 'mulo-q'.*mulo-m"):
    lopt.pretrained_optax("mulo-q", num_steps=10)


def test_num_steps_is_required_where_the_lo_depends_on_it():
  with pytest.raises(ValueError, match=r"pretrained_optax\('mulo-m'\) needs num_steps=.*"
                                       r"num_steps=10_000"):
    lopt.pretrained_optax("mulo-m", mup={})
  theta = lopt.MLPLOpt().init(jax.random.PRNGKey(0))
  for config, why in ((dict(step=(lopt.step_rules.Cosine(),)), "cosine schedule"),
                      (dict(features=lopt.Features(absolute_time=False)), "fraction of training")):
    with pytest.raises(ValueError, match=rf"num_steps is required.*{why}.*num_steps=10_000"):
      lopt.MLPLOpt(**config).as_optax(theta)
  lopt.MLPLOpt().as_optax(theta)  # constant schedule, absolute time: may be left out


def test_past_num_steps_the_cosine_lo_stops_and_the_check_says_so():
  """What the README states: update number num_steps and every later one is
  exactly 0 (the cosine schedule holds its final value); check_num_steps raises
  from then on, and before that returns the number of updates applied."""
  n = 4
  lo, theta = lopt.load_pretrained("mulo-s")
  params = {"w": jnp.ones((4, 4)) * 0.1, "b": jnp.zeros(4)}
  kinds = {"w": "hidden", "b": "vector"}
  tx = optax.chain(optax.clip_by_global_norm(1.0), lo.as_optax(theta, num_steps=n, mup=kinds))
  state = tx.init(params)
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.1), params)
  update = jax.jit(tx.update)
  for k in range(1, n + 3):  # update number k
    assert lopt.check_num_steps(state, n) == k - 1
    u, state = update(grads, state, params)
    size = max(float(jnp.abs(x).max()) for x in jax.tree_util.tree_leaves(u))
    assert (size == 0.0) == (k >= n), (k, size)
    if k >= n:
      with pytest.raises(RuntimeError, match=rf"applied {k} updates.*num_steps={n}"):
        lopt.check_num_steps(state, n)
      break
  with pytest.raises(ValueError, match="no learned-optimizer state"):
    lopt.check_num_steps(optax.adam(1e-3).init(params), n)


def test_import_lopt_exports_baselines_without_importing_flax():
  import subprocess
  import sys
  code = ("import sys, lopt; tx = lopt.baselines.get('adamw', learning_rate=1e-3); "
          "tx.init({'w': __import__('jax').numpy.zeros(2)}); "
          "assert 'flax' not in sys.modules, 'lopt imported flax'; print('ok')")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
