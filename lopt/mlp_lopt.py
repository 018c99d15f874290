"""μLO: the per-parameter Adafactor-MLP learned optimizer, as an Optax transformation.

For every parameter element the LO reads 28 normalized features of its gradient,
value and accumulators (``lopt.features``), plus 12 per-tensor time features,
and a small MLP outputs a direction ``d`` and a magnitude ``m``. The step is

    step = d * exp(exp_mult * m) * step_mult * mup_multiplier
    update = -step

``mup_multiplier`` is ``1/fan_in`` for hidden matrices when the LO runs in μP
mode, and 1 otherwise (SP mode never scales). Options beyond the reference
design (all off by default): ``raw_ratios``, ``adam_init``, ``absolute_time``
and ``lr_schedule`` (a cosine factor on the step); see their comments.

θ (the LO's weights) is an explicit argument and never lives in the optimizer
state, so meta-training can perturb or differentiate it freely:

    lo = MLPLOpt()
    theta = lo.init(jax.random.PRNGKey(0))
    tx = lo.as_optax(theta, num_steps=1000, mup=kinds)   # an optax transformation
    # or, functionally (what meta-training uses):
    state = lo.init_state(params)
    updates, state = lo.update(theta, grads, state, params, num_steps=1000, mup=kinds)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt import features as F
from lopt import kernels
from lopt import mup as mup_lib

_SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64)


class MLPLOptState(NamedTuple):
  count: jax.Array   # int32 scalar: number of updates applied so far
  acc: Any           # pytree like params, leaves are features.TensorAcc


def _check_param_dtypes(params: Any) -> None:
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = jnp.result_type(p)
    if not any(dtype == d for d in _SUPPORTED_DTYPES):
      raise TypeError(
          f"Parameter {jax.tree_util.keystr(path)} has dtype {dtype}; the learned "
          "optimizer supports floating-point params (float32, bfloat16, float16, "
          "float64). Mask non-float leaves out with optax.masked(...).")


def _check_num_steps(num_steps) -> None:
  # A jax array is allowed (meta-training draws a horizon per particle); only
  # concrete Python values can be checked here.
  if num_steps is None or isinstance(num_steps, jax.Array):
    return
  if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps <= 0:
    raise ValueError(f"num_steps must be a positive int (the planned length of training) "
                     f"or None if unknown, got {num_steps!r}.")


def step_multipliers(lo: Any, mup: Any, params: Any) -> Any:
  """Per-tensor μP step multipliers of an LO config ``lo`` (1 everywhere in SP
  mode); a μP-mode LO without a ``mup`` spec gets an error naming the fixes."""
  if not lo.mup:
    return jax.tree_util.tree_map(lambda _: 1.0, params)
  if mup is None:
    raise ValueError(
        f"This learned optimizer ({type(lo).__name__}) is in μP mode and needs to know "
        "which tensors are hidden matrices: pass mup=<spec> (see lopt.mup.kinds_from_paths "
        f"/ lopt.mup.infer_kinds), or use an SP-mode LO ({type(lo).__name__}(mup=False)).")
  return mup_lib.multipliers(mup, params)


def check_theta_tree(expected: Any, theta: Any, owner: Any) -> None:
  """Raise a ValueError naming the tensor if ``theta`` does not have ``expected``'s
  tree and shapes (``owner``, the LO config, is named in the message)."""
  exp_flat = {jax.tree_util.keystr(k): v for k, v in
              jax.tree_util.tree_flatten_with_path(expected)[0]}
  got_flat = {jax.tree_util.keystr(k): v for k, v in
              jax.tree_util.tree_flatten_with_path(theta)[0]}
  missing = sorted(set(exp_flat) - set(got_flat))
  extra = sorted(set(got_flat) - set(exp_flat))
  if missing or extra:
    raise ValueError(f"θ does not match {owner}: missing tensors {missing}, "
                     f"unexpected tensors {extra}.")
  for name, spec in exp_flat.items():
    if tuple(np.shape(got_flat[name])) != tuple(spec.shape):
      raise ValueError(f"θ tensor {name} has shape {tuple(np.shape(got_flat[name]))} but "
                       f"{owner} expects {tuple(spec.shape)}; this θ comes from a "
                       "different architecture.")


LR_SCHEDULES = ("constant", "cosine")


def schedule_factor(schedule: str, count: jax.Array, num_steps) -> jax.Array | None:
  """The external step schedule at update number ``count`` (1-based) of
  ``num_steps``; None where it is constant (nothing to scale)."""
  if schedule == "constant" or num_steps is None:
    return None
  frac = jnp.clip(jnp.asarray(count, jnp.float32) / num_steps, 0.0, 1.0)
  return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))


# The ratios the Adam-initialized LO starts from, and their weights in d.
# m/sqrt(v) (β 0.9 / 0.999) is Adam without bias correction: up to 6.5x too
# large a step in the first 100 steps. m over the Adafactor second moment of
# the same decay 0.9 has size sqrt(1 - 0.9^t) <= 1 (a 10-step warmup) but a
# noisier denominator. Measured on the held-out -cpu suites (untrained θ,
# step_mult 0.1), each alone wins different tasks (depth 12: 0.066 vs 1.16;
# 1000 steps: 0.0001 vs 0.011), so θ starts from their average.
ADAM_INIT_FEATURES = {"mom_rsqrt0": 0.5, "fac_mom0": 0.5}


def _embed_adam(layers: dict, hidden_layers: int) -> dict:
  """For each Adam feature x, two units per hidden layer compute relu(x) and
  relu(-x), isolated from the other (random) units, and the direction output
  reads their weighted difference: d = Σ w·x + (the random units' small output)."""
  n = 2 * len(ADAM_INIT_FEATURES)
  layers = {name: dict(layer) for name, layer in layers.items()}
  first, out = layers["layer_0"], layers["output"]
  first["w"] = first["w"].at[:, :n].set(0.0)
  first["w_time"] = first["w_time"].at[:, :n].set(0.0)
  first["b"] = first["b"].at[:n].set(0.0)
  out["w"] = out["w"].at[:n, :].set(0.0)
  for j, (name, weight) in enumerate(ADAM_INIT_FEATURES.items()):
    k, pos, neg = F.ELEMENT_FEATURES.index(name), 2 * j, 2 * j + 1
    first["w"] = first["w"].at[k, pos].set(1.0).at[k, neg].set(-1.0)
    out["w"] = out["w"].at[pos, 0].set(weight).at[neg, 0].set(-weight)
  for i in range(1, hidden_layers):
    layer = layers[f"layer_{i}"]
    w = layer["w"].at[:n, :].set(0.0).at[:, :n].set(0.0)
    layer["w"] = w.at[jnp.arange(n), jnp.arange(n)].set(1.0)
    layer["b"] = layer["b"].at[:n].set(0.0)
  return layers


def _scale_direction(theta_mlp: dict, factor: jax.Array) -> dict:
  """θ whose direction output is ``factor`` times the original: d is linear in
  the output layer, so this scales the step exactly, in the XLA path and the
  kernels alike, without another pass over the parameters."""
  out = theta_mlp["output"]
  scale = jnp.stack([factor, jnp.ones_like(factor)])
  return {**theta_mlp, "output": {"w": out["w"] * scale, "b": out["b"] * scale}}


@dataclasses.dataclass(frozen=True)
class MLPLOpt:
  """Config of the per-parameter MLP learned optimizer (hashable: usable as a jit static)."""
  hidden_size: int = 32
  hidden_layers: int = 2
  step_mult: float = 0.01
  exp_mult: float = 0.001
  mup: bool = True
  output_init_scale: float = 1e-2  # small initial steps, as the recipe asks
  # Keep the scale-free ratio features (m/sqrt(v) and the Adafactor-normalized
  # ones, ``features.RATIO_FEATURES``) un-normalized. Per-tensor normalization
  # gives every feature RMS 1, which hides the gradients' signal-to-noise: the
  # quantity that makes Adam's steps shrink late in training.
  raw_ratios: bool = False
  # Start θ as Adam: two hidden units per layer carry each of
  # ``ADAM_INIT_FEATURES`` to the direction output (d = Σ w·x + a small random
  # part), so the untrained LO steps like μAdam with learning rate
  # ``step_mult``. Needs raw_ratios. Meta-training then improves on Adam
  # instead of first having to discover descent from noise.
  adam_init: bool = False
  # Read the 11 absolute-time features tanh(t/τ - 1). False zeroes them, leaving
  # the fraction of training: an LO meta-trained on horizons <= H never sees the
  # values they take after step H, so at longer horizons they are off-distribution.
  absolute_time: bool = True
  # An external schedule on the step, as in Celo2: "cosine" multiplies it by
  # 0.5 (1 + cos(π t / num_steps)), so it anneals to 0 at any horizon, however
  # far past the meta-training horizons; "constant" (the reference) does not.
  # Without num_steps the schedule is constant.
  lr_schedule: str = "constant"
  # "auto": the fused Pallas kernels on GPU, XLA elsewhere; "xla": the reference;
  # "pallas": the kernels everywhere (interpret mode off GPU: slow, for tests).
  backend: str = "auto"

  def __post_init__(self):
    if self.hidden_size < 1 or self.hidden_layers < 1:
      raise ValueError(f"hidden_size and hidden_layers must be >= 1, got "
                       f"{self.hidden_size}, {self.hidden_layers}.")
    if self.backend not in kernels.BACKENDS:
      raise ValueError(f"backend must be one of {kernels.BACKENDS}, got {self.backend!r}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
    if self.adam_init and not (self.raw_ratios
                               and self.hidden_size >= 2 * len(ADAM_INIT_FEATURES)):
      raise ValueError(f"adam_init=True needs raw_ratios=True (a normalized m/sqrt(v) has "
                       f"RMS 1 and cannot give Adam's step) and hidden_size >= "
                       f"{2 * len(ADAM_INIT_FEATURES)}.")

  # ---------------------------------------------------------------- θ
  def init(self, key: jax.Array) -> dict:
    """Random θ: LeCun-normal hidden layers, a small output layer, default decays."""
    keys = jax.random.split(key, self.hidden_layers + 2)
    h = self.hidden_size

    def dense(k, fan_in, fan_out, scale=1.0):
      return scale * jax.random.normal(k, (fan_in, fan_out), jnp.float32) / np.sqrt(fan_in)

    layers = {"layer_0": {
        "w": dense(keys[0], F.NUM_FEATURES, h)[:F.NUM_ELEMENT_FEATURES],
        "w_time": dense(keys[1], F.NUM_FEATURES, h)[:F.NUM_TIME_FEATURES],
        "b": jnp.zeros((h,), jnp.float32)}}
    for i in range(1, self.hidden_layers):
      layers[f"layer_{i}"] = {"w": dense(keys[i + 1], h, h), "b": jnp.zeros((h,), jnp.float32)}
    layers["output"] = {"w": dense(keys[-1], h, 2, self.output_init_scale),
                        "b": jnp.zeros((2,), jnp.float32)}
    if self.adam_init:
      layers = _embed_adam(layers, self.hidden_layers)
    decays = {"mom": jnp.zeros((3,), jnp.float32), "rms": jnp.zeros((), jnp.float32),
              "fac": jnp.zeros((3,), jnp.float32)}
    return {"mlp": layers, "decay_logits": decays}

  def check_theta(self, theta: Any) -> None:
    """Raise a clear error if θ was made for a different architecture."""
    check_theta_tree(jax.eval_shape(self.init, jax.random.PRNGKey(0)), theta, self)

  # ---------------------------------------------------------------- state
  def init_state(self, params: Any) -> MLPLOptState:
    _check_param_dtypes(params)
    acc = jax.tree_util.tree_map(lambda p: F.init_acc(tuple(np.shape(p))), params)
    return MLPLOptState(count=jnp.zeros((), jnp.int32), acc=acc)

  # ---------------------------------------------------------------- update
  def _mlp(self, theta: dict, feats: jax.Array, tfeats: jax.Array) -> jax.Array:
    """Per-element MLP. Time features are the same for every element of a
    tensor, so their first-layer contribution is folded into the bias."""
    layers = theta["mlp"]
    first = layers["layer_0"]
    h = feats @ first["w"] + (tfeats @ first["w_time"] + first["b"])
    h = jax.nn.relu(h)
    for i in range(1, self.hidden_layers):
      h = jax.nn.relu(h @ layers[f"layer_{i}"]["w"] + layers[f"layer_{i}"]["b"])
    return h @ layers["output"]["w"] + layers["output"]["b"]

  def tensor_step(self, theta: dict, feats: jax.Array, tfeats: jax.Array) -> jax.Array:
    """Unscaled step of one tensor from its ``[*shape, 28]`` features."""
    out = self._mlp(theta, feats, tfeats)
    direction, magnitude = out[..., 0], out[..., 1]
    return direction * jnp.exp(self.exp_mult * magnitude) * self.step_mult

  def update(self, theta: dict, grads: Any, state: MLPLOptState, params: Any, *,
             num_steps: int | None = None, mup: Any = None,
             loss: Any = None) -> tuple[Any, MLPLOptState]:
    """Functional update: returns (updates, new_state); updates are added to params.
    ``loss`` is accepted so every LO shares one signature; this one does not read it."""
    del loss
    if params is None:
      raise ValueError("The learned optimizer reads parameter values: call "
                       "update(grads, state, params) with params.")
    _check_num_steps(num_steps)
    mults = self._multipliers(mup, params)
    decays = F.decays_from_logits(F.Decays(**theta["decay_logits"]))
    count = state.count + 1
    tfeats = F.time_features(count, num_steps)
    if not self.absolute_time:
      tfeats = tfeats.at[:-1].set(0.0)  # keep only the fraction of training

    use_kernels = kernels.use_pallas(self.backend)
    theta_mlp = theta["mlp"]
    factor = schedule_factor(self.lr_schedule, count, num_steps)
    if factor is not None:
      theta_mlp = _scale_direction(theta_mlp, factor)

    def one(g, p, acc, mult):
      args = (theta_mlp, tfeats, decays, g, p, acc)
      reference = functools.partial(self._xla_tensor_update, mult)
      if use_kernels and kernels.supports(p):
        return kernels.tensor_update(self, mult, *args, reference=reference,
                                     interpret=kernels.interpret_mode())
      return reference(*args)

    is_acc = lambda x: isinstance(x, F.TensorAcc)
    flat_g, treedef = jax.tree_util.tree_flatten(grads)
    flat_p = treedef.flatten_up_to(params)
    flat_acc = jax.tree_util.tree_leaves(state.acc, is_leaf=is_acc)
    flat_m = treedef.flatten_up_to(mults)
    outs = [one(*args) for args in zip(flat_g, flat_p, flat_acc, flat_m)]
    updates = jax.tree_util.tree_unflatten(treedef, [u for u, _ in outs])
    new_acc = jax.tree_util.tree_unflatten(treedef, [a for _, a in outs])
    return updates, MLPLOptState(count=count, acc=new_acc)

  def _xla_tensor_update(self, mult: float, theta_mlp: dict, tfeats: jax.Array,
                         decays: F.Decays, g: jax.Array, p: jax.Array,
                         acc: F.TensorAcc) -> tuple[jax.Array, F.TensorAcc]:
    """The reference update of one tensor: (update, new accumulators)."""
    g32 = jnp.asarray(g, jnp.float32)
    acc = F.update_accumulators(acc, g32, decays)
    feats = F.tensor_features(g32, jnp.asarray(p, jnp.float32), acc, self.raw_ratios)
    step = self.tensor_step({"mlp": theta_mlp}, feats, tfeats) * mult
    return (-step).astype(jnp.result_type(p)), acc

  def _multipliers(self, mup: Any, params: Any) -> Any:
    return step_multipliers(self, mup, params)

  # ---------------------------------------------------------------- optax
  def as_optax(self, theta: dict, num_steps: int | None = None,
               mup: Any = None) -> optax.GradientTransformationExtraArgs:
    """The LO at fixed θ as an optax transformation.

    ``update(grads, state, params, loss=None)``: ``loss`` is accepted (and
    ignored by this LO) so training loops can pass it to any learned optimizer.
    """
    self.check_theta(theta)
    _check_num_steps(num_steps)

    def init_fn(params):
      self._multipliers(mup, params)  # fail early on a bad μP spec
      return self.init_state(params)

    def update_fn(updates, state, params=None, **extra_args):
      del extra_args  # e.g. loss=: not used by this architecture
      return self.update(theta, updates, state, params, num_steps=num_steps, mup=mup)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
