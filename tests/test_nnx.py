"""flax NNX and linen TrainState: the learned optimizers, the pretrained ones and
the baselines inside ``nnx.Optimizer`` and ``TrainState``, with μP kinds from
``lopt.mup.infer_kinds`` on the modules themselves."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

nnx = pytest.importorskip("flax.nnx")

import lopt  # noqa: E402

STEPS = 60


class MLP(nnx.Module):
  def __init__(self, width: int, rngs: nnx.Rngs, d_in: int = 8, d_out: int = 1):
    self.l1 = nnx.Linear(d_in, width, rngs=rngs)
    self.l2 = nnx.Linear(width, width, rngs=rngs)
    self.out = nnx.Linear(width, d_out, rngs=rngs)

  def __call__(self, x):
    return self.out(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


class Transformer(nnx.Module):
  """One pre-LN block: token + position embeddings, self-attention, an MLP, a readout."""

  def __init__(self, width: int, rngs: nnx.Rngs, vocab: int = 8, length: int = 8,
               heads: int = 2):
    self.embed = nnx.Embed(vocab, width, rngs=rngs)
    self.pos = nnx.Param(jax.random.normal(rngs.params(), (length, width)) * 0.02)
    self.ln1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=width, decode=False,
                                       rngs=rngs)
    self.ln2 = nnx.LayerNorm(width, rngs=rngs)
    self.up = nnx.Linear(width, 2 * width, rngs=rngs)
    self.down = nnx.Linear(2 * width, width, rngs=rngs)
    self.head = nnx.Linear(width, vocab, rngs=rngs)

  def __call__(self, tokens):
    h = self.embed(tokens) + self.pos[...]
    h = h + self.attn(self.ln1(h))
    h = h + self.down(jax.nn.relu(self.up(self.ln2(h))))
    return self.head(h)


def _regression():
  key = jax.random.PRNGKey(0)
  x = jax.random.normal(key, (128, 8))
  y = jnp.sin(x @ jnp.linspace(-1, 1, 8))[:, None]
  return x, y


def _train_nnx(model, tx, loss_fn, steps=STEPS):
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads, loss=loss)  # loss= reaches tx.update
    return loss

  first = float(loss_fn(model))
  for _ in range(steps):
    step(model, opt)
  return first, float(loss_fn(model)), opt


# ------------------------------------------------------------------ the μP spec
def test_one_spec_for_wrapped_and_raw_params():
  model, base = MLP(64, nnx.Rngs(0)), MLP(16, nnx.Rngs(1))
  from_modules = lopt.mup.infer_kinds(model, base)
  state, base_state = nnx.state(model, nnx.Param), nnx.state(base, nnx.Param)
  from_states = lopt.mup.infer_kinds(state, base_state)
  from_pure = lopt.mup.infer_kinds(nnx.to_pure_dict(state), nnx.to_pure_dict(base_state))
  want = {"l1": {"kernel": "input", "bias": "vector"},
          "l2": {"kernel": "hidden", "bias": "vector"},
          "out": {"kernel": "sp_output", "bias": "vector"}}
  assert isinstance(from_pure, dict) and from_pure == want
  assert nnx.to_pure_dict(from_modules) == want and nnx.to_pure_dict(from_states) == want
  # Every form of the params, with every form of the spec: the same multipliers.
  expected = {"l1": {"kernel": 1.0, "bias": 1.0}, "l2": {"kernel": 1 / 64, "bias": 1.0},
              "out": {"kernel": 1 / 64, "bias": 1.0}}
  for spec in (from_modules, from_pure):
    for params in (state, nnx.as_pure(state), nnx.to_pure_dict(state), model):
      mults = lopt.mup.multipliers(spec, params)
      got = mults if isinstance(mults, dict) else nnx.to_pure_dict(mults)
      assert got == expected
      groups = lopt.mup.step_groups(spec, params)
      groups = groups if isinstance(groups, dict) else nnx.to_pure_dict(groups)
      assert groups["l2"]["kernel"] == 1 and groups["l1"]["kernel"] == 0
  by_path = lopt.mup.kinds_from_paths(model, {r"l1'\]\['kernel": "input",
                                              r"l2'\]\['kernel": "hidden",
                                              r"out'\]\['kernel": "sp_output"})
  assert nnx.to_pure_dict(by_path) == want
  # A spec for another model still fails, naming the tensors.
  with pytest.raises(ValueError, match=r"params without a μP spec entry: \['l2'\]"):
    lopt.mup.multipliers({"l1": want["l1"], "out": want["out"]}, state)


def test_infer_kinds_reads_linear_general_in_features():
  """An NNX LinearGeneral (32 -> (heads, head_dim)) not named query/key/value:
  its fan-in is in_features (32), which the module knows and the shape does not."""

  class Proj(nnx.Module):
    def __init__(self, width, rngs):
      self.inp = nnx.Linear(4, width, rngs=rngs)
      self.proj = nnx.LinearGeneral(width, (4, width // 4), rngs=rngs)
      self.merge = nnx.LinearGeneral((4, width // 4), width, axis=(-2, -1), rngs=rngs)

  kinds = lopt.mup.infer_kinds(Proj(64, nnx.Rngs(0)), Proj(32, nnx.Rngs(0)))
  assert kinds["proj"]["kernel"] == lopt.mup.Kind("hidden", 64)
  assert kinds["merge"]["kernel"] == "hidden"  # (4, 16, 64): fan_in 64 = prod(shape[:-1])
  mults = lopt.mup.multipliers(kinds, Proj(64, nnx.Rngs(0)))
  assert mults["proj"]["kernel"] == 1 / 64 and mults["merge"]["kernel"] == 1 / 64


def test_attention_kinds_from_modules():
  kinds = lopt.mup.infer_kinds(Transformer(32, nnx.Rngs(0)), Transformer(16, nnx.Rngs(0)))
  a = kinds["attn"]
  for name in ("query", "key", "value"):
    scale = 16 ** -0.5 if name != "value" else 1.0              # q, k: 1/sqrt(head_dim)
    assert a[name]["kernel"] == lopt.mup.Kind("hidden", 32, scale), name  # (32, 2, 16): fan_in 32
    assert a[name]["bias"] == "vector"                               # (2, 16)
  assert a["out"]["kernel"] == "hidden"
  assert kinds["embed"]["embedding"] == "embedding" and kinds["pos"] == "embedding"  # lookups
  assert kinds["head"]["kernel"] == "sp_output" and kinds["ln1"]["scale"] == "vector"


# ------------------------------------------------------------------ training
def test_nnx_mlp_trains_with_pretrained_mulo_m():
  x, y = _regression()
  model, base = MLP(64, nnx.Rngs(0)), MLP(16, nnx.Rngs(0))
  # The reproduction: kinds from States of nnx.Param, which nnx.Optimizer
  # then hands over wrapped (init) and as raw arrays (update).
  kinds = lopt.mup.infer_kinds(nnx.state(model, nnx.Param), nnx.state(base, nnx.Param))
  tx = lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds)
  first, last, opt = _train_nnx(model, tx, lambda m: jnp.mean((m(x) - y) ** 2))
  # Measured: 0.93 -> 0.22 (AdamW 1e-3: 0.17; mulo-r, the pre-2026-12-04 mulo-m: 0.034).
  assert last < 0.3 * first, (first, last)
  # The optimizer state counted every update; past num_steps the check raises.
  assert lopt.check_num_steps(opt, STEPS + 1) == STEPS
  with pytest.raises(RuntimeError, match=r"applied 60 updates.*num_steps=60.*exactly 0"):
    lopt.check_num_steps(opt, STEPS)


def test_nnx_transformer_trains_with_pretrained_mulo_m():
  """Copy task: every position predicts the sequence's first token, which only
  attention can see. Cross-entropy starts at about log(8) = 2.08."""
  tokens = jax.random.randint(jax.random.PRNGKey(3), (64, 8), 0, 8)
  target = jnp.broadcast_to(tokens[:, :1], tokens.shape)
  model, base = Transformer(32, nnx.Rngs(0)), Transformer(16, nnx.Rngs(0))
  kinds = lopt.mup.infer_kinds(model, base)

  def loss_fn(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(tokens), target).mean()

  tx = lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds)
  first, last, _ = _train_nnx(model, tx, loss_fn)
  assert last < 0.1 * first, (first, last)  # measured: 2.46 -> 0.0002


def test_tx_update_with_wrapped_params_returns_the_gradients_structure():
  """Called directly with States of nnx.Param (as older flax passes them), the
  LO sees arrays and returns updates wrapped like the gradients."""
  x, y = _regression()
  model, base = MLP(16, nnx.Rngs(0)), MLP(8, nnx.Rngs(0))
  tx = lopt.pretrained_optax("mulo-m", num_steps=10, mup=lopt.mup.infer_kinds(model, base))
  params = nnx.state(model, nnx.Param)
  grads = nnx.grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
  update = jax.jit(tx.update)
  u_wrapped, s1 = update(grads, tx.init(params), params)
  u_raw, s2 = update(nnx.as_pure(grads), tx.init(nnx.as_pure(params)), nnx.as_pure(params))
  assert jax.tree_util.tree_structure(u_wrapped) == jax.tree_util.tree_structure(grads)
  for a, b in zip(jax.tree_util.tree_leaves(u_wrapped), jax.tree_util.tree_leaves(u_raw)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree_util.tree_structure(s1) == jax.tree_util.tree_structure(s2)


def test_velo_and_baselines_in_nnx_optimizer():
  x, y = _regression()
  loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)
  kinds = lopt.mup.infer_kinds(MLP(32, nnx.Rngs(0)), MLP(8, nnx.Rngs(0)))
  txs = {
      "adamw": lopt.baselines.get("adamw", learning_rate=1e-2),
      "muadam": lopt.baselines.get("muadam", learning_rate=1e-2, mup=kinds),
  }
  for name, tx in txs.items():
    first, last, _ = _train_nnx(MLP(32, nnx.Rngs(0)), tx, loss_fn, steps=30)
    assert last < 0.5 * first, (name, first, last)
  # VeLO-style LO (untrained θ): it needs loss=, which nnx.Optimizer forwards.
  velo = lopt.VeLOpt(mup=True, lstm_hidden=8, num_mlps=2)
  tx = velo.as_optax(velo.init(jax.random.PRNGKey(0)), num_steps=10, mup=kinds)
  model = MLP(32, nnx.Rngs(0))
  before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  first, last, opt = _train_nnx(model, tx, loss_fn, steps=3)
  after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  moved = [float(jnp.abs(a - b).max()) for a, b in
           zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(before))]
  assert all(np.isfinite(moved)) and max(moved) > 0 and np.isfinite(last)
  assert lopt.check_num_steps(opt, 10) == 3
  # Without loss= the VeLO-style LO says what to pass.
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  grads = nnx.grad(loss_fn)(model)
  with pytest.raises(ValueError, match="loss="):
    opt.update(model, grads)


# ------------------------------------------------------------------ linen TrainState
def test_linen_train_state_with_pretrained_mulo_m():
  import flax.linen as nn
  from flax.training import train_state

  class LinenMLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
      x = nn.relu(nn.Dense(self.width)(x))
      x = nn.relu(nn.Dense(self.width)(x))
      return nn.Dense(1)(x)

  x, y = _regression()
  variables = LinenMLP(64).init(jax.random.PRNGKey(0), x)
  # kinds of the whole variables dict ({"params": ...}) match the inner params too.
  kinds = lopt.mup.infer_kinds(variables, LinenMLP(16).init(jax.random.PRNGKey(0), x))
  assert kinds["params"]["Dense_2"]["kernel"] == "sp_output"
  state = train_state.TrainState.create(
      apply_fn=LinenMLP(64).apply, params=variables["params"],
      tx=lopt.pretrained_optax("mulo-m", num_steps=STEPS, mup=kinds))

  def loss_fn(params):
    return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2)

  @jax.jit
  def step(state):
    return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

  first = float(loss_fn(state.params))
  for _ in range(STEPS):
    state = step(state)
  last = float(loss_fn(state.params))
  # measured: 0.61 -> 0.067 (0.040 before mulo-m's hidden steps were restrained
  # as the gradient shrinks, GradientRestraint: slower on train loss by design)
  assert last < 0.15 * first, (first, last)
  assert lopt.check_num_steps(state, STEPS + 1) == STEPS
