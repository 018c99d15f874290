"""lopt.mup on real flax linen params: kinds and fan-ins of attention, DenseGeneral,
Conv and Embed; the same-size-base error; and the SP-readout rule (``sp_output``)
checked against the μP readout it stands for."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

nn = pytest.importorskip("flax.linen")

import lopt  # noqa: E402
from lopt.mup import Kind  # noqa: E402

HEADS = 4


class Net(nn.Module):
  """Embed -> attention -> DenseGeneral merging two axes; Conv stack; Dense readout."""
  width: int

  @nn.compact
  def __call__(self, tokens, image):
    h = nn.Embed(16, self.width)(tokens)                              # (B, L, w)
    h = nn.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=self.width)(h, h)
    h = h.reshape(h.shape[:-1] + (HEADS, self.width // HEADS))
    h = nn.DenseGeneral(self.width, axis=(-2, -1), name="merge")(h)   # kernel (4, w/4, w)
    c = nn.relu(nn.Conv(self.width, (3, 3))(image))                    # (3, 3, 3, w)
    c = nn.Conv(self.width, (3, 3))(c)                                 # (3, 3, w, w)
    return nn.Dense(10)(h.mean(1) + c.mean((1, 2)))                    # readout (w, 10)


@functools.lru_cache(maxsize=None)
def _params_cached(width):
  tokens, image = jnp.zeros((2, 5), jnp.int32), jnp.zeros((2, 6, 6, 3))
  return jax.jit(Net(width).init)(jax.random.PRNGKey(0), tokens, image)["params"]


def _params(width):
  return jax.tree_util.tree_map(lambda a: a, _params_cached(width))  # a fresh dict


def test_infer_kinds_on_linen_attention_dense_general_conv_embed():
  w, base_w = 64, 32
  params = _params(w)
  kinds = lopt.mup.infer_kinds(params, _params(base_w))
  attn = kinds["MultiHeadDotProductAttention_0"]
  for name in ("query", "key", "value"):
    # (d, heads, head_dim): contracts over d alone, so fan_in = d, not d*heads.
    assert params["MultiHeadDotProductAttention_0"][name]["kernel"].shape == (w, HEADS, w // HEADS)
    # q and k: flax's 1/sqrt(head_dim) logits move sqrt(head_dim) x a μP model's per step.
    scale = (w // HEADS) ** -0.5 if name != "value" else 1.0
    assert attn[name]["kernel"] == Kind("hidden", w, scale), name
    assert attn[name]["bias"] == "vector", name            # (heads, head_dim): a vector
  # out kernel (heads, head_dim, d): fan_in = heads*head_dim = prod(shape[:-1]).
  assert attn["out"]["kernel"] == "hidden" and attn["out"]["bias"] == "vector"
  assert kinds["merge"]["kernel"] == "hidden"
  assert kinds["Conv_0"]["kernel"] == "input"              # 3 input channels: fixed
  assert kinds["Conv_1"]["kernel"] == "hidden"
  assert kinds["Embed_0"]["embedding"] == "embedding"      # (vocab, d): fixed, a lookup
  assert kinds["Dense_0"]["kernel"] == "sp_output"         # plain readout
  assert kinds["Dense_0"]["bias"] == "vector"

  mults = lopt.mup.multipliers(kinds, params)
  attn_m = mults["MultiHeadDotProductAttention_0"]
  for name in ("query", "key", "value"):
    scale = (w // HEADS) ** -0.5 if name != "value" else 1.0
    assert attn_m[name]["kernel"] == pytest.approx(scale / w) and attn_m[name]["bias"] == 1.0
  assert attn_m["out"]["kernel"] == 1 / (HEADS * (w // HEADS))
  assert mults["merge"]["kernel"] == 1 / w
  assert mults["Conv_0"]["kernel"] == 1.0
  assert mults["Conv_1"]["kernel"] == 1 / (3 * 3 * w)      # kh * kw * in
  assert mults["Embed_0"]["embedding"] == 1.0
  assert mults["Dense_0"]["kernel"] == 1 / w               # SP readout: 1/fan_in
  groups = lopt.mup.step_groups(kinds, params)
  assert groups["Dense_0"]["kernel"] == 1 and groups["Conv_0"]["kernel"] == 0

  # readout="mup": the model scales its readout itself, so its step is unscaled.
  mup_kinds = lopt.mup.infer_kinds(params, _params(base_w), readout="mup")
  assert mup_kinds["Dense_0"]["kernel"] == "output"
  assert lopt.mup.multipliers(mup_kinds, params)["Dense_0"]["kernel"] == 1.0
  with pytest.raises(ValueError, match="readout must be one of"):
    lopt.mup.infer_kinds(params, _params(base_w), readout="plain")


def test_input_fan_in_gives_dense_input_matrices_ref_over_fan_in_and_keeps_the_rest():
  w = 64
  params = _params(w)
  kinds = lopt.mup.infer_kinds(params, _params(32))
  plain = lopt.mup.multipliers(kinds, params)
  scaled = lopt.mup.multipliers(kinds, params, input_fan_in=13.5)
  assert scaled["Conv_0"]["kernel"] == pytest.approx(13.5 / (3 * 3 * 3))   # dense input
  assert scaled["Embed_0"]["embedding"] == 1.0                              # one-hot input
  for path, m in jax.tree_util.tree_leaves_with_path(plain):
    if "Conv_0" not in jax.tree_util.keystr(path) or "bias" in jax.tree_util.keystr(path):
      got = scaled
      for k in path:
        got = got[k.key]
      assert got == m, jax.tree_util.keystr(path)   # hidden, readout, vectors: unchanged
  # An explicit fan-in and a Kind's scale compose with it; vectors never scale.
  assert lopt.mup.multiplier_for(Kind("input", 5, 2.0), (5, 7), input_fan_in=10.0) == 4.0
  assert lopt.mup.multiplier_for("input", (7,), input_fan_in=10.0) == 1.0
  assert lopt.mup.step_groups(kinds, params)["Embed_0"]["embedding"] == 0


def _input_preactivation_change(d: int, input_fan_in) -> float:
  """RMS change of a dense input layer's pre-activations x @ W (unit-variance
  inputs of dimension d) after one sign step (Adam's direction, correlated
  with x as a gradient is) of the size of ``multipliers``' multiplier."""
  x = jax.random.normal(jax.random.PRNGKey(0), (32, d))
  w = jax.random.normal(jax.random.PRNGKey(1), (d, 16)) / np.sqrt(d)
  mult = lopt.mup.multipliers({"k": "input"}, {"k": w}, input_fan_in=input_fan_in)["k"]
  delta = jax.random.normal(jax.random.PRNGKey(2), (32, 16))
  step = -mult * jnp.sign(x.T @ delta)
  return float(jnp.sqrt(jnp.mean((x @ step) ** 2)))


def test_input_fan_in_makes_an_input_layers_step_independent_of_the_data_dimension():
  # μP's one input step moves the pre-activations ~d times more at d = 64
  # than at d = 4 (sign steps correlated with the input add up); with
  # input_fan_in the change no longer grows with d.
  grow = _input_preactivation_change(64, None) / _input_preactivation_change(4, None)
  flat = _input_preactivation_change(64, 16.0) / _input_preactivation_change(4, 16.0)
  assert grow > 6.0, grow
  assert flat == pytest.approx(grow * 4 / 64, rel=1e-6) and 0.3 < flat < 1.5, flat


def test_kernel_fan_in():
  assert lopt.mup.kernel_fan_in((), (3, 3, 8, 16)) == 72
  path = jax.tree_util.tree_flatten_with_path({"query": {"kernel": 0}})[0][0][0]
  assert lopt.mup.kernel_fan_in(path, (64, 4, 16)) == 64
  assert lopt.mup.kernel_fan_in(path, (64, 4, 16), contracting=2) == 256
  with pytest.raises(ValueError, match="contracting axes"):
    lopt.mup.kernel_fan_in(path, (64, 4), contracting=2)


def _qk_logit_change(width: int, attention: str) -> float:
  """RMS change of flax-style attention logits q.k/sqrt(head_dim) (2 heads, LN-scale
  inputs) after one sign step of the query kernel (Adam's direction, correlated
  with k as a gradient is) of the size of ``multipliers``' q multiplier."""
  heads, tokens = 2, 8
  x = jax.random.normal(jax.random.PRNGKey(0), (tokens, width))
  params = {"query": {"kernel": jnp.zeros((width, heads, width // heads))},
            "key": {"kernel": jnp.zeros((width, heads, width // heads))}}
  base = jax.tree_util.tree_map(lambda a: a[: a.shape[0] // 2, :, : a.shape[2] // 2], params)
  kinds = lopt.mup.infer_kinds(params, base, attention=attention)
  mult = lopt.mup.multipliers(kinds, params)["query"]["kernel"]
  wq, wk = (jax.random.normal(jax.random.PRNGKey(i), params["query"]["kernel"].shape)
            / np.sqrt(width) for i in (1, 2))
  logits = lambda wq: jnp.einsum("qhd,khd->hqk", jnp.einsum("td,dhe->the", x, wq),
                                 jnp.einsum("td,dhe->the", x, wk)) / np.sqrt(width // heads)
  step = -mult * jnp.sign(jax.grad(lambda w: -logits(w).sum())(wq))
  return float(jnp.sqrt(jnp.mean((logits(wq + step) - logits(wq)) ** 2)))


def test_attention_qk_steps_move_flax_logits_as_a_mup_models_whatever_the_head_dim():
  # flax scales logits by 1/sqrt(head_dim): with the μP 1/fan_in step alone
  # (attention="mup") a step moves them sqrt(head_dim) times more at 4x the
  # width (2x); with the 1/sqrt(head_dim) factor ("sqrt") the change is width-free.
  sqrt_ratio = _qk_logit_change(256, "sqrt") / _qk_logit_change(64, "sqrt")
  mup_ratio = _qk_logit_change(256, "mup") / _qk_logit_change(64, "mup")
  assert abs(sqrt_ratio - 1.0) < 0.15, sqrt_ratio
  assert abs(mup_ratio / sqrt_ratio - 2.0) < 1e-3, (mup_ratio, sqrt_ratio)
  kinds = lopt.mup.infer_kinds(_params(64), _params(32))["MultiHeadDotProductAttention_0"]
  mults = lopt.mup.multipliers(kinds, _params(64)["MultiHeadDotProductAttention_0"])
  assert mults["query"]["kernel"] == pytest.approx(1 / (64 * np.sqrt(64 // HEADS)))
  assert mults["value"]["kernel"] == pytest.approx(1 / 64)
  with pytest.raises(ValueError, match="attention must be one of"):
    lopt.mup.infer_kinds(_params(64), _params(32), attention="linear")
  with pytest.raises(ValueError, match="Kind scale"):
    lopt.mup.multiplier_for(Kind("hidden", 8, 0.0), (8, 2, 4))


def test_infer_kinds_rejects_a_base_of_the_same_size():
  params = _params(32)
  with pytest.raises(ValueError, match=r"same shapes everywhere.*\*narrower\* width"):
    lopt.mup.infer_kinds(params, params)
  with pytest.raises(ValueError, match=r"same shapes everywhere"):
    lopt.mup.infer_kinds(params, _params(32))


def test_spec_is_matched_by_path_and_mismatches_are_named():
  params = _params(64)
  kinds = lopt.mup.infer_kinds(params, _params(32))
  # A spec built on {"params": ...} works for the inner params, and vice versa.
  outer = lopt.mup.infer_kinds({"params": params}, {"params": _params(32)})
  assert lopt.mup.multipliers(outer, params) == lopt.mup.multipliers(kinds, params)
  assert (lopt.mup.multipliers(kinds, {"params": params})["params"]
          == lopt.mup.multipliers(kinds, params))
  # Matching is by path: another container type with the same paths is fine.
  from flax.core import freeze
  is_kind = lambda x: isinstance(x, (str, Kind))
  assert (jax.tree_util.tree_structure(freeze(kinds), is_leaf=is_kind)
          != jax.tree_util.tree_structure(kinds, is_leaf=is_kind))
  assert lopt.mup.multipliers(freeze(kinds), params) == lopt.mup.multipliers(kinds, params)
  # A missing tensor is named, not dumped as two tree structures.
  broken = {k: v for k, v in kinds.items() if k != "merge"}
  with pytest.raises(ValueError, match=r"params without a μP spec entry: "
                                       r"\['merge'\]\['bias'\], \['merge'\]\['kernel'\]"):
    lopt.mup.multipliers(broken, params)
  with pytest.raises(ValueError, match=r"base params"):
    lopt.mup.infer_kinds(params, {k: v for k, v in _params(32).items() if k != "merge"})


# ------------------------------------------------------------------ the SP readout rule
def _readout_updates(lo, theta, kind, g, p, steps=3):
  """The LO's updates of one readout kernel of the given kind over a few steps
  of the same gradient sequence (as_optax; a hidden matrix rides along)."""
  params = {"hidden": jnp.ones((8, 8)) * 0.1, "head": p}
  tx = lo.as_optax(theta, num_steps=10, mup={"hidden": "hidden", "head": kind})
  state = tx.init(params)
  out = []
  for i in range(steps):
    grads = {"hidden": jnp.full((8, 8), 0.01), "head": g * (1 + i)}
    u, state = jax.jit(tx.update)(grads, state, params)
    out.append(np.asarray(u["head"]))
  return out


@pytest.mark.parametrize("config", [
    dict(),
    dict(step=lopt.forms.robust(input=0.01, hidden=0.03, learned_scales=False).step),
])
def test_sp_output_step_is_the_mup_output_step_over_fan_in(config):
  """Exact invariant. A μP readout computes z = h·W/n (kind "output", step
  multiplier 1); a plain one z = h·W' (kind "sp_output", multiplier 1/n). Both
  are hidden-like (same base step), and the LO's raw step u is a function of
  the features only, so for the same features ΔW = -u·c and ΔW' = -u·c/n:
  h·ΔW' = h·ΔW/n, the same function-space step. With n a power of two the
  scaling is exact in floating point."""
  n = 64
  lo = lopt.MLPLOpt(mup=True, **config)
  theta = lo.init(jax.random.PRNGKey(0))
  p = jax.random.normal(jax.random.PRNGKey(1), (n, 3)) / n
  g = jax.random.normal(jax.random.PRNGKey(2), (n, 3)) * 0.1
  mup_steps = _readout_updates(lo, theta, "output", g, p)
  sp_steps = _readout_updates(lo, theta, "sp_output", g, p)
  for u_mup, u_sp in zip(mup_steps, sp_steps):
    assert np.abs(u_mup).max() > 0
    np.testing.assert_array_equal(u_sp * n, u_mup)


class PlainMLP(nn.Module):
  width: int
  mup_readout: bool = False

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Dense(self.width)(x))
    h = nn.relu(nn.Dense(self.width)(h))
    z = nn.Dense(3, use_bias=False, name="head")(h)
    return z / self.width if self.mup_readout else z


def test_plain_flax_readout_takes_the_mup_function_space_step():
  """End to end with the shipped μLO: a plain flax MLP (readout kind inferred
  as "sp_output") and its μP twin (readout W = n·W', output divided by n, kind
  "output") compute the same function and, after one LO step, move it by the
  same amount up to the LO's own feature epsilons (its features of n·g and
  p/n differ from those of g and p by the absolute 1e-5 in their
  normalization: measured 6% at n=64). Marking the plain readout "output"
  instead makes its step n times too large (measured: 585% off)."""
  n = 64
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (64, 8))
  y = jax.random.normal(jax.random.fold_in(key, 1), (64, 3))
  plain = PlainMLP(n).init(key, x)["params"]
  twin = {**plain, "head": {"kernel": plain["head"]["kernel"] * n}}
  base = PlainMLP(16).init(key, x)["params"]
  sp_kinds = lopt.mup.infer_kinds(plain, base)
  assert sp_kinds["head"]["kernel"] == "sp_output"
  mup_kinds = lopt.mup.infer_kinds(twin, base, readout="mup")
  assert mup_kinds["head"]["kernel"] == "output"

  lo, theta = lopt.load_pretrained("mulo-m")

  def function_step(model, params, kinds):
    tx = lo.as_optax(theta, num_steps=100, mup=kinds)
    g = jax.jit(jax.grad(lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)))(params)
    u, _ = jax.jit(tx.update)(g, tx.init(params), params)
    return (model.apply({"params": optax.apply_updates(params, u)}, x)
            - model.apply({"params": params}, x))

  np.testing.assert_allclose(PlainMLP(n).apply({"params": plain}, x),
                             PlainMLP(n, True).apply({"params": twin}, x), rtol=1e-5, atol=1e-6)
  ref = function_step(PlainMLP(n, True), twin, mup_kinds)
  rel = lambda d: float(jnp.linalg.norm(d - ref) / jnp.linalg.norm(ref))
  assert rel(function_step(PlainMLP(n), plain, sp_kinds)) < 0.15
  wrong = lopt.mup.infer_kinds(plain, base, readout="mup")  # a plain readout called μP
  assert rel(function_step(PlainMLP(n), plain, wrong)) > 2.0
