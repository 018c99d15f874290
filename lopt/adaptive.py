"""The adaptive LO: μAdamW at θ = 0, with bounded learned adaptation on top.

At θ = 0 this is exactly a hand-designed optimizer, μAdamW with a cosine
schedule and decoupled weight decay (``lopt.forms.adaptive`` is that form):

    a    = m̂ / (sqrt(v̂) + eps)                    Adam's direction (bias-corrected)
    lr   = base[group] · mup_mult · cosine(t / T)   per-tensor step size
    u    = -lr · a - lr · wd · p                    (wd on matrices only)

θ adds three things, each zero-initialized so that θ = 0 changes nothing.
All three are step rules (``lopt.step_rules``) or this LO's network:

(a) ``LearnedScales`` and ``ShapedCosine``: log-multipliers of the base step
    per μP group and of the weight decay, and the schedule's shape
    (cosine ** exp(θ)).
(b) ``TensorAdaptive``: a per-tensor MLP over pooled statistics (gradient-norm
    and parameter-norm trend since update 1, momentum signal-to-noise,
    fraction of training, μP group, and the loss's progress and trend when
    ``loss=`` is given) whose two outputs become a step and a weight-decay
    multiplier, each within ``[1/bound, bound]`` (``bound ** tanh(·)``; one
    bound for both, or a (step, weight decay) pair).
    Without ``loss=`` the loss features read 0 and a flag says so: gradient
    statistics alone carry the adaptation.
(c) The network: a per-element MLP over scale-free features (Adam's
    direction, g/sqrt(v̂), p/rms(p)), with the tensor statistics in its bias;
    ``AdamDirection`` adds its tanh-bounded output to Adam's direction.

So a tensor's step is within ×``bound`` of the hand-designed one times the
learned scalars: the LO can learn restraint once a task is memorized, or
larger steps where they pay, and it cannot run away on an unseen model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt import kernels, step_rules
from lopt.common import (check_epochs, check_num_steps, check_param_dtypes, check_record_fields,
                         check_theta_tree, config_record, map_tensors, optax_from_lo,
                         sanitize_grad)
from lopt.step_rules import GroupBase, LearnedScales, Step, StepRule, WeightDecay

# Pooled per-tensor statistics (``tensor_stats``), read by the head and, as
# context, by the per-element network.
TENSOR_FEATURES = ("frac", "grad_trend", "snr", "param_trend", "has_loss", "loss_progress",
                   "loss_trend", "group_input", "group_hidden", "is_vector")
NUM_TENSOR_FEATURES = len(TENSOR_FEATURES)
ELEMENT_FEATURES = ("adam", "g_over_rms", "p_over_rms")
NUM_ELEMENT_FEATURES = len(ELEMENT_FEATURES)
LOSS_EMA = 0.9      # decay of the log-loss average that the loss trend compares with
# Decay of each tensor's average of log alignment_z, which the invariance rules
# read: one update's z misfires on a few percent of an ordinary tensor's updates.
ALIGNMENT_EMA = 0.9
_TINY = 1e-30


class AdaptiveTensorState(NamedTuple):
  m: jax.Array          # Adam's first moment, float32, shape of the param
  v: jax.Array          # Adam's second moment
  log_g0: jax.Array     # log rms of the first gradient (set at update 1)
  log_p0: jax.Array     # log rms of the params at update 1
  mults: jax.Array      # [2]: this update's (step, weight-decay) multipliers from the
                        # TensorAdaptive and GradientRestraint rules, for inspection
  # The average of log alignment_z over updates (``averaged_alignment``), for
  # forms whose rules read it; None (no leaf: the state, and checkpoints of
  # it, are as before) for the others.
  log_z: Any = None


class AdaptiveLOptState(NamedTuple):
  count: jax.Array      # int32: updates applied
  tensors: Any          # pytree like params of AdaptiveTensorState
  log_loss0: jax.Array  # log of the first loss given (0 without loss=)
  log_loss_ema: jax.Array
  nonfinite: jax.Array  # int32: non-finite gradient elements zeroed so far


class TensorStats(NamedTuple):
  """What the adaptive rules read about a tensor (``TensorContext.acc``)."""
  m_hat: jax.Array      # bias-corrected moments
  v_hat: jax.Array
  eps: float
  feats: jax.Array      # [NUM_TENSOR_FEATURES] pooled statistics
  alignment: Any = None  # averaged_alignment(...), where a rule reads it (reads_alignment)


def _log_sqrt(mean: jax.Array) -> jax.Array:
  """log sqrt(mean): the log rms of a tensor from its mean square."""
  return 0.5 * jnp.log(mean + _TINY)


def bounded(raw: jax.Array, bound: Any) -> jax.Array:
  """``bound ** tanh(raw)``: 1 at 0, always within [1/bound, bound] (a bound
  per entry of raw's last axis where ``bound`` is a tuple)."""
  return jnp.exp(np.log(np.asarray(bound, np.float32)) * jnp.tanh(raw))


def alignment_z(sum_gp: jax.Array, sum_g2: jax.Array, sum_p2: jax.Array, n: int) -> jax.Array:
  """|cos(g, p)| · sqrt(n) of a tensor of n entries, from its sums of g·p, g²
  and p²: about 1 for unrelated g and p, and ~0 (float error, ≲ 1e-3) when the
  loss cannot see the tensor's scale, as for a kernel in front of a
  normalization layer, whose gradient is orthogonal to it. Non-finite sums
  read +inf (not invariant)."""
  z = jnp.abs(sum_gp) * jax.lax.rsqrt(sum_g2 * sum_p2 + _TINY) * np.float32(np.sqrt(n))
  return jnp.where(jnp.isfinite(z), z, jnp.inf)


def averaged_alignment(z: jax.Array, start: jax.Array, log_z: jax.Array):
  """(the alignment the rules read, the new average of log z): an exponential
  average (``ALIGNMENT_EMA``) of log z, started afresh where ``start`` (the
  rules: at update 1). A tensor behind BatchNorm reads z ≲ 1e-3 at every
  update, an ordinary one about 1 with rare dips, which one update's z cannot
  tell from the first."""
  now = jnp.log(jnp.clip(z, _TINY, 1e30))
  avg = jnp.where(start, now, ALIGNMENT_EMA * log_z + (1 - ALIGNMENT_EMA) * now)
  return jnp.exp(avg), avg


# ---------------------------------------------------------------- step rules
@dataclasses.dataclass(frozen=True)
class AdamDirection(StepRule):
  """The direction is Adam's, ``m̂ / (sqrt(v̂) + eps)``, plus the network's
  output bounded by tanh (a residual: 0 at θ = 0). The step size is left to
  ``lr`` (``GroupBase`` and the schedule)."""
  unit_direction: ClassVar[bool] = True

  def residual(self, raw: jax.Array) -> jax.Array:
    return jnp.tanh(raw)

  def __call__(self, theta, step, ctx):
    s = ctx.acc
    adam = s.m_hat / (jnp.sqrt(s.v_hat) + s.eps)
    return step._replace(direction=-(adam + self.residual(step.direction)))


@dataclasses.dataclass(frozen=True)
class MeanFreeAdamDirection(AdamDirection):
  """``AdamDirection`` with the residual's mean over the tensor removed. A mean
  is the same shift on every entry: on a hidden matrix its effect on the
  layer's output grows with fan_in, so it does not transfer in width (the
  mulo-a-cpu run's residual made a width-256 MLP 2x worse than θ₀; without its
  mean, 0.83x: README, "The adaptive LO")."""

  def residual(self, raw: jax.Array) -> jax.Array:
    r = jnp.tanh(raw)
    return r - jnp.mean(r)


@dataclasses.dataclass(frozen=True)
class TensorAdaptive(StepRule):
  """Per-tensor step and weight-decay multipliers from pooled statistics, each
  within [1/bound, bound]; θ's output layer starts at 0 (multipliers 1).
  ``bound`` is one float for both, or a (step, weight decay) pair."""
  bound: float | tuple = 10.0
  hidden: int = 16
  theta_key: ClassVar[str] = "adapt"

  def __post_init__(self):
    step_rules.pairs_as_tuples(self, "bound")
    pair = self.bound if isinstance(self.bound, tuple) else (self.bound,)
    if not (len(pair) in (1, 2) and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                        and 1 <= b < 1e6 for b in pair)):
      raise ValueError(f"TensorAdaptive: bound must be a float in [1, 1e6) or a (step, weight "
                       f"decay) pair of them, got {self.bound!r}.")
    if not (isinstance(self.hidden, int) and self.hidden >= 1):
      raise ValueError(f"TensorAdaptive: hidden must be an int >= 1, got {self.hidden!r}.")

  def init(self, key):
    w0 = jax.random.normal(key, (NUM_TENSOR_FEATURES, self.hidden), jnp.float32)
    return {"w0": w0 / np.sqrt(NUM_TENSOR_FEATURES), "b0": jnp.zeros((self.hidden,), jnp.float32),
            "w1": jnp.zeros((self.hidden, 2), jnp.float32), "b1": jnp.zeros((2,), jnp.float32)}

  def multipliers(self, theta, feats: jax.Array) -> jax.Array:
    """[step, weight decay] multipliers of one tensor."""
    out = jax.nn.relu(feats @ theta["w0"] + theta["b0"]) @ theta["w1"] + theta["b1"]
    return bounded(out, self.bound)

  def __call__(self, theta, step, ctx):
    mult = self.multipliers(theta, ctx.acc.feats)
    return Step(step.direction, step.lr * mult[0],
                None if step.wd is None else step.wd * mult[1])


@dataclasses.dataclass(frozen=True)
class ShapedCosine(StepRule):
  """``lr *= s``, ``s = cosine(t / num_steps) ** exp(θ)``: θ = 0 is the plain
  cosine. The decoupled decay, lr · wd per update, anneals by ``s **
  decay_exponent`` (None: 1, with the step; 2: ``wd *= s`` as well).

  Why 2: a kernel in front of a normalization layer is scale-invariant. Adam's
  steps (size lr per entry, orthogonal to it) grow its squared norm and the
  decay shrinks it, so it settles near n · lr / (2 wd). With wd fixed that
  shrinks as lr anneals, to the end of training. BatchNorm's running
  statistics then lag the weights: on a BatchNorm CNN the shipped θ's test
  loss in evaluation mode was 2.3× tuned AdamW's, and 0.92× with the
  statistics recomputed. With wd ∝ s the equilibrium norm stays put
  (docs/meta-training-runs.md, seventeenth session). On every matrix that
  also removes late restraint the small tables need; ``InvariantDecayCosine``
  limits it to scale-invariant tensors. No shipped LO uses either yet."""
  decay_exponent: float | None = None
  theta_key: ClassVar[str] = "schedule"
  requires_num_steps: ClassVar[str] = ("its step follows a cosine schedule over num_steps "
                                       "(the ShapedCosine step rule)")

  def __post_init__(self):
    e = self.decay_exponent
    if e is not None and not (isinstance(e, (int, float)) and not isinstance(e, bool)
                              and 1.0 <= e <= 10.0):
      raise ValueError(f"ShapedCosine: decay_exponent must be None (1: the decay anneals with "
                       f"the step) or a float in [1, 10], got {e!r}.")

  def changes_decay(self) -> bool:
    """Whether this rule anneals the decay coefficient (then it needs a
    ``WeightDecay`` before it)."""
    return self.decay_exponent is not None

  def check(self, rules):
    if not self.changes_decay():
      return
    here = next(i for i, r in enumerate(rules) if r is self)
    if not any(isinstance(r, WeightDecay) for r in rules[:here]):
      raise ValueError(f"{type(self).__name__} anneals the weight decay, so a WeightDecay "
                       f"rule must come before it in the step rules.")

  def init(self, key):
    return {"log_shape": jnp.zeros((), jnp.float32)}

  @staticmethod
  def shaped_factor(theta, ctx) -> Any:
    """``s = cosine(t / num_steps) ** exp(θ)``, or None without num_steps."""
    factor = step_rules.cosine_factor(ctx.count, ctx.num_steps)
    return None if factor is None else factor ** jnp.exp(theta["log_shape"])

  def __call__(self, theta, step, ctx):
    s = self.shaped_factor(theta, ctx)
    if s is None:
      return step
    wd = step.wd
    if wd is not None and self.decay_exponent not in (None, 1):
      wd = wd * s ** (self.weight(ctx) * (self.decay_exponent - 1))
    return Step(step.direction, step.lr * s, wd)

  def weight(self, ctx) -> Any:
    """How much of the decay's extra annealing a tensor gets: all of it."""
    del ctx
    return 1.0


@dataclasses.dataclass(frozen=True)
class InvariantDecayCosine(ShapedCosine):
  """``ShapedCosine`` whose decay anneals by ``s ** decay_exponent`` (default
  2) on scale-invariant tensors only, and with the step (``s``) elsewhere.

  A tensor counts as scale-invariant by its gradient: with z = |cos(g, p)| ·
  sqrt(n) (``alignment_z``, about 1 for unrelated g and p, ≲ 1e-3 behind
  BatchNorm) averaged in log over updates (``averaged_alignment``), the
  extra exponent is weighted by ``clip(log(z_hi / z) / log(z_hi / z_lo), 0,
  1)``: 1 below ``z_lo``, 0 above ``z_hi``. The decay
  of such a tensor does nothing to the function but set its norm, and an
  annealed decay keeps that norm, and BatchNorm's running statistics, still
  at the end of training (``ShapedCosine``). Elsewhere the decay is the
  meta-trained restraint that the small tables need: annealing it harder
  everywhere cost the screen's wine tables 10-24% (docs/meta-training-runs.md,
  seventeenth session). One update's z dips below z_hi on a few percent of
  an ordinary tensor's updates; the average does not. On mulo-m's θ (with
  z read per update, before the average) it
  fixed the BatchNorm CNN that showed the problem (test loss 0.471 → 0.206)
  but read 1-2% worse on two BatchNorm models that had none, so it does not
  ship."""
  decay_exponent: float | None = 2.0
  z_lo: float = 0.003
  z_hi: float = 0.03
  reads_alignment: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    if not (isinstance(self.z_lo, float) and isinstance(self.z_hi, float)
            and 0.0 < self.z_lo < self.z_hi < 1e6):
      raise ValueError(f"{type(self).__name__}: need floats 0 < z_lo < z_hi, got "
                       f"z_lo={self.z_lo!r}, z_hi={self.z_hi!r}.")

  def weight(self, ctx) -> Any:
    z = ctx.acc.alignment
    w = jnp.log(self.z_hi / jnp.maximum(z, _TINY)) / np.log(self.z_hi / self.z_lo)
    return jnp.clip(w, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class NormKeepingCosine(InvariantDecayCosine):
  """``ShapedCosine`` that keeps a scale-invariant tensor's norm still while
  its direction moves as under ``ShapedCosine``: with w the tensor's
  invariance weight (``InvariantDecayCosine.weight``: 1 behind BatchNorm, 0
  for ordinary tensors), the step anneals by ``s ** (1 - w/2)`` and the
  decay coefficient by ``s ** (w/2)``.

  Why: for a scale-invariant kernel of size n, steps of size lr per entry
  and a decoupled decay lr · wd per update settle its squared norm near
  n · lr / (2 wd), and move its direction by about lr / norm per update.
  Under ``ShapedCosine`` (lr ∝ s, wd fixed) the norm² shrinks ∝ s and the
  angular step goes ∝ sqrt(s); BatchNorm's running statistics then lag the
  shrinking kernel, 1.2-3.2× in variance on six BatchNorm CNNs, and their
  test loss in evaluation mode was up to 5× what the same weights give with
  the statistics recomputed. Here lr · wd (the decay per update) is ∝ s as
  before and lr / wd is constant: the norm stays put and the angular step
  is still ∝ sqrt(s). ``InvariantDecayCosine`` keeps the norm too, but its
  angular step goes ∝ s, faster than the LO was meta-trained with
  (docs/meta-training-runs.md, eighteenth session). Tensors without decay
  (vectors) anneal by ``s``. On nine BatchNorm models over mulo-m's θ it
  read 0.70× mulo-m's test loss (worst 1.05×), with z read per update.
  No shipped LO uses it: one update's z misfires on a few percent of an
  ordinary tensor's updates, and late in training each misfire took a step
  up to s^(-1/2) times ShapedCosine's (the screen's long wine table: +7%, a
  2.1× spike). Since then the rules read z averaged over updates
  (``averaged_alignment``): that fixes the misfires, but on BatchNorm models
  it trades harder (five CNNs 0.11-0.83×, one 1.42×, three table MLPs
  1.06-1.08×; docs/meta-training-runs.md, eighteenth session)."""
  decay_exponent: float | None = None

  def __post_init__(self):
    if self.decay_exponent is not None:
      raise ValueError("NormKeepingCosine sets the decay's annealing itself: leave "
                       f"decay_exponent unset, got {self.decay_exponent!r}.")
    super().__post_init__()

  def changes_decay(self) -> bool:
    return True

  def __call__(self, theta, step, ctx):
    s = self.shaped_factor(theta, ctx)
    if s is None:
      return step
    if step.wd is None:
      return Step(step.direction, step.lr * s, None)
    half = 0.5 * self.weight(ctx)
    return Step(step.direction, step.lr * s ** (1.0 - half), step.wd * s ** half)


class BudgetScales(StepRule):
  """Base of the rules that scale a tensor's step and decoupled decay by a
  (step, weight decay) pair of multipliers in ``[1/bound, bound]`` read from
  what the user planned (``multipliers_of(theta, ctx)``) and θ's ``w`` [2, 2],
  zero-initialized, so θ = 0 changes nothing."""
  bound: float = 10.0

  def __post_init__(self):
    if not (isinstance(self.bound, (int, float)) and not isinstance(self.bound, bool)
            and 1 <= self.bound < 1e6):
      raise ValueError(f"{type(self).__name__}: bound must be a float in [1, 1e6), "
                       f"got {self.bound!r}.")

  def init(self, key):
    del key
    return {"w": jnp.zeros((2, 2), jnp.float32)}

  def multipliers_of(self, theta, ctx) -> jax.Array:
    raise NotImplementedError

  def __call__(self, theta, step, ctx):
    mult = self.multipliers_of(theta, ctx)
    return Step(step.direction, step.lr * mult[0],
                None if step.wd is None else step.wd * mult[1])


@dataclasses.dataclass(frozen=True)
class EpochScales(BudgetScales):
  """Step and weight-decay multipliers from the data budget: ``epochs``, the
  planned passes over the training data (``update(..., epochs=)``), and the
  passes made so far, ``epochs · t / num_steps``. Each multiplier is
  ``bound ** tanh(w · [log1p(epochs), log1p(passes)])`` with θ's ``w`` [2, 2]
  zero-initialized (multipliers 1), and 1 without ``epochs`` (or with 0, fresh
  data every step). A user knows the budget, a tuned learning rate reflects
  it, and the gradient statistics do not show it: with few examples trained
  long, the best step and regularization differ from those for a large set."""
  bound: float = 10.0
  theta_key: ClassVar[str] = "epochs"
  reads_epochs: ClassVar[bool] = True

  def multipliers(self, theta, epochs, count, num_steps) -> jax.Array:
    """[step, weight decay] multipliers at update ``count``."""
    if epochs is None:
      return jnp.ones((2,), jnp.float32)
    total = jnp.maximum(jnp.asarray(epochs, jnp.float32), 0.0)
    frac = step_rules.training_fraction(count, num_steps)
    x = jnp.log1p(jnp.stack([total, total * frac]))
    return bounded(theta["w"] @ x, self.bound)

  def multipliers_of(self, theta, ctx):
    return self.multipliers(theta, ctx.epochs, ctx.count, ctx.num_steps)


@dataclasses.dataclass(frozen=True)
class HorizonScales(BudgetScales):
  """Step and weight-decay multipliers from the planned length of training:
  per μP group (input, hidden), ``bound ** tanh(w[group] · log(num_steps /
  reference))``, θ's ``w`` [2 groups, (step, decay)] zero-initialized; 1 at
  ``num_steps = reference`` whatever θ, and 1 without ``num_steps``. The LO's
  schedule and head read the fraction of training done, not its length, so
  one θ cannot give a 100-step run the larger step it wants and a 3,000-step
  run the smaller one; meta-trained at 50-2,000-step episodes, a20's θ moved
  toward the short runs' step and lost at 1,000-3,000
  (results/probes/horizon_drift.txt). A tuned learning rate depends on the
  horizon in the same way. No shipped LO has it: the mulo-a22-cpu run, which
  learned only its 4 scalars, found no consistent horizon effect."""
  reference: float = 1000.0
  bound: float = 10.0
  theta_key: ClassVar[str] = "horizon"
  requires_num_steps: ClassVar[str] = ("its step and decay depend on the planned length of "
                                       "training (the HorizonScales step rule)")

  def __post_init__(self):
    super().__post_init__()
    if not (isinstance(self.reference, (int, float)) and not isinstance(self.reference, bool)
            and 1 <= self.reference < 1e12):
      raise ValueError(f"HorizonScales: reference must be a number of steps in [1, 1e12), "
                       f"got {self.reference!r}.")

  def multipliers(self, theta, num_steps, group: int) -> jax.Array:
    """[step, weight decay] multipliers of a tensor of μP group ``group``."""
    if num_steps is None:
      return jnp.ones((2,), jnp.float32)
    x = jnp.log(jnp.maximum(jnp.asarray(num_steps, jnp.float32), 1.0) / self.reference)
    return bounded(theta["w"][group] * x, self.bound)

  def multipliers_of(self, theta, ctx):
    return self.multipliers(theta, ctx.num_steps, ctx.group)


@dataclasses.dataclass(frozen=True)
class GradientRestraint(StepRule):
  """Slows a tensor whose gradient has shrunk since update 1: with r = rms g /
  rms g₁, the gradient step × ``clip(r ** α, 1/bound, 1)`` and the decoupled
  decay (wd · lr) × ``clip(r ** β, 1/bound, 1)``, ``α = max(alpha[group] +
  θ.alpha[group], 0)``, ``β = max(beta[group] + θ.beta[group], 0)``. ``alpha`` and
  ``beta`` are one float for every tensor or an (input group, hidden group)
  pair (μP's groups: input-like tensors, vectors included, and hidden-like
  matrices). Adam's direction is scale-free, so once a small training set is
  memorized it keeps moving at the full step and the test loss climbs; a
  tuned AdamW holds back with a small learning rate. Over ``mulo-m``'s θ,
  α = β = 0.5 took the screen LM from 2.41 to 2.30 and the held-out LM from
  1.81 to 1.73 (tuned AdamW 1.78), but the held-out iris and breast-cancer
  MLPs lose 26% and 9% (results/probes/restraint_screen8.txt,
  results/heldout-adaptive-cpu/restraint8). On the screen the LM's and the
  CNN's gains come from the hidden group, while restraining the input group
  costs the wine tables 15-35% (results/probes/restraint_groups_screen8.txt).
  It only slows (never > 1) and at most by ``bound``; ``alpha = beta = 0``
  and θ = 0 change nothing."""
  alpha: float | tuple = 0.5
  beta: float | tuple = 0.5
  bound: float = 10.0
  theta_key: ClassVar[str] = "restraint"

  def __post_init__(self):
    step_rules.pairs_as_tuples(self, "alpha", "beta")
    ok = lambda x, lo: (isinstance(x, (int, float)) and not isinstance(x, bool)
                        and lo <= x < 1e6)
    per_group = lambda x: ok(x, 0.0) or (isinstance(x, tuple) and len(x) == 2
                                         and all(ok(v, 0.0) for v in x))
    if not (per_group(self.alpha) and per_group(self.beta) and ok(self.bound, 1.0)):
      raise ValueError(f"GradientRestraint: alpha and beta must each be a float in [0, 1e6) or "
                       f"an (input group, hidden group) pair of them, and bound a float in "
                       f"[1, 1e6); got alpha={self.alpha!r}, beta={self.beta!r}, "
                       f"bound={self.bound!r}.")

  def hand(self, group: int) -> tuple[float, float]:
    """The hand (α, β) of μP group ``group`` (0: input, 1: hidden)."""
    pick = lambda x: float(x[group] if isinstance(x, tuple) else x)
    return pick(self.alpha), pick(self.beta)

  def init(self, key):
    del key  # per μP group, added to ``alpha`` and ``beta``
    return {"alpha": jnp.zeros((2,), jnp.float32), "beta": jnp.zeros((2,), jnp.float32)}

  def multipliers(self, theta, feats: jax.Array, group: int) -> jax.Array:
    """[gradient step, decay] multipliers of one tensor."""
    # grad_trend is log(rms g / rms g₁) clipped to ±10, over 3.
    log_ratio = jnp.minimum(3.0 * feats[TENSOR_FEATURES.index("grad_trend")], 0.0)
    alpha, beta = self.hand(group)
    expo = jnp.maximum(jnp.stack([alpha + theta["alpha"][group],
                                  beta + theta["beta"][group]]), 0.0)
    return jnp.exp(jnp.clip(expo * log_ratio, -np.log(self.bound), 0.0))

  def __call__(self, theta, step, ctx):
    m_step, m_decay = self.multipliers(theta, ctx.acc.feats, ctx.group)
    return Step(step.direction, step.lr * m_step,
                None if step.wd is None else step.wd * (m_decay / m_step))


step_rules.RULES.update({cls.__name__: cls for cls in
                         (AdamDirection, MeanFreeAdamDirection, TensorAdaptive,
                          ShapedCosine, InvariantDecayCosine, NormKeepingCosine, EpochScales,
                          HorizonScales, GradientRestraint)})


def default_rules(lr_input: float = 1e-3, lr_hidden: float = 0.25, weight_decay: float = 0.1,
                  bound: float = 10.0) -> tuple:
  """μAdamW's step size rules with the three learned parts (θ = 0: none of them acts)."""
  return (AdamDirection(), WeightDecay(weight_decay), LearnedScales(), TensorAdaptive(bound),
          GroupBase(lr_input, lr_hidden), ShapedCosine())


# ---------------------------------------------------------------- the LO
@dataclasses.dataclass(frozen=True)
class AdaptiveLOpt:
  """Config of the adaptive LO (hashable: usable as a jit static)."""
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  residual_hidden: int = 8
  mup: bool = True
  # μP's 1/fan_in on the data dimension: dense input matrices ("input" kind)
  # step × input_fan_in / fan_in, embeddings unchanged (lopt.mup's docstring).
  # None: μP as the μLO paper has it (one input step for every d). Not in
  # the record at None, so the records written before this field load strictly.
  input_fan_in: float | None = None
  # The step rules, in order; ``default_rules()`` is μAdamW plus the learned parts.
  step: tuple = dataclasses.field(default_factory=default_rules, metadata={"custom_args": dict(
      type=step_rules.parse, nargs=None, metavar="RULES")})
  # "auto": the fused Pallas update on GPU, XLA elsewhere; "xla": the reference;
  # "pallas": the kernels everywhere (interpret mode off GPU: slow, for tests).
  # Step rules the kernels do not support run in XLA whatever this says
  # (``lopt.kernels.adaptive_supports``). Not in the record at its default
  # ("auto"), so the records written before this field still load strictly.
  backend: str = "auto"

  def __post_init__(self):
    for name in ("b1", "b2"):
      if not 0 <= getattr(self, name) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")
    if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
      raise ValueError(f"eps must be a float in (0, 1), got {self.eps!r}.")
    if not (isinstance(self.residual_hidden, int) and self.residual_hidden >= 1):
      raise ValueError(f"residual_hidden must be an int >= 1, got {self.residual_hidden!r}.")
    if self.input_fan_in is not None and not (
        isinstance(self.input_fan_in, (int, float)) and not isinstance(self.input_fan_in, bool)
        and 0 < self.input_fan_in < float("inf")):
      raise ValueError(f"input_fan_in must be a positive finite float (the data dimension "
                       f"at which dense input layers keep their base step) or None, got "
                       f"{self.input_fan_in!r}.")
    if self.backend not in kernels.BACKENDS:
      raise ValueError(f"backend must be one of {kernels.BACKENDS}, got {self.backend!r}.")
    step_rules.check(self.step)
    if not any(isinstance(r, AdamDirection) for r in self.step):
      raise ValueError("AdaptiveLOpt's step rules need AdamDirection(): its network outputs "
                       "a residual on Adam's direction.")

  @property
  def reads_epochs(self) -> bool:
    """Whether a step rule reads ``epochs`` (``update(..., epochs=)``)."""
    return any(getattr(r, "reads_epochs", False) for r in self.step)

  @property
  def reads_alignment(self) -> bool:
    """Whether a step rule reads each tensor's ``alignment_z`` (one more
    reduction, of g·p, per tensor and update)."""
    return any(getattr(r, "reads_alignment", False) for r in self.step)

  def to_record(self) -> dict[str, Any]:
    record = config_record(self)
    if self.backend == "auto":  # how it runs, not what it computes (see the field)
      del record["backend"]
    if self.input_fan_in is None:  # see the field
      del record["input_fan_in"]
    return record

  @classmethod
  def from_record(cls, record: dict[str, Any]) -> "AdaptiveLOpt":
    check_record_fields(cls, record)
    return cls(**{**record, "step": step_rules.from_record(record.get("step", []))})

  # ---------------------------------------------------------------- θ
  def init(self, key: jax.Array) -> dict:
    """θ: random first layers, zero output layers and scales (θ's effect is 0)."""
    keys = jax.random.split(key, len(self.step) + 2)
    nf, ne, h = NUM_TENSOR_FEATURES, NUM_ELEMENT_FEATURES, self.residual_hidden
    normal = lambda k, shape: jax.random.normal(k, shape, jnp.float32) / np.sqrt(ne + nf)
    theta = {"residual": {"w0": normal(keys[0], (ne, h)), "w_ctx": normal(keys[1], (nf, h)),
                          "b0": jnp.zeros((h,), jnp.float32),
                          "w1": jnp.zeros((h,), jnp.float32), "b1": jnp.zeros((), jnp.float32)}}
    for k, rule in zip(keys[2:], self.step):
      if rule.theta_key:
        theta[rule.theta_key] = rule.init(k)
    return theta

  def check_theta(self, theta: Any) -> None:
    check_theta_tree(jax.eval_shape(self.init, jax.random.PRNGKey(0)), theta, self)

  # ---------------------------------------------------------------- state
  def init_state(self, params: Any) -> AdaptiveLOptState:
    check_param_dtypes(params)
    zero = jnp.zeros((), jnp.float32)

    def one(p):
      z = jnp.zeros(np.shape(p), jnp.float32)
      return AdaptiveTensorState(z, z, zero, zero, jnp.ones((2,), jnp.float32),
                                 zero if self.reads_alignment else None)
    return AdaptiveLOptState(jnp.zeros((), jnp.int32), jax.tree_util.tree_map(one, params),
                             zero, zero, jnp.zeros((), jnp.int32))

  # ---------------------------------------------------------------- update
  @staticmethod
  def _loss_features(state: AdaptiveLOptState, loss: Any):
    """((has_loss, log-loss progress since update 1, log-loss trend), (loss0, ema))."""
    if loss is None:
      z = jnp.zeros((), jnp.float32)
      return (z, z, z), (state.log_loss0, state.log_loss_ema)
    first = state.count == 0
    log_loss = jnp.log(jnp.maximum(jnp.asarray(loss, jnp.float32), 1e-30))
    ok = jnp.isfinite(log_loss)
    log_loss = jnp.where(ok, log_loss, state.log_loss_ema)
    loss0 = jnp.where(first, log_loss, state.log_loss0)
    ema = jnp.where(first, log_loss, state.log_loss_ema)
    progress = jnp.clip(log_loss - loss0, -10.0, 2.0) / 3.0
    trend = jnp.clip(log_loss - ema, -2.0, 2.0)
    new_ema = LOSS_EMA * ema + (1 - LOSS_EMA) * log_loss
    return (ok.astype(jnp.float32), progress, trend), (loss0, new_ema)

  def _residual(self, theta: dict, stats: TensorStats, g: jax.Array, p: jax.Array) -> jax.Array:
    """(c): the per-element network's raw output (AdamDirection bounds and adds it)."""
    res = theta["residual"]
    xs = self.element_features(stats.m_hat, stats.v_hat, g, p,
                               jax.lax.rsqrt(jnp.mean(jnp.square(p)) + _TINY))
    return self.residual_network(xs, self.residual_bias(res, stats.feats), res["w0"], res["w1"],
                                 res["b1"])

  # The per-element pieces, shared with the fused kernel (lopt.kernels.fused_adaptive).
  def element_features(self, m_hat, v_hat, g, p, p_scale) -> tuple:
    """The network's scale-free inputs (``ELEMENT_FEATURES``); ``p_scale`` is
    ``rsqrt(mean(p²))`` over the tensor."""
    inv = 1.0 / (jnp.sqrt(v_hat) + self.eps)
    return (m_hat * inv, jnp.clip(g * inv, -10.0, 10.0), p * p_scale)

  @staticmethod
  def residual_bias(res: dict, feats: jax.Array) -> jax.Array:
    """The tensor context, per hidden unit: the first layer's bias."""
    return feats @ res["w_ctx"] + res["b0"]

  def residual_network(self, xs: tuple, bias: Any, w0: Any, w1: Any, b1: Any) -> jax.Array:
    """The per-element network's raw output from its inputs; ``bias[j]``,
    ``w0[i, j]``, ``w1[j]`` and ``b1`` are read one scalar at a time."""
    # Written out unit by unit, not as matmuls over a stacked [..., 3] array:
    # with 3 inputs and 8 units XLA then fuses the whole network into one
    # elementwise pass (2.6x faster LO update on CPU, scripts/bench_meta.py).
    out = b1
    for j in range(self.residual_hidden):
      h = bias[j]
      for i, x in enumerate(xs):
        h = h + x * w0[i, j]
      out = out + jax.nn.relu(h) * w1[j]
    return out

  def tensor_features(self, frac, loss_feats, count, ts: AdaptiveTensorState, group: int,
                      ndim: int, mean_g2, mean_p2, mean_m_hat2, mean_v_hat):
    """(feats [NUM_TENSOR_FEATURES], log_g0, log_p0) of a tensor from its pooled
    means: of g², p², m̂² and v̂."""
    first = count == 1
    log_g, log_p = _log_sqrt(mean_g2), _log_sqrt(mean_p2)
    log_g0 = jnp.where(first, log_g, ts.log_g0)
    log_p0 = jnp.where(first, log_p, ts.log_p0)
    snr = _log_sqrt(mean_m_hat2) - 0.5 * jnp.log(mean_v_hat + _TINY)
    onehot = (float(ndim >= 2 and group == 0), float(group == 1), float(ndim < 2))
    feats = jnp.stack([frac, jnp.clip(log_g - log_g0, -10.0, 10.0) / 3.0,
                       jnp.clip(snr, -5.0, 1.0), jnp.clip(log_p - log_p0, -5.0, 5.0),
                       *loss_feats, *(jnp.float32(x) for x in onehot)])
    # Statistics beyond float32 (g² overflowing) can give inf - inf: read 0.
    return jnp.where(jnp.isnan(feats), 0.0, feats), log_g0, log_p0

  def seen_multipliers(self, theta: dict, feats: jax.Array, group: int) -> jax.Array:
    """[step, weight decay] multipliers for the state: TensorAdaptive's times
    GradientRestraint's (1, 1 without either)."""
    mults = jnp.ones((2,), jnp.float32)
    for rule in self.step:
      if isinstance(rule, TensorAdaptive):
        mults = mults * rule.multipliers(theta[rule.theta_key], feats)
      elif isinstance(rule, GradientRestraint):
        m_step, m_decay = rule.multipliers(theta[rule.theta_key], feats, group)
        mults = mults * jnp.stack([m_step, m_decay / m_step])  # the decay is wd · lr
    return mults

  def _xla_tensor_update(self, mult: float, group: int, theta: dict, g: jax.Array, p: jax.Array,
                         ts: AdaptiveTensorState, count: jax.Array, num_steps: Any, loss: Any,
                         frac: jax.Array, loss_feats: tuple, corrections: tuple,
                         epochs: Any = None):
    """The reference update of one tensor: (update, new state, non-finite count).
    ``corrections``: Adam's bias corrections (1 - b1^t, 1 - b2^t), computed once
    per update (inside each tensor's fusion XLA would round them differently)."""
    g, bad = sanitize_grad(g)
    p32 = jnp.asarray(p, jnp.float32)
    bc1, bc2 = corrections
    m = self.b1 * ts.m + (1 - self.b1) * g
    v = self.b2 * ts.v + (1 - self.b2) * jnp.square(g)
    m_hat, v_hat = m / bc1, v / bc2
    mean_g2, mean_p2 = jnp.mean(jnp.square(g)), jnp.mean(jnp.square(p32))
    feats, log_g0, log_p0 = self.tensor_features(
        frac, loss_feats, count, ts, group, np.ndim(p), mean_g2, mean_p2,
        jnp.mean(jnp.square(m_hat)), jnp.mean(v_hat))
    n = int(np.size(p))  # the pooled means as sums, for the alignment of g and p
    alignment, log_z = None, ts.log_z
    if self.reads_alignment:
      alignment, log_z = averaged_alignment(
          alignment_z(jnp.sum(g * p32), mean_g2 * n, mean_p2 * n, n), count == 1, ts.log_z)
    stats = TensorStats(m_hat, v_hat, self.eps, feats, alignment)
    ctx = step_rules.TensorContext(g, p, mult, group, count, num_steps, loss, stats,
                                   (self.b1, self.b2), epochs)
    u = step_rules.apply(self.step, theta, Step(self._residual(theta, stats, g, p32)), ctx)
    seen = self.seen_multipliers(theta, feats, group)
    return u, AdaptiveTensorState(m, v, log_g0, log_p0, seen, log_z), bad

  def update(self, theta: dict, grads: Any, state: AdaptiveLOptState, params: Any, *,
             num_steps: int | None = None, mup: Any = None, loss: Any = None,
             epochs: Any = None) -> tuple[Any, AdaptiveLOptState]:
    """Functional update: (updates, new_state); updates are added to params.
    ``epochs``: the planned passes over the training data (num_steps × batch
    size ÷ training examples), read by ``EpochScales``; None: unknown."""
    if params is None:
      raise ValueError("The learned optimizer reads parameter values: call "
                       "update(grads, state, params) with params.")
    check_num_steps(num_steps)
    check_epochs(epochs)
    count = state.count + 1
    t = count.astype(jnp.float32)
    frac = step_rules.training_fraction(count, num_steps)
    loss_feats, (log_loss0, log_loss_ema) = self._loss_features(state, loss)
    corrections = (1.0 - self.b1 ** t, 1.0 - self.b2 ** t)
    use_kernels = kernels.use_pallas(self.backend) and kernels.adaptive_supports(self.step)

    def one(g, p, ts: AdaptiveTensorState, mult, group):
      args = (theta, g, p, ts, count, num_steps, loss, frac, loss_feats, corrections)
      if use_kernels and kernels.supports(p) and kernels.supports(g):
        return kernels.adaptive_tensor_update(
            self, mult, group, *args,
            reference=functools.partial(self._xla_tensor_update, mult, group),
            interpret=kernels.interpret_mode())
      return self._xla_tensor_update(mult, group, *args, epochs=epochs)

    updates, tensors, nonfinite = map_tensors(
        self, one, grads, params, state.tensors, lambda x: isinstance(x, AdaptiveTensorState), mup)
    return updates, AdaptiveLOptState(count, tensors, log_loss0, log_loss_ema,
                                      state.nonfinite + nonfinite)

  # ---------------------------------------------------------------- optax
  def as_optax(self, theta: dict, num_steps: int | None = None, mup: Any = None,
               epochs: float | None = None) -> optax.GradientTransformationExtraArgs:
    """The LO at fixed θ as an optax transformation; ``update(..., loss=)`` is
    optional (the head then reads gradient statistics only). ``num_steps`` is
    required: the step follows a cosine schedule over it, and the head reads
    the fraction of training. ``epochs`` (optional): the planned passes over
    the training data, for the step rules that read it (``EpochScales``)."""
    needs = [r.requires_num_steps for r in self.step if r.requires_num_steps]
    needs.append("it reads the fraction of training t/num_steps")
    return optax_from_lo(self, theta, num_steps, mup, needs, epochs=epochs)
