"""Meta-training configuration and named presets.

A run is fully described by one ``MetaTrainConfig``; it is written into the
workdir and compared on resume, so a workdir never silently continues with a
different recipe. Presets are named overrides of the defaults; every field can
be overridden again from the command line (``scripts/meta_train.py``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any

import jax

from lopt import AdaptiveLOpt, Features, MLPLOpt, VeLOpt, adaptive, forms, protocol
from lopt.step_rules import Cosine

ESTIMATOR_NAMES = ("full_es", "truncated_es", "pes", "es_single", "tbptt")


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
  # The learned optimizer: an lopt config dataclass (``lopt.MLPLOpt`` or
  # ``lopt.VeLOpt``); its fields are the flags ``--lo.<field>`` (``--lo.features.adam``).
  # JSON: {"architecture": ..., "config": lo.to_record()}, as in metadata.json.
  lo: MLPLOpt | VeLOpt | AdaptiveLOpt = MLPLOpt()
  # Inner tasks: a named meta_tasks distribution; one estimator per static config.
  distribution: str = "tiny"
  # Truncated unrolls and the estimator.
  estimator: str = "pes"
  num_pairs: int = 8
  sigma: float = 0.01
  truncation_length: int = 50
  min_horizon: int = 100
  max_horizon: int = 1000
  # Horizon curriculum, "STEP:H,STEP:H,...": the longest horizon grows
  # log-linearly between these (outer step, horizon) knots and holds outside
  # them; the last H must be max_horizon. None: max_horizon throughout. A run
  # may resume with a new curriculum that agrees with its old schedule up to
  # the resumed step (it extends the run; it does not rewrite its past).
  horizon_curriculum: str | None = None
  # Episode lengths have density ∝ length ** -horizon_power in [min, max]
  # (training.lo_system.TruncationSchedule): 1 is log-uniform.
  horizon_power: float = 1.0
  meta_loss: str = "train"
  log_meta_loss: bool = False   # meta-loss log(normalized loss + 1e-4): weighs late training
  # Instead of the log of every step's loss: the log of each truncation's mean
  # (normalized) loss per ± member (estimators' log_mean_floor). A step's
  # validation batch is a training batch's size (8-64 rows); on a memorized
  # task the mean of per-batch logs rewards memorizing while the mean loss,
  # what a user's test loss is, grows (results/probes/batch_log_bias.txt).
  log_mean_meta_loss: bool = False
  # Only the last final_fraction of each episode's steps carry meta-loss (1: all).
  final_fraction: float = 1.0
  # Each episode's updates times a factor log-uniform in [1/spread, spread]
  # (1: off): the objective is smoothed over the global step size
  # (training.lo_system.LOTrainingSystem.step_mult_spread).
  step_mult_spread: float = 1.0
  delta_clip: float | None = None
  sign_delta: bool = False
  # Each task's meta-gradient estimate is scaled to unit norm before the mean
  # over tasks, so every task has one vote: otherwise a task whose log-loss is
  # tiny and noisy (memorized digits) outweighs the rest (trainer.combine_task_grads).
  unit_task_grads: bool = False
  # Task weights against θ₀ (group DRO): None: off. A number: every ES pair
  # also runs θ₀ (this recipe's untrained LO) on the same task sample, data and
  # batches, a third member costing half again the inner compute, and each
  # task's mean meta-loss gap to θ₀ is tracked as an EMA with factor dro_ema per
  # outer step (logged as ref_gap/<task>: below 0, θ beats θ₀ there). The tasks'
  # meta-gradients are then weighted by softmax(dro_eta · max(gap, −1/dro_eta))
  # × tasks (mean 1; trainer.dro_weights), so the tasks on which θ does worst
  # against θ₀ steer it, and those far ahead keep a share (0: equal weights, the
  # gaps only logged). Needs es_single or pes.
  dro_eta: float | None = None
  dro_ema: float = 0.995
  # Averaged θ: 0: off. d in (0, 1): the run also keeps θ̄ ← d·θ̄ + (1 − d)·θ
  # after every outer step (θ̄ = θ at step 0), and θ̄ is what it validates,
  # checkpoints as its θ item and exports. Near a stationary point of the
  # meta-objective the outer Adam's step does not shrink with the estimate's
  # signal, so θ walks at random (runs a6-a10, docs/meta-training-runs.md);
  # the average over ~1/(1 − d) steps cancels that walk's noise.
  theta_ema: float = 0.0
  # Outer optimizer: AdamW, warmup then cosine from outer_lr to outer_final_lr.
  outer_steps: int = 5000
  outer_lr: float = 3e-3
  outer_final_lr: float = 1e-3
  warmup_steps: int = 100
  weight_decay: float = 1e-4
  clip_norm: float = 1.0
  # Parts of θ that meta-training leaves as they are, "PATH,PATH" (dotted θ
  # keys: "scales,adapt.b1"): never perturbed, never updated. None: all of θ.
  frozen: str | None = None
  seed: int = 0
  # Warm start: a pretrained LO (a shipped name or an export directory such as
  # WORKDIR/export_best) whose θ is this run's θ at outer step 0, with a fresh
  # outer optimizer; its LO config must be ``lo``. None: ``lo.init`` from ``seed``.
  init_theta: str | None = None
  # Bookkeeping (not part of the recipe: may change on resume).
  checkpoint_every: int = 100
  keep_checkpoints: int = 3
  log_every: int = 10
  wandb_project: str = "lopt"
  wandb_mode: str | None = None  # None: offline unless WANDB_MODE / WANDB_API_KEY say otherwise
  # Meta-validation (training/meta_validation.py): every validate_every outer
  # steps (0: never) and at the last one, θ trains every task of validate_suite
  # for its full horizon with validate_seeds seeds from validate_first_seed;
  # scored against θ₀, the best is exported to WORKDIR/export_best. A run that
  # starts from a θ chosen on the screen (the shipped mulo-m was, on seeds 0-7)
  # validates on other seeds: on its own seeds θ₀ reads ~3% better than it is.
  validate_every: int = 0
  validate_suite: str = "screen-user-cpu"
  validate_seeds: int = 1
  validate_first_seed: int = 0

  # Fields that may differ between a checkpoint and the command that resumes it.
  BOOKKEEPING = ("checkpoint_every", "keep_checkpoints", "log_every",
                 "wandb_project", "wandb_mode", "validate_every", "validate_suite",
                 "validate_seeds", "validate_first_seed")

  def __post_init__(self):
    validate_config(self)

  def to_json(self) -> dict[str, Any]:
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    out["lo"] = {"architecture": type(self.lo).__name__, "config": self.lo.to_record()}
    return out

  def recipe(self) -> dict[str, Any]:
    """The fields that define the run (compared on resume)."""
    return {k: v for k, v in self.to_json().items() if k not in self.BOOKKEEPING}

  def schedule(self) -> "TruncationSchedule":
    """The episode-length schedule of this recipe (with its curriculum)."""
    from training.lo_system import TruncationSchedule  # pylint: disable=import-outside-toplevel
    return TruncationSchedule(self.min_horizon, self.max_horizon,
                              _parse_curriculum(self.horizon_curriculum), self.horizon_power)

  def frozen_mask(self, theta: Any) -> Any:
    """θ-shaped 1.0 (trained) / 0.0 (under a ``frozen`` path); None if nothing is frozen."""
    if self.frozen is None:
      return None
    paths = [p.strip() for p in self.frozen.split(",") if p.strip()]
    named = jax.tree_util.tree_flatten_with_path(theta)[0]
    names = [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in kp)
             for kp, _ in named]
    inside = lambda name, p: name == p or name.startswith(p + ".")
    for p in paths or [self.frozen]:
      if not any(inside(name, p) for name in names):
        raise ConfigError("frozen", f"{p!r} names no part of θ; its parts are {names} (a "
                          "prefix such as 'scales' freezes everything under it).")
    flags = [0.0 if any(inside(name, p) for p in paths) else 1.0 for name in names]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(theta), flags)

  def replace(self, **overrides) -> "MetaTrainConfig":
    """A copy with ``overrides``; ``"lo.<field>"`` keys (``"lo.features.adam"``)
    replace fields of the learned optimizer's own config."""
    nested = {k[3:]: overrides.pop(k) for k in list(overrides) if k.startswith("lo.")}
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
    if unknown:
      raise ValueError(f"Unknown config fields {unknown}; valid fields: "
                       f"{[f.name for f in dataclasses.fields(self)]}.")
    if nested:
      overrides["lo"] = _replace_lo(overrides.get("lo", self.lo), nested)
    return dataclasses.replace(self, **overrides)


class ConfigError(ValueError):
  """An invalid ``MetaTrainConfig`` field; ``field`` names it (the CLI flag is ``--field``)."""

  def __init__(self, field: str, message: str):
    super().__init__(f"{field} {message}")
    self.field = field


# Numeric fields: (kind, lower bound, whether the bound itself is allowed).
# Every field gets the checks of its type hint (``protocol.check_value``: a
# number is finite and float32); these add the ranges. The LO's own fields
# (``lo.*``) are range-checked by the LO itself (its ``__post_init__``).
_NUMERIC_RULES: dict[str, tuple[type, float, bool]] = {
    "num_pairs": (int, 1, True),
    "sigma": (float, 0.0, False),
    "truncation_length": (int, 1, True),
    "min_horizon": (int, 1, True),
    "max_horizon": (int, 1, True),
    "horizon_power": (float, 0.0, True),
    "delta_clip": (float, 0.0, False),       # or None
    "dro_eta": (float, 0.0, True),           # or None
    "dro_ema": (float, 0.0, True),
    "theta_ema": (float, 0.0, True),
    "final_fraction": (float, 0.0, False),
    "step_mult_spread": (float, 1.0, True),
    "outer_steps": (int, 1, True),
    "outer_lr": (float, 0.0, False),
    "outer_final_lr": (float, 0.0, True),
    "warmup_steps": (int, 0, True),
    "weight_decay": (float, 0.0, True),
    "clip_norm": (float, 0.0, False),
    "seed": (int, 0, True),
    "checkpoint_every": (int, 1, True),
    "keep_checkpoints": (int, 1, True),
    "log_every": (int, 1, True),
    "validate_every": (int, 0, True),
    "validate_seeds": (int, 1, True),
    "validate_first_seed": (int, 0, True),
}
_MAX_SEED = 2**32 - 1  # jax.random.PRNGKey silently wraps larger seeds onto small ones
_WANDB_MODES = ("online", "offline", "disabled")
# (lower bound, whether it is allowed) by field, for ``protocol.check_fields``.
_BOUNDS = {name: rule[1:] for name, rule in _NUMERIC_RULES.items()}


def validate_config(config: "MetaTrainConfig") -> None:
  """Check every field of a ``MetaTrainConfig``; raise ``ConfigError`` naming the first bad one.

  Every numeric field must be a finite float32 number of its type within its
  range (``_NUMERIC_RULES``; a non-finite or out-of-range setting would
  otherwise poison θ silently), booleans must be bools and names must be known.
  The LO's fields (``lo.<field>``), already checked by the LO itself, get the
  same type checks.
  """
  if not isinstance(config.lo, tuple(protocol.architectures().values())):
    raise ConfigError("lo", f"must be one of {sorted(protocol.architectures())}, "
                      f"got {config.lo!r}.")
  protocol.check_fields(config, ConfigError, bounds=_BOUNDS)
  if config.seed > _MAX_SEED:
    raise ConfigError("seed", f"must be <= {_MAX_SEED}, got {config.seed!r}.")
  if config.estimator not in ESTIMATOR_NAMES:
    raise ConfigError("estimator", f"must be one of {ESTIMATOR_NAMES}, got {config.estimator!r}.")
  if config.dro_eta is not None and config.estimator not in ("es_single", "pes"):
    raise ConfigError("dro_eta", f"needs --estimator es_single or pes (persistent episodes "
                      f"that a θ₀ member can follow), got {config.estimator!r}.")
  for name in ("dro_ema", "theta_ema"):
    if not getattr(config, name) < 1:
      raise ConfigError(name, f"must be in [0, 1), got {getattr(config, name)!r}.")
  if config.log_mean_meta_loss and config.log_meta_loss:
    raise ConfigError("log_mean_meta_loss", "and log_meta_loss both take a log: set one.")
  if config.meta_loss not in ("train", "valid"):
    raise ConfigError("meta_loss", f"must be 'train' or 'valid', got {config.meta_loss!r}.")
  if config.wandb_mode is not None and config.wandb_mode not in _WANDB_MODES:
    raise ConfigError("wandb_mode", f"must be one of {_WANDB_MODES} or None, "
                      f"got {config.wandb_mode!r}.")
  if config.final_fraction > 1:
    raise ConfigError("final_fraction", f"must be in (0, 1], got {config.final_fraction!r}.")
  if config.validate_every:
    import meta_tasks  # pylint: disable=import-outside-toplevel
    suites = [n for n in meta_tasks.suite_names() if not n.startswith("heldout")]
    if config.validate_suite not in suites:  # held-out suites are never used for choosing
      raise ConfigError("validate_suite", f"must be one of {suites} (not a held-out suite), "
                        f"got {config.validate_suite!r}.")
  if config.max_horizon < config.min_horizon:
    raise ConfigError("max_horizon", f"({config.max_horizon}) must be >= min_horizon "
                      f"({config.min_horizon}).")
  knots = _parse_curriculum(config.horizon_curriculum)
  if knots and knots[-1][1] != config.max_horizon:
    raise ConfigError("horizon_curriculum", f"must end at max_horizon ({config.max_horizon}), "
                      f"got {config.horizon_curriculum!r}.")
  try:
    config.schedule()
  except ValueError as e:
    raise ConfigError("horizon_curriculum", str(e)) from None
  if config.frozen is not None:  # every path must name a part of θ
    config.frozen_mask(jax.eval_shape(config.lo.init, jax.random.PRNGKey(0)))
  if config.truncation_length > config.min_horizon:
    raise ConfigError("truncation_length", f"({config.truncation_length}) must be <= "
                      f"min_horizon ({config.min_horizon}).")


def _parse_curriculum(spec: str | None) -> tuple[tuple[int, int], ...]:
  """"STEP:H,STEP:H" -> ((STEP, H), ...); None -> ()."""
  if spec is None:
    return ()
  if not isinstance(spec, str):
    raise ConfigError("horizon_curriculum", f"must be a string like '0:500,2000:2000', "
                      f"got {spec!r}.")
  knots = []
  for part in filter(None, (p.strip() for p in spec.split(","))):
    try:
      step, horizon = (int(x) for x in part.split(":"))
    except ValueError:
      raise ConfigError("horizon_curriculum", f"knot {part!r} is not STEP:HORIZON "
                        "(two integers), e.g. '0:500,2000:2000'.") from None
    if step < 0 or horizon < 1:
      raise ConfigError("horizon_curriculum", f"knot {part!r} needs STEP >= 0 and HORIZON >= 1.")
    knots.append((step, horizon))
  return tuple(knots)


def lo_error(error: Exception, fields: list[str]) -> ConfigError:
  """The ``ConfigError`` of an LO's own ValueError: names the ``lo.<field>`` its
  message starts with, else the only one of ``fields`` given, else ``lo``."""
  text = " ".join(str(error).split())
  for name in sorted(fields, key=len, reverse=True):
    leaf = name.split(".")[-1]
    if text.startswith(leaf + " "):
      return ConfigError(f"lo.{name}", text[len(leaf) + 1:])
  return ConfigError(f"lo.{fields[0]}" if len(fields) == 1 else "lo", text)


def _replace_lo(lo: Any, nested: dict[str, Any], prefix: str = "") -> Any:
  """``lo`` with dotted-path fields replaced (``{"features.adam": True}``)."""
  groups: dict[str, dict[str, Any]] = {}
  for key, value in nested.items():
    head, _, rest = key.partition(".")
    groups.setdefault(head, {})[rest] = value
  known = {f.name for f in dataclasses.fields(lo)}
  unknown = sorted(f"lo.{prefix}{k}" for k in set(groups) - known)
  if unknown:
    raise ValueError(f"Unknown config fields {unknown}; valid fields of {type(lo).__name__}: "
                     f"{sorted(f'lo.{prefix}{k}' for k in known)}.")
  changes = {}
  for head, sub in groups.items():
    if "" in sub:
      changes[head] = sub[""]
      if head == "step" and isinstance(sub[""], str):
        from lopt import step_rules
        try:
          changes[head] = step_rules.parse(sub[""])
        except ValueError as e:
          raise lo_error(e, [prefix + "step"]) from None
    else:
      changes[head] = _replace_lo(getattr(lo, head), sub, f"{prefix}{head}.")
  try:
    return dataclasses.replace(lo, **changes)
  except (TypeError, ValueError) as e:
    if isinstance(e, ConfigError):
      raise
    raise lo_error(e, [prefix + k for k in nested]) from None


# What ships in checkpoints/ when no GPU is lent (measurements:
# results/pretrained-cpu/recipe-ablation.md). ES-Single beat PES on the same
# budget (results/pretrained-cpu/estimator-comparison.md). θ starts as μAdam
# with LR step_mult (adam_init, raw_ratios): from a random θ, 1000 outer steps of
# 4 noisy pairs never caught up with tuned AdamW. Outer LR 3e-4 -> 1e-4: at
# 3e-3 the noise-driven drift of θ broke the LO within 500 steps at horizons past
# the meta-training ones. An external cosine schedule and only the fraction-of-
# training time feature: without them the meta-trained LOs went unstable at
# 5000 steps. log meta-loss: the evaluation asks for the final loss.
_CPU_LO = MLPLOpt(step_mult=0.1, features=Features(adam=True, absolute_time=False),
                  step=(Cosine(),))
_CPU_RECIPE = dict(estimator="es_single", lo=_CPU_LO, num_pairs=4, truncation_length=20,
                   min_horizon=50, max_horizon=1000, outer_steps=1000, warmup_steps=20,
                   outer_lr=3e-4, outer_final_lr=1e-4, checkpoint_every=100, log_every=20,
                   log_meta_loss=True)

# The generalization recipe (results/pretrained-cpu/recipe-ablation.md): the
# robust LO form (Celo2-style RMS-normalized step with separate input/hidden base
# steps, decoupled weight decay and meta-learned scales; hidden width 8) on the
# ``mix-*`` distributions (non-memorizable data; MLPs, CNN and LM; μP and SP),
# meta-trained on the validation loss.
_MIX_RECIPE = dict(_CPU_RECIPE, lo=forms.robust(hidden_size=8, input=0.002, hidden=0.2,
                                                weight_decay=0.1),
                   meta_loss="valid", outer_lr=1e-3, outer_final_lr=3e-4, outer_steps=600,
                   checkpoint_every=50)

# Meta-training that learns (issue 19): the adaptive form (μAdamW at θ = 0 plus
# bounded learned adaptation) on tiny tasks, many particles per compiled step;
# the objective is what users measure: the validation loss (a split disjoint
# from every test split) over the last 30% of each episode, its ± differences
# reduced to their sign (VeLO: each task's loss scale drops out), horizons up
# to 2000 until outer step 17000, then growing log-linearly to 4000 by 21000, so
# that they reach the user suites' horizons (300-3000 steps); the run started
# at 2000 (cheap early steps) and took the curriculum on at 17000.
_ADAPTIVE_RECIPE = dict(estimator="es_single", lo=AdaptiveLOpt(), distribution="tiny-mix",
                        num_pairs=8, truncation_length=20, min_horizon=50, max_horizon=4000,
                        horizon_curriculum="17000:2000,21000:4000",
                        meta_loss="valid", final_fraction=0.3, sign_delta=True,
                        log_meta_loss=True, outer_steps=50_000, warmup_steps=100,
                        outer_lr=1e-3, outer_final_lr=1e-4, clip_norm=1.0,
                        checkpoint_every=200, keep_checkpoints=3, log_every=20)

_A2 = dict(_ADAPTIVE_RECIPE, lo=AdaptiveLOpt(step=(
    adaptive.MeanFreeAdamDirection(),) + adaptive.default_rules()[1:]),
    sign_delta=False, delta_clip=0.5, validate_every=1000, validate_seeds=3)

_A4 = dict(_A2, init_theta="results/meta-runs/mulo-a2-cpu/export_12000",
           horizon_curriculum=None, max_horizon=2000, horizon_power=2.0,
           outer_steps=20_000, outer_lr=3e-4, outer_final_lr=3e-5)

# a15's recipe with the restraint on the hidden group only; θ₀ = the shipped
# mulo-m (why: the preset's comment below).
_A16 = dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
            lo=dataclasses.replace(_A2["lo"], step=_A2["lo"].step + (
                adaptive.GradientRestraint(alpha=(0.0, 0.5), beta=(0.0, 0.5)),)),
            distribution="tiny-mix-lm", validate_every=500)

# a19's recipe from the mulo-m re-shipped with input_fan_in=19.2 (a20; a21
# and a22 vary it).
_A20 = dict(_A16, lo=dataclasses.replace(_A16["lo"], input_fan_in=19.2),
            init_theta="results/candidates/mulo-m-fan-in", distribution="tiny-mix-lm-b8",
            outer_lr=1e-4, outer_final_lr=1e-5, outer_steps=8000, theta_ema=0.999, seed=3)
# a27's recipe (horizons 300-3,000 log-uniform, the mean meta-loss's log, 8
# validation seeds from 300), the base of a27-a30.
_A27 = dict(_A20, min_horizon=300, max_horizon=3000, horizon_power=1.0, log_meta_loss=False,
            log_mean_meta_loss=True, distribution="tiny-mix-img-cnn",
            validate_seeds=8, validate_first_seed=300)

# CPU, ~2 minutes: embedded digits, small μP MLPs, short horizons.
_TINY = dict(distribution="tiny", num_pairs=4, truncation_length=10, min_horizon=20,
             max_horizon=60, outer_steps=150, warmup_steps=10, outer_lr=1e-2,
             outer_final_lr=3e-3, checkpoint_every=50, log_every=5)

_BASE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": _TINY,
    # The μLO recipe (docs/architecture.md): PES, K=50, 8 pairs, σ=0.01, horizons 100-1000.
    "mulo-s": dict(distribution="mulo-s"),
    "mulo-m": dict(distribution="mulo-m"),
    "sp-lo": dict(distribution="sp-m", lo=MLPLOpt(mup=False)),
    # Offline versions of the same recipes on the embedded digits data.
    "mulo-s-digits": dict(distribution="mulo-s-digits"),
    "mulo-m-digits": dict(distribution="mulo-m-digits"),
    "sp-lo-digits": dict(distribution="sp-m-digits", lo=MLPLOpt(mup=False)),
    # CPU-scale μLO_M / μLO_S / SP LO (what ships in checkpoints/ when no GPU is lent):
    # digits 8x8, base width 32, horizons 50-1000 (the -cpu suites' reference).
    "mulo-m-cpu": dict(distribution="mulo-m-cpu", **_CPU_RECIPE),
    "mulo-s-cpu": dict(distribution="mulo-s-cpu", **_CPU_RECIPE),
    # step_mult 0.01: at 0.1 the SP LO's raw (not 1/fan_in) hidden steps wrecked the
    # inner MLPs by outer step 140 and meta-training stalled at meta-loss 1.0.
    "sp-lo-cpu": dict(distribution="sp-m-cpu", **{**_CPU_RECIPE, "lo": dataclasses.replace(
        _CPU_LO, mup=False, step_mult=0.01)}),
    # What ships since the generalization issue: the robust form on the mix distributions.
    "mulo-m-mix-cpu": dict(distribution="mix-cpu", **_MIX_RECIPE),
    "mulo-s-mix-cpu": dict(distribution="mix-s-cpu", **_MIX_RECIPE),
    "sp-lo-mix-cpu": dict(distribution="mix-sp-cpu", **{**_MIX_RECIPE, "lo": dataclasses.replace(
        _MIX_RECIPE["lo"], mup=False)}),
    "mulo-a-cpu": dict(_ADAPTIVE_RECIPE),
    # The next adaptive run, from what mulo-a-cpu's θ at step 50000 showed: (1) its
    # per-element residual's mean over a tensor (a shift of every entry) made wide
    # models worse (width 256: 2x θ₀'s test loss; without the mean 0.83x), so the
    # residual is mean-free; (2) the sign objective drifted toward steps that
    # overfit small data (wine), so each ± difference keeps its size as a
    # log-ratio (log meta-loss, no sign) and a doubled test loss on a memorized
    # table outweighs a 5% gain elsewhere; |Δ| is clipped at 0.5 per step (a 1.6x
    # loss ratio) so one blow-up cannot steer θ. Validation: 3 seeds, every 1000.
    "mulo-a2-cpu": _A2,
    # mulo-a2-cpu branched at its screen best before the horizon curriculum (step
    # 12000, 0.750; from step 13000 on, and through the curriculum to 4000, the
    # screen score swung 0.74-1.9 on wine blow-ups): horizons stay 50-2000 and the
    # outer LR is 3x lower (3e-4 -> 3e-5), a fresh outer Adam from that θ.
    "mulo-a3-cpu": dict(_A2, init_theta="results/meta-runs/mulo-a2-cpu/export_12000",
                        horizon_curriculum=None, max_horizon=2000, outer_steps=20_000,
                        outer_lr=3e-4, outer_final_lr=3e-5),
    # mulo-a3-cpu with episode lengths of density ∝ length^-2: inner steps spread
    # log-uniformly over 50-2000, so 50-300-step episodes carry half the
    # meta-gradient (with log-uniform episodes, 13%). Held-out-free motivation:
    # on small tables (screen wine-w64, synthetic tables) a2's θ lost to θ₀ at
    # 300 steps (1.03-2.2x) while winning at 1000 (0.77-0.90x).
    "mulo-a4-cpu": _A4,
    # mulo-a (a4's step-5000 θ) lost to θ₀, and more to small-LR AdamW, on small
    # nearly clean tables at 300-1000 steps (test loss 1.05-1.4x θ₀), as on
    # breast cancer: the distribution gains two such tables and a tiny CNN
    # (tiny-mix-clean; without the CNN, one vote per task doubled the screen
    # CNN's test loss within 2000 steps),
    # horizons reach 3000 (the user suites' longest) with lengths ∝ length^-1.5,
    # and each task gets one vote (unit_task_grads): the memorized-digits tasks'
    # log-loss deltas were the largest and noisiest.
    "mulo-a5-cpu": dict(_A2, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                        distribution="tiny-mix-clean", horizon_curriculum=None,
                        max_horizon=3000, horizon_power=1.5, unit_task_grads=True,
                        outer_steps=20_000, outer_lr=3e-4, outer_final_lr=3e-5),
    # mulo-a3/a4/a5 all drifted toward smaller steps: on the small tables test
    # loss against a step multiplier is worst at x0.3-x1 and best at x3
    # (results/probes/step_mult_tables.txt), a jump that σ=0.01 ES does not
    # see. a4's recipe from mulo-a (its step-5000 θ), with every episode's
    # updates times a log-uniform factor in [1/2, 2]: the objective is smoothed
    # over the global step, and the head is rewarded for correcting it.
    "mulo-a6-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                        step_mult_spread=2.0),
    # a6 drifted as a3-a5 did (smaller steps, more decay; screen 1.0-1.15x
    # mulo-a), and at θ = mulo-a the per-task meta-gradients on the global
    # step and decay disagree, the digits MLPs pulling 5-40x harder than the LM
    # and the teacher (results/probes/task_pull.txt). a4's recipe from mulo-a
    # with the global parts frozen (learned log-scales, schedule shape, the
    # head's output bias): only the task-dependent head and the residual learn.
    "mulo-a7-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                        frozen="scales,schedule,adapt.b1", validate_every=500),
    # From mulo-a, a4-a7's training meta-loss stayed flat within noise
    # (results/probes/meta_loss_plateau.txt): a4's recipe with 4x the pairs
    # per outer step (half the estimate's noise).
    "mulo-a8-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                        num_pairs=32, validate_every=500),
    # a4-a8 sat on a plateau because mulo-a's adaptive head is saturated: 80-98%
    # of its step multipliers at |tanh| > 0.9 of the x10 bound, its weight-decay
    # ones at either bound (results/probes/head_saturation.txt), so ES sees
    # about 2% of a perturbation through it. a4's recipe (same seed: the same
    # tasks and horizons, so its meta-loss pairs with a4's step by step) from
    # mulo-a with the head re-centred: the step level moved into the learned
    # scales and the weight-decay bound x100, refit to the same multipliers
    # (results/probes/recenter_head.py).
    "mulo-a9-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a-recentered",
                        lo=AdaptiveLOpt(step=(adaptive.MeanFreeAdamDirection(),)
                                        + adaptive.default_rules(bound=(10.0, 100.0))[1:]),
                        validate_every=500),
    # At mulo-a the meta-loss is chaotic at σ=0.01: |L(θ+ε) − L(θ−ε)| is 0.005
    # at σ=1e-5 and only 0.013 at 0.01, and grows like σ from about 0.03
    # (results/probes/sigma_scaling.txt), so a4-a9's ± differences were mostly
    # inner-training chaos. a4's recipe from mulo-a (same seed: paired with a4)
    # with σ=0.1, where the differences are about 5x the chaotic floor.
    "mulo-a10-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         sigma=0.1, validate_every=500),
    # At θ₀ the fresh-draw descent direction lowers the mean meta-loss but
    # raises the synthetic tables' (results/probes/descent_check.txt), and
    # mulo-a, where the mean's estimate is ~0, sits above θ₀ on two tables:
    # the mean objective trades tables for digits. a4's recipe from mulo-a (same
    # seed: paired with a4) with every pair also running θ₀, and the tasks
    # weighted by softmax(5 · max(gap to θ₀, −0.2)): at mulo-a's gaps (digits
    # −2.2, teacher −0.8, LM −0.03, tables −0.2, +0.02, +0.10) a table behind
    # θ₀ weighs 4.5x a digits task.
    "mulo-a11-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         dro_eta=5.0, validate_every=1000),
    # a4-a11 showed a frontier: what the tables gain (smaller hidden steps, more
    # decay; a11) the digits lose, and the head's gradient statistics do not
    # tell them apart. The data budget does (passes over the training split:
    # the tables' 320-640 rows make 3-5x the digits' at the same horizon;
    # teacher and LM ~0). mulo-a's form plus EpochScales (step and decay
    # multipliers from log1p(planned epochs) and log1p(passes so far), 4
    # zero-initialized scalars), warm-started from mulo-a (exactly mulo-a at
    # step 0), with everything else frozen: ES estimates 4 numbers, so σ=0.03.
    # (A first try at outer LR 1e-3 random-walked: the late-training step
    # multiplier at 44 epochs went x2.8 -> x2.4 -> x1.1 between steps 1480
    # and 1800, and the step-1500 screen read digits 2.9x, CNN 1.9x, wine-w128
    # 0.75x. So a4's outer LR, 3e-4 -> 3e-5.)
    "mulo-a12-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         lo=dataclasses.replace(_A2["lo"], step=_A2["lo"].step
                                                + (adaptive.EpochScales(),)),
                         frozen="residual,scales,schedule,adapt", sigma=0.03,
                         validate_every=1000),
    # a12 learned from the tables what hurt the digits: with episode lengths
    # of density ∝ length^-2 its digits episodes sit at <= 8 epochs, while the
    # screen's digits train 44 (screen at step 2000: wine-w128 0.68x, digits
    # 1.76x, CNN 1.87x). a12 with log-uniform lengths up to 3000 steps (the
    # user suites' longest), so the digits are seen at 30-80 epochs too.
    "mulo-a13-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         lo=dataclasses.replace(_A2["lo"], step=_A2["lo"].step
                                                + (adaptive.EpochScales(),)),
                         frozen="residual,scales,schedule,adapt", sigma=0.03,
                         horizon_power=1.0, max_horizon=3000, validate_every=1000),
    # On a plain flax transformer LM (nn.Embed's 1/sqrt(width) init, 1/sqrt(d)
    # attention: what users write, the screen's and held-out's LMs) mulo-m's
    # steps are too large and more so with width: every update x0.25 takes the
    # screen LM's test loss from 2.44 to 2.28 at width 32 and from 2.50 to 2.16
    # at width 128, while tuned AdamW reaches 2.29; the hidden matrices (v/out,
    # the MLP block, q/k; not the readout) carry it, the embeddings less
    # (results/probes/lm_width_*.txt). tiny-mix's LM is a μP model, where the
    # shipped steps are about right. a4's recipe from mulo-m with two plain
    # LMs in the distribution (tiny-mix-lm), so ES sees what users' LMs want.
    "mulo-a14-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         distribution="tiny-mix-lm", validate_every=1000),
    # mulo-m's steps keep full size once a small training set is memorized
    # (Adam's direction is scale-free), and are too large on plain LMs. On the
    # screen (8 seeds), every update (step and decay) x clip((rms g / rms
    # g_1)^0.5, 0.1, 1) took the LM from 2.41 to 2.30, the CNN from 0.216 to
    # 0.196 and wine-w128 from 0.70 to 0.57, digits and wine-w64 within 3%
    # (results/probes/restraint_screen8.txt). mulo-m's form plus
    # GradientRestraint(0.5, 0.5), the step's and the decay's exponents per μP
    # group learned (θ = 0: the hand rule), a4's recipe from mulo-m on
    # tiny-mix-lm.
    "mulo-a15-cpu": dict(_A4, init_theta="results/meta-runs/mulo-a4-cpu/export_5000",
                         lo=dataclasses.replace(_A2["lo"], step=_A2["lo"].step + (
                             adaptive.GradientRestraint(alpha=0.5, beta=0.5),)),
                         distribution="tiny-mix-lm", validate_every=500),
    # a15 restrained every tensor; on the screen the LM's and the CNN's gains
    # come from the hidden group, while restraining the input group costs the
    # wine tables 15-35% (results/probes/restraint_groups_screen8.txt), and held
    # out it was the input group that cost breast cancer and iris. a15 with the
    # restraint on the hidden group only (its four exponents still learned; θ₀ =
    # results/candidates/mulo-m-hidden-restraint).
    "mulo-a16-cpu": _A16,
    # a16 drifted toward fitting small tables harder: after step ~2500 the
    # screen's wine tables memorized more (train loss 5e-4 -> 6e-5) and lost
    # 30-40% (8 seeds, results/meta-runs/mulo-a16-cpu-screen8.md). With episode
    # lengths ∝ length^-2 in [50, 2000], 8% of episodes are longer than 500
    # steps, where holding back pays; most reward fitting fast. a16 with
    # log-uniform lengths up to 3000 (the user suites' longest; 38% over 500),
    # validated with 8 seeds (a 3-seed score moved ±10% with the digits' noise).
    "mulo-a17-cpu": dict(_A16, horizon_power=1.0, max_horizon=3000, validate_seeds=8),
    # a16 and a17 drifted on the screen past ~2,500 outer steps, and ES at the
    # shipped θ cannot find a descent direction (docs/meta-training-runs.md):
    # what moves θ there is mostly noise. a16 from the shipped mulo-m at a
    # third of its outer LR, exporting and validating θ̄, θ averaged over
    # ~1,000 outer steps, with fresh task draws (seed 1); its θ̄ passes the
    # issue's 5·10⁷ inner steps (with its lineage's 3.8·10⁷) at ~4,200 steps.
    "mulo-a18-cpu": dict(_A16, outer_lr=1e-4, outer_final_lr=1e-5, outer_steps=8000,
                         theta_ema=0.999, seed=1),
    # a18 with two batch-8 tasks in the distribution: on the broad screen's
    # batch-8 digits MLP the shipped mulo-m loses to θ₀ (0.080 vs 0.047, loss
    # spike 2x) and its per-tensor multiplier is the cause (zeroed: 0.029;
    # results/probes/part_ablation.txt). Fresh task draws (seed 2).
    "mulo-a19-cpu": dict(_A16, distribution="tiny-mix-lm-b8", outer_lr=1e-4,
                         outer_final_lr=1e-5, outer_steps=8000, theta_ema=0.999, seed=2),
    # a19's recipe from the re-shipped mulo-m, whose form has input_fan_in=19.2
    # (μP's 1/fan_in on the data dimension; held out 0.902x the mulo-m that
    # a16-a19 started from). Three warm starts from that mulo-m found no
    # direction that held up; the new parameterization changes what the
    # input multiplier and the tables' steps should be. Fresh draws (seed 3).
    "mulo-a20-cpu": _A20,
    # a20's θ̄ drifted as a16-a19's did, toward larger steps and less restraint,
    # and lost held out (1.048x mulo-m). On the meta-training tasks themselves
    # the moved θ wins at 100-300-step horizons and loses at 1000-3000
    # (results/probes/horizon_drift.txt: 0.965, 0.951, 1.012, 1.033): a
    # short-horizon bias, since lengths ∝ length^-2 over 50-2000 put most of
    # the meta-gradient on short episodes. a20's recipe with the episodes at
    # users' horizons: log-uniform over 300-3000 steps. Fresh draws (seed 4).
    "mulo-a21-cpu": dict(_A20, seed=4, min_horizon=300, max_horizon=3000, horizon_power=1.0),
    # The other answer to a20's short-horizon bias: let the LO read the horizon.
    # a20's start plus HorizonScales (per μP group, step and decay × 10^tanh(w ·
    # log(T/1000)); 4 zero-initialized scalars, so exactly mulo-m at step 0),
    # everything else frozen, so ES estimates 4 numbers (σ=0.03, a12's outer
    # LR), over episodes log-uniform in 50-3000 steps: short and long runs can
    # each get their step. Stopped at 2,580: w wandered within ±0.07 and the
    # hidden group's sign is the wrong way (docs/meta-training-runs.md).
    "mulo-a22-cpu": dict(_A20, lo=dataclasses.replace(
                             _A20["lo"], step=_A20["lo"].step + (adaptive.HorizonScales(),)),
                         frozen="residual,scales,schedule,adapt,restraint", sigma=0.03,
                         outer_lr=3e-4, outer_final_lr=3e-5, seed=5, min_horizon=50,
                         max_horizon=3000, horizon_power=1.0),
    # a16-a22's objective, the mean over steps of log(loss of one validation
    # batch + 1e-4), rewards memorizing: on a memorized task most 8-64-row
    # batches read ~0 and a few ~1, and the mean of their logs falls as the
    # mean loss rises. a21's and a20's moved θ beat mulo-m on it (-0.026,
    # -0.037) and lose on the log of the mean validation loss (+0.050, +0.082;
    # results/probes/batch_log_bias.txt). a21's recipe (users' horizons,
    # log-uniform 300-3000) with the log of each truncation's mean loss
    # (log_mean_meta_loss). Fresh draws (seed 6).
    "mulo-a23-cpu": dict(_A20, seed=6, min_horizon=300, max_horizon=3000, horizon_power=1.0,
                         log_meta_loss=False, log_mean_meta_loss=True),
    # a23 with other draws (seed 7), run beside it: whether ES moves θ the same
    # way twice tells a signal from the noise-driven walks of a6-a10.
    "mulo-a24-cpu": dict(_A20, seed=7, min_horizon=300, max_horizon=3000, horizon_power=1.0,
                         log_meta_loss=False, log_mean_meta_loss=True),
    # a23 and a24 improved their own tasks' mean validation loss (-0.023,
    # -0.036 in log; results/probes/batch_log_bias_a23_a24.txt) by learning
    # restraint from the tables, which cost the screen's CNN and deeper digits
    # MLP 5-17%: the distribution has no CNN and no digits MLP deeper than 2.
    # a23's recipe on tiny-mix-lm-b8 plus both (tiny-mix-img). Fresh draws (seed 8).
    "mulo-a25-cpu": dict(_A20, seed=8, min_horizon=300, max_horizon=3000, horizon_power=1.0,
                         log_meta_loss=False, log_mean_meta_loss=True,
                         distribution="tiny-mix-img"),
    # a25's θ̄@3000 tied mulo-m held out on two seed sets (1.002x, 1.004x): the
    # MLPs gained 1-8% and the CNN lost 10-14%. On the screen's CNN (fresh
    # seeds) that loss comes from the two many-parameter parts, the per-tensor
    # head (1.056x alone) and the residual (1.048x), while the scalars are
    # neutral (results/probes/part_swap_a25_cnn.txt). a25's recipe learning only
    # the scalars (scales, schedule, restraint): ES's noise grows with the
    # number of perturbed parameters. Fresh draws (seed 9).
    "mulo-a26-cpu": dict(_A20, seed=9, min_horizon=300, max_horizon=3000, horizon_power=1.0,
                         log_meta_loss=False, log_mean_meta_loss=True,
                         distribution="tiny-mix-img", frozen="adapt,residual"),
    # a25's θ̄@3000 (results/candidates/mulo-a25-3000, a copy of its export_best:
    # 5.05·10⁷ inner steps with its lineage) gained 1-8% on the held-out MLPs
    # and lost 10-14% on the plain CNN; the distribution's only CNN is μP, width
    # 8, batch 16. a25's recipe from there with a plain flax CNN (width 16,
    # batch 32) added (tiny-mix-img-cnn), validated on fresh seeds 300-307
    # (mulo-m read 3% better on the screen's seeds 0-7 than on fresh ones).
    # Fresh draws (seed 10).
    "mulo-a27-cpu": dict(_A27, seed=10, init_theta="results/candidates/mulo-a25-3000"),
    # a27's θ̄@3000 (results/candidates/mulo-a27-3000) with two small clean tables
    # on wider plain MLPs added (tiny-mix-tables): on clean tables the shipped LO
    # memorizes and loses to small-LR AdamW (results/probes/clean_table_kin.txt),
    # and the distribution's tables were noisy or narrow. Fresh draws (seed 11).
    "mulo-a28-cpu": dict(_A27, seed=11, distribution="tiny-mix-tables",
                         init_theta="results/candidates/mulo-a27-3000"),
    # Is ES noise what flattened a27 after its step 3,000 (meta-validation
    # 0.960 → 0.972)? θ has 339 numbers and a27 estimated their gradient from 8
    # pairs. a27's recipe and distribution from its θ̄@3000 with 4× the pairs
    # (32, so 4× the inner steps per outer step) and 2× the outer LR, validated
    # every 250 outer steps (1,000 of a27's in inner steps). Fresh draws (seed 12).
    "mulo-a29-cpu": dict(_A27, seed=12, init_theta="results/candidates/mulo-a27-3000",
                         num_pairs=32, outer_lr=2e-4, outer_final_lr=2e-5, outer_steps=2000,
                         validate_every=250),
    # The same recipe at GPU scale, for chunks on a lent GPU
    # (scripts/gpu_meta_chunk.py): 1,024 pairs per task in one compiled step
    # (a29 at 32 pairs: noise² ≈ 11 per outer step against a signal² too small
    # to detect, scripts/meta_grad_snr.py; the noise falls ∝ 1/pairs, and on a
    # GPU the tiny tasks' steps cost launches, not FLOPs, so pairs are nearly
    # free), from a27's θ̄@3000, no meta-validation on the device (the chunk
    # brings back its θ̄ export: validate it here), a checkpoint every 100 outer steps.
    # Fresh draws (seed 13).
    "mulo-a30-gpu": dict(_A27, seed=13, init_theta="results/candidates/mulo-a27-3000",
                         num_pairs=1024, outer_lr=3e-4, outer_final_lr=3e-5, outer_steps=20000,
                         checkpoint_every=100, log_every=10, validate_every=0),
    # At a27's θ̄@3000, held still, 3× a27's σ (0.03) cuts the estimate's noise
    # 7× (9.35 → 1.29 per step at 32 pairs), so at a27's 8 pairs ES-Single's
    # per-step SNR is ~9× a27's own continuation (results/probes/meta_grad_snr.txt).
    # a27's recipe from there at σ = 0.03. Fresh draws (seed 14). Validated on
    # seeds 300-307 up to outer step 2,000; from 2,060 on seeds 800-807, since
    # 300-307 chose its init (the winner's curse, docs/meta-training-runs.md).
    "mulo-a31-cpu": dict(_A27, seed=14, init_theta="results/candidates/mulo-a27-3000",
                         sigma=0.03, outer_steps=3000, validate_every=500,
                         validate_first_seed=800),
    # a31 improved on its init a27@3000 on two fresh seed sets (700-707:
    # 0.943x at 2,000; 800-807: 0.961x at 3,000), and its outer LR had decayed
    # to 1e-5 by then. a31's recipe again (σ = 0.03, outer LR 1e-4 -> 1e-5)
    # from its θ̄@3000 (results/candidates/mulo-a31-3000), validated on fresh
    # seeds 1000-1007: neither the init's choosing seeds nor any screen's.
    # Fresh draws (seed 15).
    "mulo-a32-cpu": dict(_A27, seed=15, init_theta="results/candidates/mulo-a31-3000",
                         sigma=0.03, outer_steps=3000, validate_every=500,
                         validate_first_seed=1000),
    # VeLO-style LO.
    "velo-s": dict(lo=VeLOpt(mup=False, step_mult=0.001), distribution="sp-s"),
    "muvelo-m": dict(lo=VeLOpt(mup=True, step_mult=0.001), distribution="mulo-m"),
    "muvelo-tiny": dict(_TINY, lo=VeLOpt(mup=True, step_mult=0.001), outer_steps=300),
}


def preset_names() -> list[str]:
  """Base presets, plus ``<preset>-<estimator>`` for every estimator the preset
  works with (task weights against θ₀, ``dro_eta``, need es_single or pes)."""
  names = list(_BASE_PRESETS)
  names += [f"{p}-{e.replace('_', '-')}" for p in _BASE_PRESETS for e in ESTIMATOR_NAMES
            if _BASE_PRESETS[p].get("dro_eta") is None or e in ("es_single", "pes")]
  return names


def get_preset(name: str, **overrides) -> MetaTrainConfig:
  base, fields = name, {}
  for est in ESTIMATOR_NAMES:
    suffix = "-" + est.replace("_", "-")
    if name.endswith(suffix) and name[: -len(suffix)] in _BASE_PRESETS:
      base, fields = name[: -len(suffix)], {"estimator": est}
  if base not in _BASE_PRESETS:
    raise ValueError(f"Unknown preset {name!r}; valid presets: {preset_names()}.")
  return MetaTrainConfig().replace(**{**_BASE_PRESETS[base], **fields, **overrides})


# The LO fields of MetaTrainConfig before issue 20 (flat; now ``lo``).
_FLAT_LO_FIELDS = ("lopt", "mup", "hidden_size", "hidden_layers", "step_mult", "exp_mult",
                   "raw_ratios", "adam_init", "absolute_time", "lr_schedule", "output_norm",
                   "hidden_step_mult", "lo_weight_decay", "learned_scales")


def config_from_json(data: dict[str, Any]) -> MetaTrainConfig:
  """The config of a ``to_json`` record; a flat record of lopt before issue 20
  (LO fields at the top level) is converted, with a FutureWarning."""
  data = dict(data)
  flat = {k: data.pop(k) for k in _FLAT_LO_FIELDS if k in data}
  if flat:
    warnings.warn(f"This config is the flat form of lopt before issue 20 (LO fields "
                  f"{sorted(flat)} at the top level); it is converted to lo={{architecture, "
                  "config}}. Re-write it (MetaTrainConfig.to_json) to drop this warning.",
                  FutureWarning, stacklevel=2)
    if flat.pop("lopt", "mlp") == "velo":
      data["lo"] = VeLOpt(**{k: flat[k] for k in ("mup", "step_mult", "exp_mult") if k in flat})
    else:
      flat["weight_decay"] = flat.pop("lo_weight_decay", 0.0)
      data["lo"] = forms.from_flat(flat)
  elif isinstance(data.get("lo"), dict):
    record = data["lo"]
    try:
      data["lo"] = protocol.from_record(record.get("architecture"), record.get("config", {}))
    except (TypeError, ValueError) as e:
      raise ConfigError("lo", " ".join(str(e).split())) from None
  return MetaTrainConfig().replace(**data)


def dumps(config: MetaTrainConfig) -> str:
  return json.dumps(config.to_json(), indent=2, sort_keys=True)
