"""Hand-designed baseline optimizers, all as Optax transformations, by name.

Registry
--------
``get(name, learning_rate=None, *, schedule=None, num_steps=None,
warmup_steps=None, **hparams) -> optax.GradientTransformationExtraArgs``

* ``names()`` lists every name; ``hparams(name)`` the keyword arguments that
  name accepts; ``default_lr_grid(name)`` a half-decade (1, 3, 10, ...)
  learning-rate grid of 7 to 9 points for tuning it.
* ``learning_rate`` is a float or an optax schedule. It is required except for
  the LR-free ``dog`` and ``prodigy``, where it is a multiplier defaulting to 1.
* ``schedule="constant" | "warmup_cosine" | "warmup_linear"`` turns a float
  ``learning_rate`` into that schedule with it as the peak (see ``schedule``).
  ``warmup_steps`` alone implies ``"constant"`` with a linear warmup;
  ``num_steps`` is needed by the decaying ones and ignored otherwise.
* ``hparams`` are the optimizer's own keyword arguments (those of the optax
  function it wraps, or of ours below). An unknown name or hparam is a
  ValueError that lists the valid ones.
* Every returned transformation takes extra keyword arguments in ``update``
  and ignores those it does not use, so a generic loop may always call
  ``update(grads, state, params, obj_fn=...)``.

Names and what they map to
--------------------------
* ``adam adamw sgd lion adabelief amsgrad adafactor nadamw adan``:
  ``optax.<name>``; ``nesterov``: ``optax.sgd(lr, momentum=0.9, nesterov=True)``.
* From ``optax.contrib`` (looked up when used, also under ``optax.<name>`` in
  case it is promoted; a clear ImportError if this optax has neither):
  ``ademamix`` -> ``ademamix``; ``sophia`` -> ``sophia`` with
  ``hessian_diagonal_fn=hutchinson_estimator_diag_hessian(PRNGKey(seed))``
  (Sophia-H); ``muon`` -> ``muon`` (Newton-Schulz on 2-D params, AdamW on the
  others at the same LR unless ``adam_learning_rate=``);
  ``schedule-free-adamw`` -> ``schedule_free_adamw``; ``dog`` -> ``dog``;
  ``prodigy`` -> ``prodigy``.
* Ours, each tested against its paper's update equations: ``muadam grams
  cautious-adamw cautious-lion mars-adamw adabound diffgrad``.
* Underscores are accepted for hyphens (``schedule_free_adamw``).

Extra arguments some entries need
---------------------------------
* ``sophia`` (Sophia-H, optax's Hutchinson diagonal-Hessian estimate) needs the
  objective at every update: ``update(grads, state, params, obj_fn=f)`` where
  ``f(params) -> scalar loss`` on the *same batch* the grads came from, e.g.
  ``obj_fn=lambda p: loss(p, batch)``. It is traced inside the update (a
  Hessian-vector product every ``update_interval`` steps), so build it inside
  your jitted step. ``seed=`` seeds the Rademacher probes.
* ``schedule-free-adamw``: the params the optimizer trains are not the ones to
  evaluate. Use ``eval_params(name, state, params)``, which returns optax's
  ``schedule_free_eval_params`` for a schedule-free state (found anywhere in
  ``state``, so it also works inside ``optax.chain``) and ``params`` otherwise.
* ``dog``, ``prodigy`` and ``schedule-free-adamw`` need ``params`` in
  ``update`` (as does ``sophia``); every entry may be given them.

Transformations (composable with ``optax.chain``)
--------------------------------------------------
``muadam(learning_rate, mup=None, ...)``, ``scale_by_mup(spec)``,
``grams(...)``/``scale_by_grams``, ``cautious(inner, direction=False)``,
``cautious_adamw``, ``cautious_lion``, ``mars_adamw``/``scale_by_mars``,
``adabound``/``scale_by_adabound``, ``diffgrad``/``scale_by_diffgrad``,
``schedule(kind, peak_lr, num_steps=None, warmup_steps=0, end_frac=0.0)``.

Sign convention: optax *updates* are added to the params, so they point
against the gradient. ``scale_by_grams/mars/diffgrad`` output *directions*
with the gradient's sign (like ``optax.scale_by_adam``), negated by
``scale_by_learning_rate`` at the end of each chain; ``scale_by_adabound``
has the LR inside its clip and so returns the final (negated) update.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from lopt import mup as _mup

try:  # optax.contrib is where the newer optimizers live; it may move.
  from optax import contrib as _contrib
except ImportError:  # pragma: no cover - depends on the installed optax
  _contrib = None

ScalarOrSchedule = Union[float, jax.Array, Callable[[jax.Array], jax.Array]]


# --------------------------------------------------------------------------
# Small helpers.

def _optax_fn(attr: str) -> Callable[..., Any]:
  """``optax.contrib.<attr>`` (or ``optax.<attr>`` if it was promoted)."""
  for mod in (_contrib, optax):
    fn = getattr(mod, attr, None) if mod is not None else None
    if fn is not None:
      return fn
  raise ImportError(
      f"This optax ({optax.__version__}) has neither optax.contrib.{attr} nor "
      f"optax.{attr}, which this baseline needs; install an optax that has it "
      "or pick another baseline from lopt.baselines.names().")


def _decay(weight_decay: Any, mask: Any = None) -> optax.GradientTransformation:
  """Decoupled weight decay, or the identity when it is exactly 0.

  Skipping it for 0 keeps e.g. μAdam bit-identical to Adam times a multiplier.
  """
  # Only a literal 0 lets us drop a transform; arrays/schedules are kept.
  if isinstance(weight_decay, (int, float)) and not isinstance(weight_decay, bool) \
      and weight_decay == 0:
    return optax.identity()
  return optax.add_decayed_weights(weight_decay, mask)


def _stat_dtype(x: Any) -> Any:
  # Statistics in at least float32, so bf16 params keep accurate moments.
  return jnp.promote_types(x.dtype, jnp.float32)


def _zeros_stats(params: Any) -> Any:
  return jax.tree.map(lambda p: jnp.zeros(p.shape, _stat_dtype(p)), params)


def _to_stats(tree: Any) -> Any:
  return jax.tree.map(lambda x: x.astype(_stat_dtype(x)), tree)


# --------------------------------------------------------------------------
# μAdam: Adam with μP per-tensor step multipliers.

class ScaleByMupState(NamedTuple):
  """Per-tensor float32 multipliers, computed once from the params' shapes."""
  multipliers: Any


def scale_by_mup(spec: Any) -> optax.GradientTransformationExtraArgs:
  """Multiply each tensor's update by its μP multiplier (see ``lopt.mup``).

  ``spec`` is a μP spec (kind strings or floats per tensor). The multipliers
  are resolved at ``init`` from the params' shapes: ``1/fan_in`` for hidden
  matrices, 1 for input, output and vector tensors.
  """

  def init_fn(params):
    mults = _mup.multipliers(spec, params)
    return ScaleByMupState(jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), mults))

  def update_fn(updates, state, params=None, **extra):
    del params, extra
    # Multiply in (at least) float32 so 1/fan_in is not rounded to bf16 first.
    out = jax.tree.map(lambda u, m: (u * m).astype(u.dtype), updates, state.multipliers)
    return out, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def muadam(learning_rate: ScalarOrSchedule, mup: Any = None, b1: float = 0.9,
           b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
           weight_decay: float = 0.0, mask: Any = None
           ) -> optax.GradientTransformationExtraArgs:
  """μAdam: Adam whose step for tensor i is multiplied by ``multipliers(mup)[i]``.

  Hidden matrices get ``lr/fan_in``, everything else ``lr``, as in the μLO
  paper's μAdam baseline. ``mup=None`` is plain Adam (SP). A nonzero
  ``weight_decay`` is AdamW-style and scaled by the same per-tensor multiplier
  (as per-layer learning rates do in μP AdamW).
  """
  parts = [optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
           _decay(weight_decay, mask),
           optax.scale_by_learning_rate(learning_rate)]
  # Multiplier last, so the update is exactly Adam's times the multiplier.
  if mup is not None:
    parts.append(scale_by_mup(mup))
  return optax.chain(*parts)


# --------------------------------------------------------------------------
# Grams (Cao et al. 2024): Adam's magnitude, the current gradient's sign.

class ScaleByGramsState(NamedTuple):
  adam: optax.ScaleByAdamState


def scale_by_grams(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   eps_root: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """Direction ``sign(g_t) * |m̂_t / (sqrt(v̂_t) + eps)|``.

  Adam's bias-corrected moments (``optax.scale_by_adam``) give the magnitude;
  the sign comes from the current gradient (sign(0) = 0: no step there).
  """
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

  def init_fn(params):
    return ScaleByGramsState(adam.init(_zeros_stats(params)))

  def update_fn(updates, state, params=None, **extra):
    del extra
    u, adam_state = adam.update(_to_stats(updates), state.adam)
    out = jax.tree.map(lambda g, a: (jnp.sign(g) * jnp.abs(a)).astype(g.dtype), updates, u)
    return out, ScaleByGramsState(adam_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def grams(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8, eps_root: float = 0.0, weight_decay: float = 0.0,
          mask: Any = None) -> optax.GradientTransformationExtraArgs:
  """Grams: ``θ ← θ − lr·(sign(g_t)·|u_t| + λ θ)``, u_t the Adam step (Alg. 1)."""
  return optax.chain(scale_by_grams(b1, b2, eps, eps_root), _decay(weight_decay, mask),
                     optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------
# Cautious wrapper (Liang et al. 2024).

class CautiousState(NamedTuple):
  inner: Any


def cautious(inner: optax.GradientTransformation, direction: bool = False
             ) -> optax.GradientTransformationExtraArgs:
  """Cautious wrapper: zero the coordinates whose step disagrees with the gradient.

  Per tensor, with g the incoming gradient and u the inner output:
  ``mask = [u agrees with g]``, ``u' = u · mask · size / (sum(mask) + 1)``
  (the rescale keeps the average step size, as in the authors' code).

  Sign convention, which decides what "agrees" means:

  * ``direction=False`` (default): ``inner`` is a complete optax optimizer, so
    its updates are *added* to the params and point against the gradient.
    Agreement is ``u * g < 0``.
  * ``direction=True``: ``inner`` returns a descent direction with the
    gradient's sign (e.g. ``optax.scale_by_adam()``, ``optax.scale_by_lion()``),
    to be negated later by ``scale_by_learning_rate``. Agreement is ``u * g > 0``
    — the paper's ``u ∘ g > 0`` with its ``w ← w − ε u`` convention.

  Extra update arguments are passed through to ``inner``.
  """
  inner = optax.with_extra_args_support(inner)

  def mask_one(u, g):
    prod = u * g.astype(u.dtype)
    mask = (prod > 0) if direction else (prod < 0)
    # Count in float32: a bf16 sum of ones is inexact beyond 256.
    scale = mask.size / (jnp.sum(mask, dtype=jnp.float32) + 1)
    return u * mask.astype(u.dtype) * scale.astype(u.dtype)

  def init_fn(params):
    return CautiousState(inner.init(params))

  def update_fn(updates, state, params=None, **extra):
    u, inner_state = inner.update(updates, state.inner, params, **extra)
    return jax.tree.map(mask_one, u, updates), CautiousState(inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def cautious_adamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
                   eps: float = 1e-8, eps_root: float = 0.0, weight_decay: float = 1e-4,
                   mask: Any = None) -> optax.GradientTransformationExtraArgs:
  """C-AdamW: the mask applies to Adam's direction; weight decay stays outside it
  (as in the authors' code), so it equals ``optax.adamw`` with a cautious step."""
  return optax.chain(
      cautious(optax.scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root), direction=True),
      _decay(weight_decay, mask), optax.scale_by_learning_rate(learning_rate))


def cautious_lion(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99,
                  weight_decay: float = 1e-3, mask: Any = None
                  ) -> optax.GradientTransformationExtraArgs:
  """C-Lion: ``optax.lion`` with the cautious mask on the sign direction."""
  return optax.chain(cautious(optax.scale_by_lion(b1=b1, b2=b2), direction=True),
                     _decay(weight_decay, mask), optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------
# MARS-AdamW (Yuan et al. 2024), approximate variant.

class ScaleByMarsState(NamedTuple):
  adam: optax.ScaleByAdamState
  prev_grad: Any


def scale_by_mars(b1: float = 0.95, b2: float = 0.99, eps: float = 1e-8,
                  gamma: float = 0.025) -> optax.GradientTransformationExtraArgs:
  """MARS variance-reduced direction, fed to Adam's moments.

  Per tensor: ``c_t = g_t + γ·β1/(1−β1)·(g_t − g_{t−1})``;
  ``c_t ← c_t/‖c_t‖₂`` if ``‖c_t‖₂ > 1``; then ``m̂_t/(sqrt(v̂_t)+eps)`` of
  Adam's bias-corrected moments of ``c_t``. ``g_{t−1}`` is the previous
  step's gradient (MARS-approx). At t = 1 the correction is zero, following
  the paper's ``x_0 = x_1`` initialization (the authors' code uses
  ``g_0 = 0``, which inflates the first ``c_1`` by ``1+γβ1/(1−β1)``).
  """
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
  coef = gamma * b1 / (1.0 - b1)

  def init_fn(params):
    return ScaleByMarsState(adam.init(_zeros_stats(params)), _zeros_stats(params))

  def update_fn(updates, state, params=None, **extra):
    del extra
    first = state.adam.count == 0

    def correct(g, prev):
      g32 = g.astype(prev.dtype)
      prev = jnp.where(first, g32, prev)
      c = g32 + coef * (g32 - prev)
      norm = jnp.sqrt(jnp.sum(c * c))
      return jnp.where(norm > 1, c / jnp.where(norm > 1, norm, 1), c)

    c = jax.tree.map(correct, updates, state.prev_grad)
    u, adam_state = adam.update(c, state.adam)
    u = jax.tree.map(lambda x, g: x.astype(g.dtype), u, updates)
    prev = jax.tree.map(lambda g, p: g.astype(p.dtype), updates, state.prev_grad)
    return u, ScaleByMarsState(adam_state, prev)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def mars_adamw(learning_rate: ScalarOrSchedule, b1: float = 0.95, b2: float = 0.99,
               eps: float = 1e-8, gamma: float = 0.025, weight_decay: float = 0.0,
               mask: Any = None) -> optax.GradientTransformationExtraArgs:
  """MARS-AdamW: ``θ ← θ − lr·(m̂/(sqrt(v̂)+eps) + λθ)`` on the MARS ``c_t``.

  Defaults are the paper's/authors' (β = (0.95, 0.99), γ = 0.025, λ = 0).
  Unlike the authors' default (``optimize_1d=False``), MARS is applied to every
  tensor, vectors included; compose with ``optax.multi_transform`` otherwise.
  """
  return optax.chain(scale_by_mars(b1, b2, eps, gamma), _decay(weight_decay, mask),
                     optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------
# AdaBound (Luo et al. 2019).

class ScaleByAdaBoundState(NamedTuple):
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adabound(learning_rate: ScalarOrSchedule = 1e-3, final_lr: float = 0.1,
                      b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                      gamma: float = 1e-3, base_lr: Optional[float] = None
                      ) -> optax.GradientTransformationExtraArgs:
  """AdaBound's (already negated) update; the learning rate is inside the clip.

  Transcribes the authors' reference implementation (Luolc/AdaBound), t = 1, 2, ...:
  ``m_t, v_t`` Adam's raw (uncorrected) EMAs;
  ``η_l = final_lr·(1 − 1/(γt+1))``, ``η_u = final_lr·(1 + 1/(γt))``;
  ``step = clip(lr·sqrt(1−β2^t)/(1−β1^t) / (sqrt(v_t)+eps), η_l, η_u) · m_t``;
  update ``= −step``. So both bias corrections are folded into the step size
  *before* clipping and eps is added to the uncorrected ``sqrt(v_t)``; the
  paper's Algorithm 2 instead has no bias correction and an extra ``1/sqrt(t)``
  (the code is what is used and reported).

  With a schedule, the bounds follow it as in the reference code:
  ``final_lr·lr(t)/base_lr``, where ``base_lr`` is the nominal (peak) LR
  (``get(..., schedule=...)`` passes it). For a float LR, ``base_lr`` defaults
  to it, so the bounds are ``final_lr`` as written above.
  """
  if callable(learning_rate) and base_lr is None:
    raise ValueError("adabound with a learning-rate schedule needs base_lr= (the "
                     "schedule's nominal/peak value) to scale final_lr as the reference "
                     "code does; get(..., schedule=...) sets it for you.")

  def init_fn(params):
    return ScaleByAdaBoundState(jnp.zeros([], jnp.int32), _zeros_stats(params),
                                _zeros_stats(params))

  def update_fn(updates, state, params=None, **extra):
    del params, extra
    # optax schedules start at count 0.
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    # Saturating int32 increment: a counter must never wrap to negative steps.
    count = jnp.where(state.count < jnp.iinfo(jnp.int32).max, state.count + 1, state.count)
    t = count.astype(jnp.float32)
    mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g.astype(m.dtype), updates, state.mu)
    nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype)),
                      updates, state.nu)
    step_size = lr * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    final = final_lr * lr / base_lr if base_lr is not None else final_lr
    lower = final * (1 - 1 / (gamma * t + 1))
    upper = final * (1 + 1 / (gamma * t))

    def one(g, m, v):
      s = jnp.clip(step_size / (jnp.sqrt(v) + eps), lower, upper)
      return (-(s * m)).astype(g.dtype)

    out = jax.tree.map(one, updates, mu, nu)
    return out, ScaleByAdaBoundState(count, mu, nu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adabound(learning_rate: ScalarOrSchedule, final_lr: float = 0.1, b1: float = 0.9,
             b2: float = 0.999, eps: float = 1e-8, gamma: float = 1e-3,
             weight_decay: float = 0.0, base_lr: Optional[float] = None
             ) -> optax.GradientTransformationExtraArgs:
  """AdaBound. ``weight_decay`` is L2 (added to the gradient), as in the reference."""
  return optax.chain(_decay(weight_decay),
                     scale_by_adabound(learning_rate, final_lr, b1, b2, eps, gamma, base_lr))


# --------------------------------------------------------------------------
# diffGrad (Dubey et al. 2019).

class ScaleByDiffGradState(NamedTuple):
  adam: optax.ScaleByAdamState
  prev_grad: Any


def scale_by_diffgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                      ) -> optax.GradientTransformationExtraArgs:
  """Direction ``ξ_t · m̂_t/(sqrt(v̂_t)+eps)`` with friction
  ``ξ_t = sigmoid(|g_{t−1} − g_t|)`` elementwise and ``g_0 = 0`` (the paper's
  equations; the authors' code puts eps on the uncorrected ``sqrt(v_t)``)."""
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

  def init_fn(params):
    return ScaleByDiffGradState(adam.init(_zeros_stats(params)), _zeros_stats(params))

  def update_fn(updates, state, params=None, **extra):
    del extra
    u, adam_state = adam.update(_to_stats(updates), state.adam)

    def one(x, g, prev):
      xi = jax.nn.sigmoid(jnp.abs(prev - g.astype(prev.dtype)))
      return (xi * x).astype(g.dtype)

    out = jax.tree.map(one, u, updates, state.prev_grad)
    prev = jax.tree.map(lambda g, p: g.astype(p.dtype), updates, state.prev_grad)
    return out, ScaleByDiffGradState(adam_state, prev)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def diffgrad(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
             eps: float = 1e-8, weight_decay: float = 0.0
             ) -> optax.GradientTransformationExtraArgs:
  """diffGrad. ``weight_decay`` is L2 (added to the gradient), as in the reference."""
  return optax.chain(_decay(weight_decay), scale_by_diffgrad(b1, b2, eps),
                     optax.scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------
# Learning-rate schedules.

SCHEDULES = ("constant", "warmup_cosine", "warmup_linear")


def schedule(kind: str, peak_lr: float, num_steps: Optional[int] = None,
             warmup_steps: int = 0, end_frac: float = 0.0) -> optax.Schedule:
  """An optax schedule with a linear warmup from 0 to ``peak_lr``.

  * ``constant``: warmup then ``peak_lr`` forever (``num_steps`` unused).
  * ``warmup_cosine``: warmup then cosine decay to ``end_frac·peak_lr`` at
    ``num_steps`` (total steps, warmup included).
  * ``warmup_linear``: the same with a linear decay.
  """
  if kind not in SCHEDULES:
    raise ValueError(f"Unknown schedule {kind!r}; valid schedules are {list(SCHEDULES)}.")
  warmup_steps = int(warmup_steps or 0)
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
  if kind == "constant":
    if warmup_steps == 0:
      return optax.constant_schedule(peak_lr)
    return optax.linear_schedule(0.0, peak_lr, warmup_steps)  # holds its end value
  if num_steps is None:
    raise ValueError(f"schedule {kind!r} needs num_steps (the total number of steps).")
  if not 0 <= warmup_steps < num_steps:
    raise ValueError(f"warmup_steps ({warmup_steps}) must be in [0, num_steps={num_steps}).")
  end = end_frac * peak_lr
  if kind == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak_lr, warmup_steps, num_steps, end)
  decay = optax.linear_schedule(peak_lr, end, num_steps - warmup_steps)
  if warmup_steps == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup_steps), decay],
                              [warmup_steps])


_schedule = schedule  # get() has an argument named `schedule`


# --------------------------------------------------------------------------
# Registry.

def _nesterov(learning_rate: ScalarOrSchedule, momentum: float = 0.9,
              accumulator_dtype: Any = None) -> optax.GradientTransformation:
  """SGD with Nesterov momentum (0.9 by default)."""
  return optax.sgd(learning_rate, momentum=momentum, nesterov=True,
                   accumulator_dtype=accumulator_dtype)


def _sophia(learning_rate: ScalarOrSchedule, seed: int = 0, **kwargs):
  """optax.contrib.sophia (Sophia-H); ``seed`` seeds the Hutchinson probes."""
  if "hessian_diagonal_fn" in kwargs:
    if seed != 0:
      raise ValueError("sophia: pass either seed= or hessian_diagonal_fn=, not both.")
  else:
    hutchinson = _optax_fn("hutchinson_estimator_diag_hessian")
    kwargs["hessian_diagonal_fn"] = hutchinson(jax.random.PRNGKey(seed))
  return _optax_fn("sophia")(learning_rate, **kwargs)


def _grid(lo: float, hi: float) -> list[float]:
  """Half-decade grid 1, 3, 10, 30, ... from ``lo`` to ``hi`` (both of the form 1e-k or 3e-k)."""
  # Decimal literals: 3e-4, not 3*1e-4 = 0.00030000000000000003.
  values = [float(f"{m}e{e}") for e in range(-8, 4) for m in (1, 3)]
  return [v for v in values if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]


_ADAM_GRID = _grid(1e-4, 1e-1)
_SGD_GRID = _grid(1e-3, 10.0)
_LION_GRID = _grid(1e-5, 1e-2)


@dataclasses.dataclass(frozen=True)
class _Entry:
  build: Callable[..., Any]               # builder, or a thunk resolving one (lazy)
  grid: tuple[float, ...]
  default_lr: Optional[float] = None      # None: learning_rate is required
  lazy: bool = False                      # build() returns the optax function
  forwards: Optional[str] = None          # optax attr whose kwargs the builder forwards
  hidden: tuple[str, ...] = ()            # hparams not exposed (handled by get)

  def resolve(self) -> Callable[..., Any]:
    return self.build() if self.lazy else self.build

  def accepted(self) -> list[str]:
    fn = self.resolve()
    names_ = [n for n, p in inspect.signature(fn).parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    if self.forwards is not None:
      names_ += list(inspect.signature(_optax_fn(self.forwards)).parameters)
    return sorted(set(names_) - {"learning_rate"} - set(self.hidden))


def _optax_top(attr: str) -> _Entry:
  return _Entry(lambda: getattr(optax, attr), tuple(_ADAM_GRID), lazy=True)


_REGISTRY: dict[str, _Entry] = {
    # From optax.
    "adam": _optax_top("adam"),
    "adamw": _optax_top("adamw"),
    "sgd": _Entry(lambda: optax.sgd, tuple(_SGD_GRID), lazy=True),
    "nesterov": _Entry(_nesterov, tuple(_SGD_GRID)),
    "lion": _Entry(lambda: optax.lion, tuple(_LION_GRID), lazy=True),
    "adabelief": _optax_top("adabelief"),
    "amsgrad": _optax_top("amsgrad"),
    # Adafactor multiplies its step by RMS(param), so its LR is relative and larger.
    "adafactor": _Entry(lambda: optax.adafactor, tuple(_grid(1e-3, 1.0)), lazy=True),
    "nadamw": _optax_top("nadamw"),
    "adan": _optax_top("adan"),
    # From optax.contrib (resolved lazily so a missing one fails only when used).
    "ademamix": _Entry(lambda: _optax_fn("ademamix"), tuple(_ADAM_GRID), lazy=True),
    # Sophia's step is clipped to [-1, 1] elementwise, so its LR sits between Lion's and Adam's.
    "sophia": _Entry(_sophia, tuple(_grid(3e-5, 3e-2)), forwards="sophia"),
    # Muon's orthogonalized step has RMS ~ 1/sqrt(width); typical LRs are ~0.02.
    "muon": _Entry(lambda: _optax_fn("muon"), tuple(_grid(3e-4, 3e-1)), lazy=True),
    # Its warmup goes through get(warmup_steps=).
    "schedule-free-adamw": _Entry(lambda: _optax_fn("schedule_free_adamw"), tuple(_ADAM_GRID),
                                  lazy=True, hidden=("warmup_steps",)),
    "dog": _Entry(lambda: _optax_fn("dog"), tuple(_grid(1e-2, 10.0)), default_lr=1.0, lazy=True),
    "prodigy": _Entry(lambda: _optax_fn("prodigy"), tuple(_grid(1e-2, 10.0)), default_lr=1.0,
                      lazy=True),
    # Ours. μAdam's hidden steps are lr/fan_in, so its base LR is larger than Adam's.
    "muadam": _Entry(muadam, tuple(_grid(3e-4, 1.0))),
    "grams": _Entry(grams, tuple(_ADAM_GRID)),
    "cautious-adamw": _Entry(cautious_adamw, tuple(_ADAM_GRID)),
    "cautious-lion": _Entry(cautious_lion, tuple(_LION_GRID)),
    "mars-adamw": _Entry(mars_adamw, tuple(_ADAM_GRID)),
    "adabound": _Entry(adabound, tuple(_ADAM_GRID)),
    "diffgrad": _Entry(diffgrad, tuple(_ADAM_GRID)),
}


def names() -> list[str]:
  """All registered baseline names."""
  return list(_REGISTRY)


def _entry(name: str) -> tuple[str, _Entry]:
  key = str(name).strip().lower().replace("_", "-")
  if key not in _REGISTRY:
    raise ValueError(f"Unknown baseline {name!r}; valid names are: {', '.join(names())}.")
  return key, _REGISTRY[key]


def default_lr_grid(name: str) -> list[float]:
  """Half-decade learning-rate grid (7 to 9 points) to tune ``name`` over."""
  return list(_entry(name)[1].grid)


def hparams(name: str) -> list[str]:
  """The optimizer-specific keyword arguments ``get(name, ...)`` accepts."""
  return _entry(name)[1].accepted()


def get(name: str, learning_rate: Optional[ScalarOrSchedule] = None, *,
        schedule: Optional[str] = None, num_steps: Optional[int] = None,
        warmup_steps: Optional[int] = None, **hparams_: Any
        ) -> optax.GradientTransformationExtraArgs:
  """The baseline ``name`` as an Optax transformation (see the module docstring)."""
  key, entry = _entry(name)
  accepted = entry.accepted()
  unknown = sorted(set(hparams_) - set(accepted))
  if unknown:
    raise ValueError(f"Unknown hyperparameter(s) {unknown} for baseline {key!r}; it "
                     f"accepts learning_rate, schedule, num_steps, warmup_steps and: "
                     f"{', '.join(accepted)}.")
  if learning_rate is None:
    if entry.default_lr is None:
      raise ValueError(f"Baseline {key!r} needs learning_rate= (a float or an optax "
                       f"schedule); default_lr_grid({key!r}) = {list(entry.grid)}.")
    learning_rate = entry.default_lr
  if schedule is None and warmup_steps:
    schedule = "constant"
  if schedule is not None:
    if callable(learning_rate):
      raise ValueError("schedule= builds the schedule from a float learning_rate (its "
                       "peak); got a callable learning_rate as well.")
    peak = float(learning_rate)
    if "base_lr" in accepted and hparams_.get("base_lr") is None:
      hparams_["base_lr"] = peak  # AdaBound's bounds follow lr(t)/peak
    learning_rate = _schedule(schedule, peak, num_steps, warmup_steps or 0)
  tx = entry.resolve()(learning_rate, **hparams_)
  # One calling convention for every name: update(g, s, p, **extra) always works.
  return optax.with_extra_args_support(tx)


def eval_params(name: str, state: Any, params: Any) -> Any:
  """The params to evaluate: schedule-free's averaged ``x`` if ``state`` holds a
  schedule-free state (anywhere, e.g. inside a chain), else ``params`` itself."""
  _entry(name)  # validate the name even when nothing needs converting
  sf_cls = getattr(_contrib, "ScheduleFreeState", None) if _contrib is not None else None
  if sf_cls is None:
    return params
  found = [s for s in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, sf_cls))
           if isinstance(s, sf_cls)]
  if not found:
    return params
  if len(found) > 1:
    raise ValueError("eval_params: the optimizer state holds several schedule-free "
                     "states; convert the params yourself.")
  return _optax_fn("schedule_free_eval_params")(found[0], params)


__all__ = [
    "names", "get", "hparams", "default_lr_grid", "eval_params", "schedule", "SCHEDULES",
    "muadam", "scale_by_mup", "ScaleByMupState",
    "grams", "scale_by_grams", "ScaleByGramsState",
    "cautious", "cautious_adamw", "cautious_lion", "CautiousState",
    "mars_adamw", "scale_by_mars", "ScaleByMarsState",
    "adabound", "scale_by_adabound", "ScaleByAdaBoundState",
    "diffgrad", "scale_by_diffgrad", "ScaleByDiffGradState",
]
