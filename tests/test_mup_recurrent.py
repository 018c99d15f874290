"""lopt.mup.infer_kinds on flax RNN cells: recurrent kernels get the step
x 1/sqrt(recurrent_steps), nothing else changes, and a missing or wrong
recurrent_steps is named."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nn = pytest.importorskip("flax.linen")

import lopt  # noqa: E402
from lopt.mup import Kind  # noqa: E402


class Recurrent(nn.Module):
  width: int
  cell: str = "gru"

  @nn.compact
  def __call__(self, x):
    cell = nn.GRUCell(self.width) if self.cell == "gru" else nn.LSTMCell(self.width)
    return nn.Dense(3)(nn.RNN(cell)(x)[:, -1])


def _params(width, cell):
  x = jnp.zeros((2, 5, 4))
  return jax.jit(Recurrent(width, cell).init)(jax.random.PRNGKey(0), x)["params"]


@pytest.mark.parametrize("cell,recurrent,inputs", [
    ("gru", ("hr", "hz", "hn"), ("ir", "iz", "in")),
    ("lstm", ("hi", "hf", "hg", "ho"), ("ii", "if", "ig", "io"))])
def test_recurrent_kernels_get_one_over_sqrt_t(cell, recurrent, inputs):
  params, base = _params(32, cell), _params(8, cell)
  with pytest.warns(UserWarning, match=r"recurrent kernels.*recurrent_steps=T"):
    plain = lopt.mup.infer_kinds(params, base)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # given T: no warning
    kinds = lopt.mup.infer_kinds(params, base, recurrent_steps=16)
  name = "GRUCell_0" if cell == "gru" else "LSTMCell_0"
  mults = lopt.mup.multipliers(kinds, params, input_fan_in=19.2)
  plain_mults = lopt.mup.multipliers(plain, params, input_fan_in=19.2)
  for r in recurrent:
    assert plain[name][r]["kernel"] == "hidden"
    assert kinds[name][r]["kernel"] == Kind("hidden", 32, 0.25)
    assert mults[name][r]["kernel"] == pytest.approx(1 / (32 * 4))  # 1/fan_in × 1/sqrt(16)
  for i in inputs:  # fan-in 4, fixed: input layers, untouched
    assert kinds[name][i]["kernel"] == plain[name][i]["kernel"] == "input"
  # Every other tensor's multiplier is the plain one.
  flat = lambda t: {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  changed = {k for k, v in flat(mults).items() if v != flat(plain_mults)[k]}
  assert changed == {f"['{name}']['{r}']['kernel']" for r in recurrent}


def test_nnx_gru_cell_dense_h():
  nnx = pytest.importorskip("flax.nnx")
  make = lambda w: nnx.GRUCell(4, w, rngs=nnx.Rngs(0))
  kinds = lopt.mup.infer_kinds(make(32), make(8), recurrent_steps=9)
  assert kinds["dense_h"]["kernel"] == Kind("hidden", 32, 1 / 3)
  assert kinds["dense_i"]["kernel"] == "input"


def test_recurrent_steps_errors_name_the_fix():
  params, base = _params(32, "gru"), _params(8, "gru")
  for bad in (0, -3, 2.5, True, "16"):
    with pytest.raises(ValueError, match="recurrent_steps must be the sequence length"):
      lopt.mup.infer_kinds(params, base, recurrent_steps=bad)
  mlp = {"Dense_0": {"kernel": np.zeros((4, 32)), "bias": np.zeros(32)},
         "Dense_1": {"kernel": np.zeros((32, 32)), "bias": np.zeros(32)}}
  mlp_base = {"Dense_0": {"kernel": np.zeros((4, 8)), "bias": np.zeros(8)},
              "Dense_1": {"kernel": np.zeros((8, 8)), "bias": np.zeros(8)}}
  with pytest.raises(ValueError, match=r"no recurrent kernel was recognized.*Kind\('hidden'"):
    lopt.mup.infer_kinds(mlp, mlp_base, recurrent_steps=16)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # an MLP: no warning
    assert lopt.mup.infer_kinds(mlp, mlp_base)["Dense_1"]["kernel"] == "hidden"
