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

The robust form (``output_norm``, as in Celo2) bounds the step by construction:

    u = d * exp(exp_mult * m)                     (per element)
    step = u / rms(u) * base[group] * mup_multiplier * schedule
    update = -step - weight_decay * base[group] * mup_multiplier * schedule * p

``rms`` is over the tensor, so each tensor's step has RMS exactly
``base * mult * schedule`` whatever the MLP outputs: the learned part shapes
only the direction. ``base`` is ``step_mult`` for input and vector tensors and
``hidden_step_mult`` for hidden-like ones (``lopt.mup.step_groups``), each
times ``exp(θ)`` with ``learned_scales``. Decoupled weight decay applies to
matrices only. Non-finite gradient elements are zeroed (and counted in the
state) in every form, so one NaN cannot spread through the tensor statistics.

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
  # int32 scalar: gradient elements that were non-finite and zeroed, over all
  # updates (see ``sanitize_grad``).
  nonfinite: jax.Array = jnp.zeros((), jnp.int32)


def sanitize_grad(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``g`` in float32 with non-finite elements set to 0, and how many there were.

  The LO's features are normalized by per-tensor means, so one NaN would
  otherwise turn every element of the tensor (and its accumulators) NaN."""
  g32 = jnp.asarray(g, jnp.float32)
  ok = jnp.isfinite(g32)
  return jnp.where(ok, g32, 0.0), jnp.sum(~ok, dtype=jnp.int32)


def rms_normalize(u: jax.Array) -> jax.Array:
  """``u / rms(u)`` over the whole tensor; 0 where ``u`` is all 0."""
  ms = jnp.mean(jnp.square(u))
  return jnp.where(ms > 0, u * jax.lax.rsqrt(jnp.where(ms > 0, ms, 1.0)), 0.0)


def _check_param_dtypes(params: Any) -> None:
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = jnp.result_type(p)
    if not any(dtype == d for d in _SUPPORTED_DTYPES):
      raise TypeError(
          f"Parameter {jax.tree_util.keystr(path)} has dtype {dtype}; the learned "
          "optimizer supports floating-point params (float32, bfloat16, float16, "
          "float64). Mask non-float leaves out with optax.masked(...).")


def _check_num_steps(num_steps, required_by: str | None = None) -> None:
  """Validate ``num_steps``. ``required_by``: why this LO cannot run without it
  (None: it may be left out, and the fraction-of-training feature reads 0)."""
  # A jax array is allowed (meta-training draws a horizon per particle); only
  # concrete Python values can be checked here.
  if num_steps is None:
    if required_by is not None:
      raise ValueError(
          f"num_steps is required: {required_by}. Pass num_steps=<your planned number of "
          "training steps (optimizer updates)>, e.g. lo.as_optax(theta, num_steps=10_000, "
          "mup=kinds) or lopt.pretrained_optax(name, num_steps=10_000, mup=kinds).")
    return
  if isinstance(num_steps, jax.Array):
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
  # Celo2's robust step (see the module docstring): each tensor's step is
  # normalized to RMS 1 before the base step, μP multiplier and schedule scale
  # it, so no θ can make the step run away on an unseen model.
  output_norm: bool = False
  # Base step of hidden-like tensors (hidden, μP/SP readouts; before their
  # 1/fan_in). None: step_mult, the reference μLO rule. The absolute 1/fan_in
  # makes a hidden matrix of a width-64 model step 64x less than an input layer
  # at the same base, so the two groups want different bases.
  hidden_step_mult: float | None = None
  # Decoupled weight decay on matrices: -weight_decay * (that tensor's step
  # size) * p, as AdamW does with its learning rate.
  weight_decay: float = 0.0
  # θ carries log-scales of the two base steps and of the weight decay (init 0),
  # so meta-training tunes them.
  learned_scales: bool = False
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
    for name in ("step_mult", "hidden_step_mult"):
      value = getattr(self, name)
      if value is not None and not (isinstance(value, (int, float)) and 0 < value < float("inf")):
        raise ValueError(f"{name} must be a positive finite float, got {value!r}.")
    if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < float("inf")):
      raise ValueError(f"weight_decay must be a finite float >= 0, got {self.weight_decay!r}.")
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
    theta = {"mlp": layers, "decay_logits": decays}
    if self.learned_scales:
      theta["scales"] = {"log_lr": jnp.zeros((2,), jnp.float32),
                         "log_wd": jnp.zeros((), jnp.float32)}
    return theta

  def check_theta(self, theta: Any) -> None:
    """Raise a clear error if θ was made for a different architecture."""
    check_theta_tree(jax.eval_shape(self.init, jax.random.PRNGKey(0)), theta, self)

  # ---------------------------------------------------------------- state
  def init_state(self, params: Any) -> MLPLOptState:
    _check_param_dtypes(params)
    acc = jax.tree_util.tree_map(lambda p: F.init_acc(tuple(np.shape(p))), params)
    return MLPLOptState(count=jnp.zeros((), jnp.int32), acc=acc,
                        nonfinite=jnp.zeros((), jnp.int32))

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
    groups = self._groups(mup, params)
    decays = F.decays_from_logits(F.Decays(**theta["decay_logits"]))
    count = state.count + 1
    tfeats = F.time_features(count, num_steps)
    if not self.absolute_time:
      tfeats = tfeats.at[:-1].set(0.0)  # keep only the fraction of training

    use_kernels = kernels.use_pallas(self.backend)
    theta_mlp = theta["mlp"]
    factor = schedule_factor(self.lr_schedule, count, num_steps)
    if factor is not None and not self.output_norm:
      theta_mlp = _scale_direction(theta_mlp, factor)  # the normalized form applies it after
    scales = self._scales(theta)

    def one(g, p, acc, mult, group):
      g, bad = sanitize_grad(g)
      args = (theta_mlp, tfeats, decays, g, p, acc)
      reference = functools.partial(self._xla_tensor_update, mult)
      if use_kernels and kernels.supports(p):
        u, acc = kernels.tensor_update(self, mult, *args, reference=reference,
                                       interpret=kernels.interpret_mode())
      else:
        u, acc = reference(*args)
      return self._finish(u, g, p, mult, group, factor, scales), acc, bad

    is_acc = lambda x: isinstance(x, F.TensorAcc)
    flat_g, treedef = jax.tree_util.tree_flatten(grads)
    flat_p = treedef.flatten_up_to(params)
    flat_acc = jax.tree_util.tree_leaves(state.acc, is_leaf=is_acc)
    flat_m = treedef.flatten_up_to(mults)
    flat_grp = treedef.flatten_up_to(groups)
    outs = [one(*args) for args in zip(flat_g, flat_p, flat_acc, flat_m, flat_grp)]
    updates = jax.tree_util.tree_unflatten(treedef, [u for u, _, _ in outs])
    new_acc = jax.tree_util.tree_unflatten(treedef, [a for _, a, _ in outs])
    nonfinite = state.nonfinite + sum((b for _, _, b in outs), jnp.zeros((), jnp.int32))
    return updates, MLPLOptState(count=count, acc=new_acc, nonfinite=nonfinite)

  def _scales(self, theta: dict) -> tuple[jax.Array | float, jax.Array | float, jax.Array | float]:
    """(input-group base, hidden-group base, weight decay), θ's learned scales applied."""
    base = (self.step_mult, self.step_mult if self.hidden_step_mult is None
            else self.hidden_step_mult)
    if not self.learned_scales:
      return base[0], base[1], self.weight_decay
    sc = theta["scales"]
    return (base[0] * jnp.exp(sc["log_lr"][0]), base[1] * jnp.exp(sc["log_lr"][1]),
            self.weight_decay * jnp.exp(sc["log_wd"]))

  def _finish(self, u, g, p, mult, group, factor, scales):
    """From the raw update ``u`` (-d·exp(m)·step_mult·mult, schedule folded in
    unless ``output_norm``) to the final one: the robust form's normalization,
    the group's base step and the decoupled weight decay."""
    base, wd = scales[group], scales[2]
    lr = base * mult * (1.0 if factor is None else factor)  # this tensor's step size
    if self.output_norm:
      u = rms_normalize(u.astype(jnp.float32)) * lr
      u = jnp.where(jnp.any(g != 0), u, 0.0)  # no gradient, no step (only decay)
    elif self.learned_scales or (group == 1 and self.hidden_step_mult is not None):
      u = u.astype(jnp.float32) * (base / self.step_mult)  # u already has step_mult
    if self.weight_decay and jnp.ndim(p) >= 2:
      u = u - (wd * lr) * jnp.asarray(p, jnp.float32)
    return u.astype(jnp.result_type(p))

  def _xla_tensor_update(self, mult: float, theta_mlp: dict, tfeats: jax.Array,
                         decays: F.Decays, g: jax.Array, p: jax.Array,
                         acc: F.TensorAcc) -> tuple[jax.Array, F.TensorAcc]:
    """The reference update of one tensor: (update, new accumulators)."""
    g32 = jnp.asarray(g, jnp.float32)  # already sanitized by update()
    acc = F.update_accumulators(acc, g32, decays)
    feats = F.tensor_features(g32, jnp.asarray(p, jnp.float32), acc, self.raw_ratios)
    step = self.tensor_step({"mlp": theta_mlp}, feats, tfeats) * mult
    return (-step).astype(jnp.result_type(p)), acc

  def _multipliers(self, mup: Any, params: Any) -> Any:
    return step_multipliers(self, mup, params)

  def _groups(self, mup: Any, params: Any) -> Any:
    """Which base step each tensor uses: 0 (input, vector) or 1 (hidden-like).
    SP mode has no kinds, so every tensor uses step_mult, as in the reference."""
    if not self.mup or mup is None:
      return jax.tree_util.tree_map(lambda _: 0, params)
    return mup_lib.step_groups(mup, params)

  # ---------------------------------------------------------------- optax
  def as_optax(self, theta: dict, num_steps: int | None = None,
               mup: Any = None) -> optax.GradientTransformationExtraArgs:
    """The LO at fixed θ as an optax transformation.

    ``update(grads, state, params, loss=None)``: ``loss`` is accepted (and
    ignored by this LO) so training loops can pass it to any learned optimizer.

    ``num_steps`` is the planned number of updates. It is required (a
    ValueError here otherwise) when ``lr_schedule="cosine"`` (the shipped LOs)
    or ``absolute_time=False`` (the fraction of training is then the LO's only
    sense of time). Past ``num_steps`` the schedule holds its final value: with
    ``"cosine"`` that is 0, so update ``num_steps`` and every later one is
    exactly 0 and training stops; ``lopt.check_num_steps(opt_state, num_steps)``
    raises once that point is reached (call it outside jit).

    flax NNX: params and gradients may be ``nnx.State``s of ``nnx.Param``
    variables or of raw arrays (``nnx.Optimizer`` passes both); the LO works on
    the arrays and returns updates in the structure of the gradients.
    """
    self.check_theta(theta)
    needs = []
    if self.lr_schedule == "cosine":
      needs.append("its step follows a cosine schedule over num_steps (lr_schedule="
                   "'cosine'); without it the schedule would silently be constant")
    if not self.absolute_time:
      needs.append("it reads the fraction of training t/num_steps as its only time feature "
                   "(absolute_time=False)")
    _check_num_steps(num_steps, required_by=(
        f"this learned optimizer ({type(self).__name__}) " + " and ".join(needs)
        if needs else None))

    def init_fn(params):
      params = mup_lib.unwrap(params)
      self._multipliers(mup, params)  # fail early on a bad μP spec
      return self.init_state(params)

    def update_fn(updates, state, params=None, **extra_args):
      del extra_args  # e.g. loss=: not used by this architecture
      new, state = self.update(theta, mup_lib.unwrap(updates), mup_lib.unwrap(state),
                               mup_lib.unwrap(params), num_steps=num_steps, mup=mup)
      return mup_lib.rewrap(updates, new), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
