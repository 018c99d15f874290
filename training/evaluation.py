"""Evaluate optimizers on the held-out suites: tuned baselines vs learned optimizers.

``evaluate(optimizers, suites, ...)`` tunes every baseline, runs every
optimizer on every suite entry and returns a JSON-ready results dict
(``training.report`` renders it). ``PROTOCOL`` below is the protocol; it is
also written into every results.json. The jobs live in their own modules:
``training.sweep`` (one compiled training sweep; the definitions of curves,
final metrics, divergence and loss spikes), ``training.stats`` (grids, speedup,
ranks), ``training.eval_cache`` (the baseline cache) and ``training.records``
(versions and device). Per optimizer and task a final metric is the mean over
seeds (+inf if any seed diverged); the max loss spike is the max over seeds;
``train_rank`` ranks by final train loss as ``rank`` does by test loss.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np
import optax

import lopt
from lopt import baselines
from meta_tasks import SuiteEntry, Task, get_suite, suite_names
from training import records, task_spec
from training.eval_cache import BaselineCache
from training.stats import (MAX_CURVE_POINTS, SMOOTH_FRACTION, TEST_CURVE_POINTS, average_ranks,
                            finite_or_none, mean_or_inf, pick_lr, seed_median, speedup,
                            step_mult_grid, subsample_grid, window_means)
from training.sweep import EVAL_BATCHES, Curves, Sweep, train_curves

REFERENCE = "adamw"
TUNING_SEEDS = 3
TUNING_SEED_OFFSET = 1000   # tuning seeds are disjoint from the reported seeds

PROTOCOL = (
    "Learning-rate tuning: every hand-designed baseline is tuned over its half-decade "
    "log grid lopt.baselines.default_lr_grid(name) (7-9 points; 1, 3, 10, ... x 10^k) with a "
    "constant learning rate and its other hyperparameters at their defaults, on the suite "
    "entry's tuning_task (the meta-training-size variant: base width/depth; the task "
    "itself for horizon and dataset entries) at the entry's horizon, with "
    f"{TUNING_SEEDS} seeds disjoint from the reported seeds. The chosen LR minimises the mean "
    "over tuning seeds of the final held-out (test-split) loss, as a user tuning on validation "
    "loss would; an LR with any diverged seed counts as "
    "+inf, ties go to the smaller LR, and if every LR diverged the smallest is used. The "
    "chosen LR is transferred unchanged to the held-out task: for muadam this is the muP "
    "transfer (its per-tensor multipliers 1/fan_in for hidden matrices come from the task's "
    "metadata); adamw and the other SP baselines reuse the same LR. Learned optimizers run "
    "as exported, with num_steps = the horizon and the task's tensor kinds as muP spec "
    "(task.kinds, also for SP tasks, so a muP LO still scales hidden matrices by 1/fan_in; an "
    "SP LO ignores it), and are reported twice: untuned (step multiplier 1) and tuned, with "
    "the same budget and rule as the baselines: a step multiplier on every update (optax.scale "
    "after the LO, lopt.pretrained_optax's step_mult) chosen over step_mult_grid(n), n = the "
    "number of points of AdamW's LR grid (a quarter-decade log grid around 1), on the same "
    "tuning task, horizon and tuning seeds, by the same test-loss rule (ties to the smaller "
    "multiplier). Results: fresh seeds 0..S-1, final metrics on fixed "
    "batches of the train/test splits. Tuned AdamW is always run as the speedup reference.")


# --------------------------------------------------------------------------
# Optimizers: baselines by name, learned optimizers by checkpoint.

@dataclasses.dataclass(frozen=True)
class Optimizer:
  """A baseline (``baseline`` = registry name) or a learned optimizer (``checkpoint``)."""
  label: str
  baseline: Optional[str] = None
  checkpoint: Optional[str] = None
  lo: Any = dataclasses.field(default=None, compare=False, repr=False)
  theta: Any = dataclasses.field(default=None, compare=False, repr=False)
  metadata: Any = dataclasses.field(default=None, compare=False, repr=False)
  added_as_reference: bool = False   # tuned AdamW added only to compute speedups
  tune_step_mult: bool = False       # a learned optimizer tuned over step_mult_grid

  @property
  def tuned(self) -> bool:
    return self.baseline is not None or self.tune_step_mult

  @property
  def hparam(self) -> Optional[str]:
    """What tuning chooses: ``learning_rate``, ``step_mult`` or None (untuned)."""
    if self.baseline is not None:
      return "learning_rate"
    return "step_mult" if self.tune_step_mult else None

  def make_tx(self, task: Task, num_steps: int) -> Callable[[Any], optax.GradientTransformation]:
    if self.baseline is None:
      lo = lambda: lo_optax(self.lo, self.theta, task, num_steps)
      if self.tune_step_mult:  # the step multiplier is the traced grid value
        return lambda mult: optax.chain(lo(), optax.scale(mult))
      return lambda lr: lo()
    extra = ({"mup": task_spec.baseline_spec(task)}
             if "mup" in baselines.hparams(self.baseline) else {})
    return lambda lr: baselines.get(self.baseline, learning_rate=lr, **extra)

  def eval_params(self, state: Any, params: Any) -> Any:
    return (params if self.baseline is None
            else baselines.eval_params(self.baseline, state, params))

  def describe(self) -> dict[str, Any]:
    if self.baseline is not None:
      return {"label": self.label, "kind": "baseline", "name": self.baseline,
              "added_as_reference": self.added_as_reference}
    return {"label": self.label, "kind": "learned", "checkpoint": self.checkpoint,
            "step_mult_tuned": self.tune_step_mult,
            "architecture": (self.metadata or {}).get("architecture"),
            "config": (self.metadata or {}).get("config")}


def lo_optax(lo: Any, theta: Any, task: Task, num_steps: int) -> optax.GradientTransformation:
  """A learned optimizer on ``task`` as a user runs it: ``as_optax`` with the
  task's tensor kinds as μP spec (task.kinds, not task.mup: a μP LO on an SP
  task still needs to know which tensors are hidden; an SP LO ignores it) and,
  for an LO that reads the data budget, the planned epochs a user would pass."""
  extra = ({"epochs": num_steps * task.epochs_per_step()}
           if getattr(lo, "reads_epochs", False) else {})
  return lo.as_optax(theta, num_steps=num_steps, mup=task_spec.optimizer_spec(task), **extra)


def _literal(text: str) -> Any:
  try:  # numbers, true/false/none in any case, tuples; anything else is a string
    return ast.literal_eval({"true": "True", "false": "False", "none": "None"}.get(
        text.lower(), text))
  except (ValueError, SyntaxError):
    return text


def init_form(fields: str) -> Any:
  """``FIELD=VALUE,...`` -> an untrained ``MLPLOpt`` with those fields (the flat
  pre-issue-20 switches too, through ``lopt.forms.from_flat``)."""
  fields = dict(kv.split("=", 1) for kv in fields.split(",") if kv)
  valid = {f.name for f in dataclasses.fields(lopt.MLPLOpt)} | set(lopt.forms.LEGACY_FIELDS)
  unknown = sorted(set(fields) - (valid - {"features", "step"}))
  if unknown:
    raise ValueError(f"unknown MLPLOpt fields {unknown}; valid: {sorted(valid)}")
  return lopt.forms.from_flat({k: _literal(v) for k, v in fields.items()})


def parse_optimizer(text: str) -> Optimizer:
  """``adamw`` | ``PATH`` | ``LABEL=adamw`` | ``LABEL=PATH`` (or a shipped LO name).

  A meta-training ``WORKDIR@STEP`` is exported first (to ``WORKDIR/export@STEP``;
  ``@0``, the untrained θ, to ``WORKDIR/export_init``). ``init:FIELD=VALUE,...``
  is an untrained ``MLPLOpt`` (``init_form``; θ from PRNGKey(0)).

  Raises ValueError / FileNotFoundError with the valid choices; a checkpoint is
  loaded here so a bad one fails before anything runs.
  """
  text = text.strip()
  labelled = "=" in text.split("init:")[0]
  label, _, value = text.partition("=") if labelled else ("", "", text)
  label, value = label.strip(), value.strip()
  if not value:
    raise ValueError(f"Empty optimizer in {text!r}; expected a baseline name or a path.")
  if value.startswith("init:"):
    lo = init_form(value[len("init:"):])
    return Optimizer(label=label or value, checkpoint=value, lo=lo, theta=lo.init(
        jax.random.PRNGKey(0)), metadata={"architecture": type(lo).__name__,
                                          "config": lo.to_record()})
  key = value.lower().replace("_", "-")
  if key in baselines.names():
    return Optimizer(label=label or key, baseline=key)
  if "@" in value and os.path.isdir(value.rpartition("@")[0]):  # WORKDIR@STEP
    from training.export import export_source  # pylint: disable=import-outside-toplevel
    label = label or Path(value).name
    value = export_source(value)
  looks_like_path = os.sep in value or value.startswith(".") or os.path.exists(value)
  if not looks_like_path and value not in lopt.available():
    raise ValueError(
        f"Unknown optimizer {value!r}: not a baseline ({', '.join(baselines.names())}), "
        f"not a shipped learned optimizer ({', '.join(lopt.available()) or 'none shipped'}), "
        "and not an existing checkpoint path.")
  if looks_like_path and not os.path.exists(value):
    raise FileNotFoundError(f"Learned-optimizer checkpoint {value!r} does not exist.")
  lo, theta = lopt.load_pretrained(value)
  metadata = lopt.load_metadata(value)
  name = label or Path(value.rstrip(os.sep)).name or value
  return Optimizer(label=name, checkpoint=str(value), lo=lo, theta=theta, metadata=metadata)


TUNED_SUFFIX = " (tuned)"


def parse_optimizers(texts: Sequence[str], tune_step_mult: bool = True) -> list[Optimizer]:
  """Parse a list and add tuned AdamW (the speedup reference) if it is missing.

  ``tune_step_mult``: every learned optimizer ``L`` is followed by ``L (tuned)``,
  the same LO with its step multiplier tuned like a baseline's LR."""
  parsed = [parse_optimizer(t) for t in texts if t.strip()]
  if not parsed:
    raise ValueError("No optimizers given.")
  opts = []
  for o in parsed:
    opts.append(o)
    if tune_step_mult and o.baseline is None:
      opts.append(dataclasses.replace(o, label=o.label + TUNED_SUFFIX, tune_step_mult=True))
  labels = [o.label for o in opts]
  if len(set(labels)) != len(labels):
    raise ValueError(f"Duplicate optimizer labels {labels}; use LABEL=PATH to tell them apart.")
  if not any(o.baseline == REFERENCE for o in opts):
    if REFERENCE in labels:
      raise ValueError(f"The label {REFERENCE!r} is reserved for the tuned AdamW reference.")
    opts.append(Optimizer(label=REFERENCE, baseline=REFERENCE, added_as_reference=True))
  return opts


def reference_label(optimizers: Sequence[Optimizer]) -> str:
  for opt in optimizers:
    if opt.baseline == REFERENCE:
      return opt.label
  raise ValueError(f"optimizers must include the tuned {REFERENCE!r} reference "
                   "(parse_optimizers adds it).")


def check_suites(names: Sequence[str]) -> list[str]:
  valid = suite_names()
  bad = [n for n in names if n not in valid]
  if bad or not names:
    raise ValueError(f"Unknown suite(s) {bad or names}; valid names: {', '.join(valid)}.")
  return list(names)



# --------------------------------------------------------------------------
# The pipeline.

def _run_result(opt: Optimizer, curves: Curves, lr: Optional[float], seeds: Sequence[int],
                lr_index: Optional[int], test_every: int = 0) -> dict[str, Any]:
  """One (optimizer, task) result from a sweep, at LR row ``lr_index``."""
  pick = (lambda a: a) if lr_index is None else (lambda a: a[lr_index])
  loss = pick(curves.train_loss)
  steps, windows = window_means(loss)
  acc = None if curves.test_accuracy is None else pick(curves.test_accuracy)
  diverged = pick(curves.diverged)
  return {
      "optimizer": opt.label,
      "learning_rate": lr,
      "step_mult": None,          # learned optimizers: 1 untuned, the chosen one tuned
      "seeds": list(seeds),
      "final_train_loss": mean_or_inf(pick(curves.final_train_loss)),
      "final_train_loss_per_seed": pick(curves.final_train_loss),
      "test_loss": mean_or_inf(pick(curves.test_loss)),
      "test_loss_per_seed": pick(curves.test_loss),
      "test_accuracy": None if acc is None or np.any(diverged) else float(np.mean(acc)),
      "test_accuracy_per_seed": acc,
      "diverged": diverged,
      "num_diverged": int(np.sum(diverged)),
      "max_loss_spike": float(np.max(pick(curves.max_spike))),
      "max_loss_spike_per_seed": pick(curves.max_spike),
      "seconds": curves.seconds,
      "curve": {"step": steps, "train_loss_per_seed": windows,
                "train_loss_median": seed_median(windows)},
      "test_curve": None if curves.test_curve is None else _test_curve(pick(curves.test_curve),
                                                                       test_every),
  }


def test_curve_every(num_steps: int) -> int:
  """Updates between two points of a reported run's test curve."""
  return max(1, num_steps // TEST_CURVE_POINTS)


def _test_curve(per_seed: np.ndarray, every: int) -> dict[str, Any]:
  return {"step": every * np.arange(1, per_seed.shape[-1] + 1), "test_loss_per_seed": per_seed,
          "test_loss_median": seed_median(per_seed)}



class Evaluator:
  """Runs the protocol; caches tuning per (optimizer, tuning task, horizon) and
  evaluations per (optimizer, task, horizon) within one run."""

  def __init__(self, seeds: Sequence[int], tuning_seeds: int = TUNING_SEEDS,
               max_steps: Optional[int] = None, lr_grid_points: Optional[int] = None,
               eval_batches: int = EVAL_BATCHES, log: Callable[[str], None] = print,
               lr_grids: Optional[dict[str, Sequence[float]]] = None,
               cache_dir: Optional[str] = None):
    self.seeds = list(seeds)
    self.cache = BaselineCache(cache_dir) if cache_dir else None
    self.lr_grids = dict(lr_grids or {})  # baseline name -> grid, replacing the default
    self.tuning_seeds = [TUNING_SEED_OFFSET + i for i in range(tuning_seeds)]
    self.max_steps = max_steps
    self.lr_grid_points = lr_grid_points
    self.eval_batches = eval_batches
    self.log = log
    self.tuning: dict[tuple, dict[str, Any]] = {}
    self.runs: dict[tuple, dict[str, Any]] = {}
    # Untuned learned optimizers of one form share a compiled sweep per task, θ
    # its argument: screening ten checkpoints compiles each task once, not ten times.
    self.lo_sweeps: dict[tuple, Sweep] = {}

  def _untuned_lo_curves(self, opt: Optimizer, task: Task, num_steps: int,
                         every: int) -> Curves:
    try:
      shapes = tuple((np.shape(x), str(getattr(x, "dtype", type(x))))
                     for x in jax.tree.leaves(opt.theta))
      key = (opt.lo, task, num_steps, every, jax.tree.structure(opt.theta), shapes)
      hash(key)
    except TypeError:  # an unhashable LO config: its own program, θ a constant
      return train_curves(opt.make_tx(task, num_steps), task, num_steps, self.seeds,
                          eval_batches=self.eval_batches, test_every=every)
    if key not in self.lo_sweeps:
      self.lo_sweeps[key] = Sweep(lambda theta: lo_optax(opt.lo, theta, task, num_steps), task,
                                  num_steps, eval_batches=self.eval_batches, test_every=every)
    return self.lo_sweeps[key](opt.theta, self.seeds)

  def horizon(self, entry: SuiteEntry) -> int:
    return entry.num_steps if self.max_steps is None else min(entry.num_steps, self.max_steps)

  def _cache_key(self, what: str, opt: Optimizer, task: Task, num_steps: int,
                 **extra: Any) -> Optional[dict[str, Any]]:
    if self.cache is None or opt.baseline is None:  # learned optimizers are cheap to rerun
      return None
    return {"what": what, "protocol": PROTOCOL, "baseline": opt.baseline, "task": repr(task),
            "num_steps": num_steps, "eval_batches": self.eval_batches, **extra}

  def grid(self, opt: Optimizer) -> list[float]:
    """The tuning grid: a baseline's LR grid, or for a tuned LO ``step_mult_grid``
    with as many points as AdamW's LR grid (the same tuning budget)."""
    def lr_grid(name):
      return subsample_grid(self.lr_grids.get(name) or baselines.default_lr_grid(name),
                            self.lr_grid_points)
    if opt.baseline is not None:
      return lr_grid(opt.baseline)
    return step_mult_grid(len(lr_grid(REFERENCE)))

  def tune(self, opt: Optimizer, task: Task, num_steps: int) -> dict[str, Any]:
    key = (opt.label, task.name, num_steps)
    grid = self.grid(opt)
    name = "lr" if opt.baseline is not None else "step_mult"
    cache_key = self._cache_key("tuning", opt, task, num_steps, lr_grid=grid,
                                seeds=self.tuning_seeds)
    if key not in self.tuning and cache_key is not None:
      cached = self.cache.load(cache_key)
      if cached is not None:
        self.log(f"  tuned {opt.label} on {task.name}: lr={cached['chosen_lr']:g} (cached)")
        self.tuning[key] = dict(cached, optimizer=opt.label)
    if key not in self.tuning:
      curves = train_curves(opt.make_tx(task, num_steps), task, num_steps, self.tuning_seeds,
                            lrs=grid, eval_params=opt.eval_params,
                            eval_batches=self.eval_batches)
      best = pick_lr(grid, curves.test_loss)
      self.log(f"  tuned {opt.label} on {task.name} ({num_steps} steps, {len(grid)} {name}s x "
               f"{len(self.tuning_seeds)} seeds, {curves.seconds:.1f}s): {name}={grid[best]:g}")
      self.tuning[key] = {
          "optimizer": opt.label, "tuning_task": task.name, "num_steps": num_steps,
          "hparam": opt.hparam, "grid": grid, "chosen": grid[best],
          "seeds": self.tuning_seeds, "lr_grid": grid,
          "mean_final_train_loss": [mean_or_inf(r) for r in curves.final_train_loss],
          "final_train_loss_per_seed": curves.final_train_loss,
          "mean_test_loss": [mean_or_inf(r) for r in curves.test_loss],
          "num_diverged": curves.diverged.sum(axis=-1),
          "chosen_lr": grid[best] if opt.baseline is not None else None,
          "chosen_index": best,
          "at_grid_edge": len(grid) > 1 and best in (0, len(grid) - 1),
          "all_diverged": bool(np.all(curves.diverged)),
          "seconds": curves.seconds,
      }
      if cache_key is not None:
        self.cache.store(cache_key, self.tuning[key])
    return self.tuning[key]

  def run(self, opt: Optimizer, entry: SuiteEntry) -> dict[str, Any]:
    num_steps = self.horizon(entry)
    key = (opt.label, entry.task.name, num_steps)
    if key in self.runs:
      return self.runs[key]
    # Tuned: the chosen LR (baselines, cached) or step multiplier (LOs); untuned: none.
    tuning = self.tune(opt, entry.tuning_task or entry.task, num_steps) if opt.tuned else None
    lr = None if tuning is None else tuning["chosen_lr"]   # None for a learned optimizer
    every = test_curve_every(num_steps)
    cache_key = self._cache_key("run", opt, entry.task, num_steps, learning_rate=lr,
                                seeds=self.seeds, test_every=every)
    cached = self.cache.load(cache_key) if cache_key is not None else None
    if cached is not None:
      self.log(f"  ran {opt.label} on {entry.task.name} (cached)")
      self.runs[key] = dict(cached, optimizer=opt.label)
      return self.runs[key]
    if opt.baseline is None and tuning is None:
      curves = self._untuned_lo_curves(opt, entry.task, num_steps, every)
    else:
      curves = train_curves(opt.make_tx(entry.task, num_steps), entry.task, num_steps,
                            self.seeds, lrs=None if tuning is None else [tuning.get("chosen", lr)],
                            eval_params=opt.eval_params, eval_batches=self.eval_batches,
                            test_every=every)
    result = _run_result(opt, curves, lr, self.seeds, lr_index=None if tuning is None else 0,
                         test_every=every)
    if opt.baseline is None:
      result["step_mult"] = 1.0 if tuning is None else tuning["chosen"]
    chosen = ("hparam", "chosen") if opt.tune_step_mult else ("chosen_lr",)
    result["tuning"] = tuning and {k: tuning[k] for k in ("tuning_task", "num_steps", *chosen,
                                                          "at_grid_edge", "all_diverged")}
    if cache_key is not None:
      self.cache.store(cache_key, result)
    self.log(f"  ran {opt.label} on {entry.task.name} ({num_steps} steps, "
             f"{curves.seconds:.1f}s): final train loss {result['final_train_loss']:.4g}, "
             f"{result['num_diverged']} diverged")
    self.runs[key] = result
    return result

  def entry_results(self, optimizers: Sequence[Optimizer], entry: SuiteEntry) -> dict[str, Any]:
    num_steps = self.horizon(entry)
    results = {opt.label: dict(self.run(opt, entry)) for opt in optimizers}
    reference = reference_label(optimizers)
    ref = results[reference]
    ref_steps = np.asarray(ref["curve"]["step"])
    ref_median = np.asarray(ref["curve"]["train_loss_median"])
    ranks = average_ranks([r["test_loss"] for r in results.values()])
    train_ranks = average_ranks([r["final_train_loss"] for r in results.values()])
    for (label, r), rank, train_rank in zip(results.items(), ranks, train_ranks):
      r["rank"], r["train_rank"] = rank, train_rank
      if label == reference:  # 1 by definition (unless it diverged: then undefined)
        ok = math.isfinite(r["final_train_loss"])
        r["speedup"] = {"value": 1.0 if ok else None, "bound": "=" if ok else None,
                        "reference_steps": num_steps if ok else None}
      else:
        r["speedup"] = speedup(ref_steps, ref_median, np.asarray(r["curve"]["step"]),
                               np.asarray(r["curve"]["train_loss_median"]))
    return {"task": entry.task.name, "num_steps": num_steps,
            "suite_num_steps": entry.num_steps,
            "tuning_task": (entry.tuning_task or entry.task).name,
            "parameterization": entry.task.parameterization, "results": results}


def suite_entries(suite: str, task_filter: Optional[str] = None,
                  data_dir: Optional[str] = None) -> list[SuiteEntry]:
  """The entries of ``suite`` whose task name matches the regex ``task_filter``
  (all without one); a ValueError if the filter leaves none."""
  entries = [e for e in get_suite(suite, data_dir)
             if task_filter is None or re.search(task_filter, e.task.name)]
  if not entries:
    raise ValueError(f"--tasks {task_filter!r} matches no task of suite {suite!r}.")
  return entries


def reported_seeds(first_seed: int, seeds: int) -> range:
  """The reported seeds ``first_seed .. first_seed + seeds - 1``; ValueError
  where they would reach the tuning seeds (or go below 0)."""
  reported = range(first_seed, first_seed + seeds)
  if first_seed < 0 or reported.stop > TUNING_SEED_OFFSET:
    raise ValueError(f"reported seeds must lie in 0..{TUNING_SEED_OFFSET - 1} (the tuning seeds "
                     f"start at {TUNING_SEED_OFFSET}); got first_seed={first_seed} with "
                     f"{seeds} seeds. Pick a smaller first seed.")
  return reported


def evaluate(optimizers: Sequence[Optimizer], suites: Sequence[str], seeds: int = 3,
             tuning_seeds: int = TUNING_SEEDS, data_dir: Optional[str] = None,
             max_steps: Optional[int] = None, lr_grid_points: Optional[int] = None,
             eval_batches: int = EVAL_BATCHES, log: Callable[[str], None] = print,
             task_filter: Optional[str] = None, cache_dir: Optional[str] = None,
             first_seed: int = 0) -> dict[str, Any]:
  """Run the protocol on ``suites``; return the JSON-ready results dict.

  The reported seeds are ``first_seed .. first_seed + seeds - 1``: a candidate
  that was chosen on some seeds reads optimistically on them, so comparisons
  against it belong on fresh ones.
  ``task_filter``: a regex; only suite entries whose task name matches it run
  (a reduced evaluation, recorded in the settings). ``cache_dir``: reuse the
  tuned baselines' results from earlier invocations (``BaselineCache``)."""
  suites = check_suites(suites)
  reported = reported_seeds(first_seed, seeds)
  labels = [o.label for o in optimizers]
  reference = reference_label(optimizers)
  entries = {name: suite_entries(name, task_filter, data_dir) for name in suites}
  for name, suite in entries.items():  # fail on missing datasets before training anything
    for entry in suite:
      for task in {entry.task, entry.tuning_task or entry.task}:
        task.data()
  evaluator = Evaluator(reported, tuning_seeds, max_steps, lr_grid_points, eval_batches, log,
                        cache_dir=cache_dir)
  start = time.perf_counter()
  out_suites = {}
  for name, suite in entries.items():
    log(f"suite {name}: {len(suite)} tasks")
    tasks = [evaluator.entry_results(optimizers, entry) for entry in suite]
    summary = {}
    for label in labels:
      rows = [t["results"][label] for t in tasks]
      summary[label] = {"average_rank": float(np.mean([r["rank"] for r in rows])),
                        "average_train_rank": float(np.mean([r["train_rank"] for r in rows])),
                        "max_loss_spike": float(max(r["max_loss_spike"] for r in rows)),
                        "num_diverged": sum(r["num_diverged"] for r in rows),
                        "num_runs": sum(len(r["seeds"]) for r in rows)}
    out_suites[name] = {"tasks": tasks, "summary": summary}
  return finite_or_none({
      "protocol": PROTOCOL,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "versions": records.versions(),
      "device": records.device_info(),
      "settings": {"suites": list(suites), "seeds": list(reported),
                   "tuning_seeds": evaluator.tuning_seeds, "max_steps": max_steps,
                   "lr_grid_points": lr_grid_points, "eval_batches": eval_batches,
                   "step_mult_tuned": any(o.tune_step_mult for o in optimizers),
                   "task_filter": task_filter,
                   "max_curve_points": MAX_CURVE_POINTS, "smooth_fraction": SMOOTH_FRACTION,
                   "reference": reference},
      "optimizers": [o.describe() for o in optimizers],
      "tuning": list(evaluator.tuning.values()),
      "suites": out_suites,
      "seconds": time.perf_counter() - start,
  })

