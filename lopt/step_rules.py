"""Step rules: how an LO turns its network's output into the update of one tensor.

An LO form is a tuple of rules, applied in order to a ``Step`` per tensor:

    step = Step(direction=<the network's step>, lr=1.0, wd=None)
    for rule in lo.step: step = rule(theta.get(rule.theta_key), step, ctx)
    update = step.direction * step.lr  [- step.wd * step.lr * p, on matrices, if wd is set]

- ``Step.direction``: per-element, signed as the update (added to params). It
  starts as the network's raw step ``-d·exp(exp_mult·m)·step_mult·μP``, which
  already carries its step size (so ``lr`` starts at 1): the reference μLO is
  the empty tuple. A rule that makes the direction scale-free (``RMSNormalize``)
  hands the step size to ``lr``.
- ``Step.lr``: this tensor's step size (a scalar; Python float or traced). The
  decoupled weight decay uses it too, as AdamW does with its learning rate.
- ``Step.wd``: the decoupled weight-decay coefficient, None for none.
- ``ctx`` (``TensorContext``): what a rule may read about the tensor: the
  sanitized float32 gradient ``g``, the param ``p``, its μP multiplier ``mult``
  and step group ``group`` (0 input/vector, 1 hidden-like; static Python
  values), the update number ``count`` (1-based), ``num_steps`` (or None),
  ``loss`` (or None), the updated accumulators ``acc`` and their ``decays``,
  ``epochs``, the planned passes over the training data (or None), and ``ndim``,
  the param's rank (``rank(ctx)`` reads it; the fused kernels pass no ``p``).
  Pool over the tensor (``jnp.mean(...)``) for a per-tensor multiplier.

A rule is a frozen dataclass (hashable: the LO stays a jit static) with
``__call__(theta, step, ctx) -> Step``. One that learns owns ``theta[theta_key]``,
made by its ``init(key)``, zero-initialized so that θ=0 changes nothing.
``requires_num_steps`` (a reason, or None) makes ``as_optax`` demand num_steps;
``check(rules)`` rejects a composition that cannot work. Add a rule: write the
class here, register it in ``RULES`` (the name is its record in metadata.json),
and test it alone (tests/test_step_rules.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp


class Step(NamedTuple):
  direction: jax.Array
  lr: Any = 1.0
  wd: Any = None


class TensorContext(NamedTuple):
  g: jax.Array          # float32, non-finite elements zeroed
  p: jax.Array
  mult: float           # μP multiplier (1/fan_in for hidden-like tensors, else 1)
  group: int            # μP step group: 0 input/vector, 1 hidden-like
  count: jax.Array      # int32, the number of this update (1-based)
  num_steps: Any        # planned number of updates, or None
  loss: Any = None      # the inner loss, or None
  acc: Any = None       # lopt.features.TensorAcc after this gradient
  decays: Any = None    # lopt.features.Decays in use
  epochs: Any = None    # planned passes over the training data (``epochs=``), or None
  ndim: int | None = None  # the param's rank (static); None: read it from ``p``


class StepRule:
  """Base of the rules (see the module docstring)."""
  theta_key: ClassVar[str | None] = None
  requires_num_steps: ClassVar[str | None] = None

  def init(self, key: jax.Array) -> Any:
    del key
    return None

  def check(self, rules: tuple) -> None:
    del rules

  def __call__(self, theta: Any, step: Step, ctx: TensorContext) -> Step:
    raise NotImplementedError


def rms_normalize(u: jax.Array) -> jax.Array:
  """``u / rms(u)`` over the whole tensor; 0 where ``u`` is all 0."""
  ms = jnp.mean(jnp.square(u))
  return jnp.where(ms > 0, u * jax.lax.rsqrt(jnp.where(ms > 0, ms, 1.0)), 0.0)


def rank(ctx: TensorContext) -> int:
  """The param's rank (static): ``ctx.ndim``, else ``p``'s."""
  return int(ctx.ndim if ctx.ndim is not None else jnp.ndim(ctx.p))


def has_gradient(g: jax.Array) -> jax.Array:
  """Whether any element of the (finite) gradient is nonzero: one max-reduction."""
  return jnp.max(jnp.abs(g), initial=0.0) > 0


def training_fraction(count: jax.Array, num_steps) -> jax.Array:
  """``count / num_steps`` clipped to [0, 1] (float32); 0 without ``num_steps``."""
  if num_steps is None:
    return jnp.zeros((), jnp.float32)
  return jnp.clip(jnp.asarray(count, jnp.float32) / num_steps, 0.0, 1.0)


def cosine_factor(count: jax.Array, num_steps) -> jax.Array | None:
  """0.5 (1 + cos(π t / num_steps)) at update ``count`` (clipped past the end);
  None without ``num_steps``."""
  if num_steps is None:
    return None
  return 0.5 * (1.0 + jnp.cos(jnp.pi * training_fraction(count, num_steps)))


def _positive(owner, **values) -> None:
  for name, v in values.items():
    if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
      raise ValueError(f"{owner}: {name} must be a positive finite float, got {v!r}.")


@dataclasses.dataclass(frozen=True)
class RMSNormalize(StepRule):
  """Celo2's robust step: the direction gets RMS 1 over the tensor (0 for a
  tensor without gradient), so the step size is ``lr`` whatever θ outputs."""
  unit_direction: ClassVar[bool] = True

  def __call__(self, theta, step, ctx):
    d = rms_normalize(step.direction.astype(jnp.float32))
    return step._replace(direction=jnp.where(has_gradient(ctx.g), d, 0.0))


@dataclasses.dataclass(frozen=True)
class GroupBase(StepRule):
  """Base step per μP group, times the μP multiplier: ``lr *= base * mult``,
  ``base`` being ``hidden`` for hidden-like matrices, ``input`` for input-like
  ones (first layers, embeddings) and ``vector`` for vectors (biases, norm
  scales; None: ``input``, as μP groups them). The separate vector base lets
  the input matrices' step move without the biases' (on the broad screen,
  the shipped mulo-m's input matrices ×0.3 read 0.943× its test loss, its
  vectors ×0.1 1.076×: results/probes/input_matrix.txt; held out the ×0.3
  candidate lost, 1.055×, so no shipped LO sets it)."""
  input: float = 0.01
  hidden: float = 0.01
  vector: float | None = None

  def __post_init__(self):
    _positive(self, input=self.input, hidden=self.hidden)
    if self.vector is not None:
      _positive(self, vector=self.vector)

  def check(self, rules):
    # A base step needs a size-free direction: RMSNormalize's, or Adam's
    # (``lopt.adaptive.AdamDirection``); the raw μLO step carries its own size.
    if not any(getattr(r, "unit_direction", False) for r in rules):
      raise ValueError("GroupBase needs RMSNormalize() or AdamDirection() in the same step "
                       "rules, to make the direction size-free: the network's raw step "
                       "already carries its size.")

  def base(self, group: int, ndim: int) -> float:
    """The base step of a tensor of μP group ``group`` and rank ``ndim``."""
    if group == 1:
      return self.hidden
    return self.vector if (ndim < 2 and self.vector is not None) else self.input

  def __call__(self, theta, step, ctx):
    return step._replace(lr=step.lr * self.base(ctx.group, rank(ctx)) * ctx.mult)


@dataclasses.dataclass(frozen=True)
class WeightDecay(StepRule):
  """Decoupled weight decay on matrices: ``update -= coef * lr * p``."""
  coef: float = 0.1

  def __post_init__(self):
    _positive(self, coef=self.coef)

  def check(self, rules):
    if not any(isinstance(r, GroupBase) for r in rules):
      raise ValueError("WeightDecay needs GroupBase() in the same step rules: the decay is "
                       "relative to the tensor's step size lr.")

  def __call__(self, theta, step, ctx):
    return step._replace(wd=self.coef)


@dataclasses.dataclass(frozen=True)
class LearnedScales(StepRule):
  """θ tunes each group's step and the weight decay by ``exp(θ)`` (θ=0: no change)."""
  theta_key: ClassVar[str] = "scales"

  def init(self, key):
    return {"log_lr": jnp.zeros((2,), jnp.float32), "log_wd": jnp.zeros((), jnp.float32)}

  def __call__(self, theta, step, ctx):
    wd = None if step.wd is None else step.wd * jnp.exp(theta["log_wd"])
    return Step(step.direction, step.lr * jnp.exp(theta["log_lr"][ctx.group]), wd)


@dataclasses.dataclass(frozen=True)
class Cosine(StepRule):
  """``lr *= 0.5 (1 + cos(π t / num_steps))``: anneals to 0 at any horizon;
  past num_steps it stays 0."""
  requires_num_steps: ClassVar[str] = ("its step follows a cosine schedule over num_steps "
                                       "(the Cosine step rule); without it the schedule "
                                       "would silently be constant")

  def __call__(self, theta, step, ctx):
    factor = cosine_factor(ctx.count, ctx.num_steps)
    return step if factor is None else step._replace(lr=step.lr * factor)


RULES: dict[str, type] = {cls.__name__: cls for cls in
                          (RMSNormalize, GroupBase, WeightDecay, LearnedScales, Cosine)}


def run(rules: tuple, theta: dict, step: Step, ctx: TensorContext) -> Step:
  """``rules`` applied to ``step`` in order (each reads its own part of θ)."""
  for rule in rules:
    step = rule(theta.get(rule.theta_key) if rule.theta_key else None, step, ctx)
  return step


def decays(wd: Any, ndim: int) -> bool:
  """Whether the decoupled weight decay ``wd`` acts on a tensor of rank ``ndim``
  (matrices and kernels only)."""
  return wd is not None and ndim >= 2


def apply(rules: tuple, theta: dict, step: Step, ctx: TensorContext) -> jax.Array:
  """Run ``rules`` on ``step``; the update of the tensor, in the param's dtype."""
  step = run(rules, theta, step, ctx)
  u = step.direction
  if not (isinstance(step.lr, float) and step.lr == 1.0):
    u = u * step.lr
  if decays(step.wd, jnp.ndim(ctx.p)):
    u = u - (step.wd * step.lr) * jnp.asarray(ctx.p, jnp.float32)
  return u.astype(jnp.result_type(ctx.p))


def check(rules: tuple) -> None:
  """Raise a ValueError for a composition that cannot work (or a θ-key clash)."""
  if not isinstance(rules, tuple) or not all(isinstance(r, StepRule) for r in rules):
    raise ValueError(f"step must be a tuple of lopt.step_rules rules, got {rules!r}.")
  keys = [r.theta_key for r in rules if r.theta_key]
  if len(set(keys)) != len(keys) or {"mlp", "decay_logits"} & set(keys):
    raise ValueError(f"step rules own clashing θ keys {keys}.")
  for rule in rules:
    rule.check(rules)


def pairs_as_tuples(rule: Any, *names: str) -> None:
  """In a frozen rule's ``__post_init__``: fields that take a pair, given as a
  list (the JSON record's form, or by hand), become tuples, so the rule stays
  hashable (a jit static)."""
  for name in names:
    if isinstance(getattr(rule, name), list):
      object.__setattr__(rule, name, tuple(getattr(rule, name)))


def to_record(rules: tuple) -> list[dict]:
  """JSON form: ``[{"rule": "GroupBase", "input": 0.002, "hidden": 0.2}, ...]``
  (a pair field as a list, as metadata.json reads back)."""
  # An optional field (default None) left at None is not written, so records
  # written before the field existed still load strictly.
  json_value = lambda v: list(v) if isinstance(v, tuple) else v
  return [{"rule": type(r).__name__, **{f.name: json_value(getattr(r, f.name))
                                        for f in dataclasses.fields(r)
                                        if not (f.default is None and getattr(r, f.name) is None)}}
          for r in rules]


def parse(text: str) -> tuple:
  """Rules from their repr, e.g. ``"RMSNormalize(), GroupBase(input=0.002, hidden=0.2)"``
  (the command-line form; ``()`` or an empty text is no rule)."""
  import ast
  out = []
  try:
    body = ast.parse(f"({text},)" if text.strip() not in ("", "()") else "()", mode="eval").body
    for call in body.elts:
      call = ast.Call(call, [], []) if isinstance(call, ast.Name) else call
      if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise ValueError(f"expected Rule(name=value, ...), got {ast.unparse(call)!r}")
      names = [f.name for f in dataclasses.fields(RULES[call.func.id])
               ] if call.func.id in RULES else []
      if len(call.args) > len(names):
        raise ValueError(f"{call.func.id} takes {len(names)} positional values")
      args = dict(zip(names, map(ast.literal_eval, call.args)))
      out.append({"rule": call.func.id, **args,
                  **{k.arg: ast.literal_eval(k.value) for k in call.keywords}})
    return from_record(out)
  except (SyntaxError, ValueError, TypeError) as e:
    raise ValueError(f"step rules {text!r} do not parse: {e}") from None


def from_record(record: list) -> tuple:
  out = []
  for item in record:
    item = dict(item)
    name = item.pop("rule", None)
    if name not in RULES:
      raise ValueError(f"unknown step rule {name!r}; this lopt knows {sorted(RULES)}.")
    out.append(RULES[name](**item))
  return tuple(out)
