"""Shipped pretrained learned optimizers: offline loading, schema, bad checkpoints."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import pretrained

SHIPPED = lopt.available()


def test_the_pretrained_los_are_shipped():
  assert {"mulo-m", "mulo-s", "sp-lo"} <= set(SHIPPED), SHIPPED


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
  with pytest.raises(ValueError, match=r"θ tensor .* has shape .* expects"):
    lopt.load_pretrained(copy_of_shipped)


def test_unknown_architecture_and_version_are_rejected(copy_of_shipped):
  path = copy_of_shipped / "metadata.json"
  meta = json.loads(path.read_text())
  path.write_text(json.dumps({**meta, "architecture": "Transformer9000"}))
  with pytest.raises(ValueError, match="unknown architecture 'Transformer9000'"):
    lopt.load_pretrained(copy_of_shipped)
  path.write_text(json.dumps({**meta, "config": {**meta["config"], "wings": 2}}))
  with pytest.raises(ValueError, match=r"config fields \['wings'\] are not understood"):
    lopt.load_pretrained(copy_of_shipped)
  path.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    lopt.load_pretrained(copy_of_shipped)


def test_corrupt_theta_is_rejected(copy_of_shipped):
  for f in (copy_of_shipped / "theta").rglob("*"):
    if f.is_file():
      f.write_bytes(b"corrupt")
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
