"""μLO: the per-parameter Adafactor-MLP learned optimizer, as an Optax transformation.

For every parameter element the LO reads 28 normalized features of its gradient,
value and accumulators (``lopt.features``), plus 12 per-tensor time features,
and a small MLP outputs a direction ``d`` and a magnitude ``m``. The step is

    step = d * exp(exp_mult * m) * step_mult * mup_multiplier
    update = -step

``mup_multiplier`` is ``1/fan_in`` for hidden matrices when the LO runs in μP
mode, and 1 otherwise (SP mode never scales). ``step`` (a tuple of
``lopt.step_rules``) then turns this raw step into the update; the empty tuple
(the default) is the reference above. ``lopt.forms.robust`` is the shipped form
(as in Celo2), which bounds the step by construction:

    step = rms_normalize(u) * base[group] * exp(θ_group) * mup_multiplier * cosine
    update = step - weight_decay * exp(θ_wd) * (step size) * p     (matrices only)

``features`` (``Features``) chooses the network's inputs and θ's start (Adam).
Non-finite gradient elements are zeroed (and counted in the state) in every
form, so one NaN cannot spread through the tensor statistics.

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
from lopt import step_rules
from lopt.common import (check_num_steps, check_param_dtypes, check_record_fields, check_theta_tree,
                         config_record, map_tensors, optax_from_lo, per_element_mlp, sanitize_grad,
                         stacked_mlp)

# Widest per-element MLP written unit by unit (see MLPLOpt.tensor_step).
UNIT_BY_UNIT_MAX_WIDTH = 8


class MLPLOptState(NamedTuple):
  count: jax.Array   # int32 scalar: number of updates applied so far
  acc: Any           # pytree like params, leaves are features.TensorAcc
  # int32 scalar: gradient elements that were non-finite and zeroed, over all
  # updates (see ``lopt.common.sanitize_grad``).
  nonfinite: jax.Array = jnp.zeros((), jnp.int32)


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


@dataclasses.dataclass(frozen=True)
class Features:
  """What the network reads, and where θ starts (apart from the step rules)."""
  # The scale-free ratio features (m/sqrt(v) and the Adafactor-normalized ones,
  # ``features.RATIO_FEATURES``) stay un-normalized, and θ starts as Adam: two
  # hidden units per layer carry each of ``ADAM_INIT_FEATURES`` to the direction
  # output (d = Σ w·x + a small random part), so the untrained LO steps like μAdam
  # with learning rate ``step_mult``. Per-tensor normalization would give every
  # feature RMS 1 and hide the gradients' signal-to-noise, the quantity that makes
  # Adam's steps shrink late in training.
  adam: bool = False
  # Read the 11 absolute-time features tanh(t/τ - 1). False zeroes them, leaving
  # the fraction of training: an LO meta-trained on horizons <= H never sees the
  # values they take after step H, so at longer horizons they are off-distribution.
  absolute_time: bool = True


@dataclasses.dataclass(frozen=True)
class MLPLOpt:
  """Config of the per-parameter MLP learned optimizer (hashable: usable as a jit static).

  ``step_mult`` scales the network's raw step ``d·exp(exp_mult·m)``; ``step``
  (``lopt.step_rules``) turns that raw step into the update: the empty tuple is
  the reference μLO, ``lopt.forms.robust`` the shipped form."""
  hidden_size: int = 32
  hidden_layers: int = 2
  step_mult: float = 0.01
  exp_mult: float = 0.001
  mup: bool = True
  output_init_scale: float = 1e-2  # small initial steps, as the recipe asks
  features: Features = Features()
  # The step rules, in order (``lopt.step_rules``); on the command line their
  # repr, e.g. "RMSNormalize(), GroupBase(input=0.002, hidden=0.2)".
  step: tuple = dataclasses.field(default=(), metadata={"custom_args": dict(
      type=step_rules.parse, nargs=None, metavar="RULES")})
  # "auto": the fused Pallas kernels on GPU, XLA elsewhere; "xla": the reference;
  # "pallas": the kernels everywhere (interpret mode off GPU: slow, for tests).
  backend: str = "auto"

  def __post_init__(self):
    if self.hidden_size < 1 or self.hidden_layers < 1:
      raise ValueError(f"hidden_size and hidden_layers must be >= 1, got "
                       f"{self.hidden_size}, {self.hidden_layers}.")
    if self.backend not in kernels.BACKENDS:
      raise ValueError(f"backend must be one of {kernels.BACKENDS}, got {self.backend!r}.")
    if not (isinstance(self.step_mult, (int, float)) and 0 < self.step_mult < float("inf")):
      raise ValueError(f"step_mult must be a positive finite float, got {self.step_mult!r}.")
    if not isinstance(self.features, Features):
      raise ValueError(f"features must be an lopt.mlp_lopt.Features, got {self.features!r}.")
    if self.features.adam and self.hidden_size < 2 * len(ADAM_INIT_FEATURES):
      raise ValueError(f"features.adam needs hidden_size >= {2 * len(ADAM_INIT_FEATURES)}.")
    step_rules.check(self.step)

  # ---------------------------------------------------------------- record
  def to_record(self) -> dict[str, Any]:
    """The JSON config record (metadata.json ``config``, ``MetaTrainConfig.lo``)."""
    return config_record(self)

  @classmethod
  def from_record(cls, record: dict[str, Any]) -> "MLPLOpt":
    """Inverse of ``to_record``; an old flat record (PR before issue 20) is converted."""
    from lopt import forms
    check_record_fields(cls, record, forms.LEGACY_FIELDS)
    if forms.is_legacy(record):
      forms.warn_legacy(record)
      return forms.from_flat(record)
    record = dict(record)
    record["features"] = Features(**record.get("features", {}))
    record["step"] = step_rules.from_record(record.get("step", []))
    return cls(**record)

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
    if self.features.adam:
      layers = _embed_adam(layers, self.hidden_layers)
    decays = {"mom": jnp.zeros((3,), jnp.float32), "rms": jnp.zeros((), jnp.float32),
              "fac": jnp.zeros((3,), jnp.float32)}
    theta = {"mlp": layers, "decay_logits": decays}
    for i, rule in enumerate(self.step):
      if rule.theta_key:
        theta[rule.theta_key] = rule.init(jax.random.fold_in(key, i + 1))
    return theta

  def check_theta(self, theta: Any) -> None:
    """Raise a clear error if θ was made for a different architecture."""
    check_theta_tree(jax.eval_shape(self.init, jax.random.PRNGKey(0)), theta, self)

  # ---------------------------------------------------------------- state
  def init_state(self, params: Any) -> MLPLOptState:
    check_param_dtypes(params)
    acc = jax.tree_util.tree_map(lambda p: F.init_acc(tuple(np.shape(p))), params)
    return MLPLOptState(count=jnp.zeros((), jnp.int32), acc=acc,
                        nonfinite=jnp.zeros((), jnp.int32))

  # ---------------------------------------------------------------- update
  def tensor_step(self, theta: dict, feats: list[jax.Array], scales: list[jax.Array],
                  tfeats: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Unscaled step of one tensor from its 28 raw features and their
    normalization scales (``features.raw_features``, ``features.norm_scales``).
    The time features are the same for every element, so their first-layer
    contribution is folded into its bias. Narrow MLPs (the shipped width 8) run
    unit by unit (``common.per_element_mlp``: one fused elementwise pass, no
    ``[*shape, 28]`` array; 5x faster on CPU), with the scales folded into the
    first layer's weights and the row-only and column-only features into its
    bias (an array that broadcasts over the tensor), so that per element the
    first layer reads only the 16 ``features.PER_ELEMENT_FEATURES``. Wider ones
    run as matmuls over the 28 stacked normalized features, since unrolling
    hidden_size**2 products per layer explodes XLA's compile memory (width 32:
    over 20 GB)."""
    layers = theta["mlp"]
    first = layers["layer_0"]
    w, bias = first["w"], tfeats @ first["w_time"] + first["b"]
    if self.hidden_size > UNIT_BY_UNIT_MAX_WIDTH:
      mlp, inputs = stacked_mlp, [jnp.broadcast_to(f * s, shape) for f, s in zip(feats, scales)]
    else:
      w = w * jnp.stack(scales)[:, None]
      for part in (F.ROW_FEATURES, F.COL_FEATURES):
        bias = bias + jnp.stack([feats[k] for k in part], axis=-1) @ w[np.array(part)]
      w = w[np.array(F.PER_ELEMENT_FEATURES)]
      mlp, inputs = per_element_mlp, [jnp.broadcast_to(feats[k], shape)
                                      for k in F.PER_ELEMENT_FEATURES]
    dense = [(w, bias)] + [(layers[f"layer_{i}"]["w"], layers[f"layer_{i}"]["b"])
                           for i in range(1, self.hidden_layers)]
    dense.append((layers["output"]["w"], layers["output"]["b"]))
    direction, magnitude = mlp(inputs, tuple(dense))
    return direction * jnp.exp(self.exp_mult * magnitude) * self.step_mult

  def update(self, theta: dict, grads: Any, state: MLPLOptState, params: Any, *,
             num_steps: int | None = None, mup: Any = None,
             loss: Any = None) -> tuple[Any, MLPLOptState]:
    """Functional update: returns (updates, new_state); updates are added to params.
    ``loss`` (optional) is passed to the step rules; the network does not read it."""
    if params is None:
      raise ValueError("The learned optimizer reads parameter values: call "
                       "update(grads, state, params) with params.")
    check_num_steps(num_steps)
    decays = F.decays_from_logits(F.Decays(**theta["decay_logits"]))
    count = state.count + 1
    tfeats = F.time_features(count, num_steps)
    if not self.features.absolute_time:
      tfeats = tfeats.at[:-1].set(0.0)  # keep only the fraction of training
    use_kernels = kernels.use_pallas(self.backend)

    def one(g, p, acc, mult, group):
      g, bad = sanitize_grad(g)
      args = (theta["mlp"], tfeats, decays, g, p, acc)
      reference = functools.partial(self._xla_tensor_update, mult)
      if use_kernels and kernels.supports(p):
        u, acc = kernels.tensor_update(self, mult, *args, reference=reference,
                                       interpret=kernels.interpret_mode())
      else:
        u, acc = reference(*args)
      ctx = step_rules.TensorContext(g, p, mult, group, count, num_steps, loss, acc, decays)
      return step_rules.apply(self.step, theta, step_rules.Step(u), ctx), acc, bad

    updates, new_acc, nonfinite = map_tensors(
        self, one, grads, params, state.acc, lambda x: isinstance(x, F.TensorAcc), mup)
    return updates, MLPLOptState(count=count, acc=new_acc, nonfinite=state.nonfinite + nonfinite)

  def _xla_tensor_update(self, mult: float, theta_mlp: dict, tfeats: jax.Array,
                         decays: F.Decays, g: jax.Array, p: jax.Array,
                         acc: F.TensorAcc) -> tuple[jax.Array, F.TensorAcc]:
    """The reference update of one tensor: (update, new accumulators)."""
    g32 = jnp.asarray(g, jnp.float32)  # already sanitized by update()
    acc = F.update_accumulators(acc, g32, decays)
    p32 = jnp.asarray(p, jnp.float32)
    # The features are computed again inside mlp_step, on purpose: passed in,
    # they would be written to memory (measured slower); here they only feed reductions.
    scales = F.norm_scales(F.raw_features(g32, p32, acc), acc, raw_ratios=self.features.adam)
    mlp_step = lambda: self.tensor_step({"mlp": theta_mlp}, F.raw_features(g32, p32, acc),
                                        scales, tfeats, g.shape) * mult
    if any(isinstance(rule, step_rules.RMSNormalize) for rule in self.step):
      # RMSNormalize zeroes a tensor without gradient, so the MLP is skipped
      # there. The cond also makes XLA run the MLP once: fused into the step
      # rule's RMS reduction and the final update, it recomputed it in each.
      step = jax.lax.cond(step_rules.has_gradient(g32), mlp_step, lambda: jnp.zeros_like(g32))
    else:
      step = mlp_step()
    return (-step).astype(jnp.result_type(p)), acc

  # ---------------------------------------------------------------- optax
  def as_optax(self, theta: dict, num_steps: int | None = None,
               mup: Any = None) -> optax.GradientTransformationExtraArgs:
    """The LO at fixed θ as an optax transformation.

    ``update(grads, state, params, loss=None)``: ``loss`` is optional (passed
    to the step rules), so training loops can pass it to any learned optimizer.

    ``num_steps`` is the planned number of updates. It is required (a
    ValueError here otherwise) when a step rule needs it (``Cosine``: the
    shipped LOs) or ``features.absolute_time=False`` (the fraction of training
    is then the LO's only sense of time). Past ``num_steps`` the schedule holds
    its final value: with ``Cosine`` that is 0, so update ``num_steps`` and
    every later one is exactly 0 and training stops;
    ``lopt.check_num_steps(opt_state, num_steps)`` raises once that point is
    reached (call it outside jit).

    flax NNX: params and gradients may be ``nnx.State``s of ``nnx.Param``
    variables or of raw arrays (``nnx.Optimizer`` passes both); the LO works on
    the arrays and returns updates in the structure of the gradients.
    """
    needs = [r.requires_num_steps for r in self.step if r.requires_num_steps]
    if not self.features.absolute_time:
      needs.append("it reads the fraction of training t/num_steps as its only time feature "
                   "(features.absolute_time=False)")
    return optax_from_lo(self, theta, num_steps, mup, needs)
