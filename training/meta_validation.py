"""Meta-validation: is meta-training helping? (issue 19 part 4)

Every ``validate_every`` outer steps (and at the last step) the trainer calls a
``MetaValidator`` with the current θ. It trains every task of the screen suite
(``validate_suite``, default ``screen-user-cpu``; never a held-out suite) for
its full horizon with ``validate_seeds`` seeds (``validate_first_seed`` on) through the
evaluation library's compiled sweep (``training.sweep.Sweep``), θ being an
argument of the compiled program: only the first validation compiles.

Score: the geometric mean over the suite's tasks of

    ratio = test loss of θ / test loss of θ₀

(θ₀ = ``trainer.initial_theta(config)``, the run's untrained θ; its score is
1.0; lower is better). A test loss is the mean over seeds, +inf if any seed
diverged; a diverged run's ratio is ``DIVERGED_RATIO`` (10), and every ratio is
clipped to [1/10, 10] (a task where θ₀ itself diverged and θ did not counts
1/10, both diverged 1), so one task can move the score by at most ×10^(1/n).

Its standard error, ``score_se``, comes from the seeds' spread (the delta
method on log score, each seed paired with θ₀'s on the same data and init,
``score_standard_error``): with a few seeds one small-loss task's noise can
move the score by 10%, and a user must see whether a change is larger than
that.

θ₀ is evaluated once, at the run's first validation, and its per-task test
losses (means, and per seed for the standard error) are kept in
``WORKDIR/meta_valid_ref.json`` (written atomically; read back on resume; a
resume with another suite or seed count is refused, since the scores would
not compare; a file written before the per-seed record gets it added by one
more evaluation of θ₀, its means, and so the scores, kept). θ₀ is always a
candidate: a θ becomes the best only if its score is below every earlier
score, 1.0 (θ₀) included, and it is then exported to ``WORKDIR/export_best``
(``lopt.save_pretrained``; metadata
``meta_validation``: outer step, score, per-task ratios and test losses; read
it with ``lopt.load_pretrained(WORKDIR / "export_best")``). On resume the best
so far is the lowest score that ``metrics.jsonl`` holds at steps up to the
restored one.

What is logged at a validation step (merged into that step's record of
metrics.jsonl and wandb): ``meta_valid/score``, ``meta_valid/score_se``
(None below 2 seeds), ``meta_valid/best_score``, ``meta_valid/is_best`` (1/0),
``meta_valid/seconds``, and per task ``meta_valid/test_loss/<task>`` and
``meta_valid/ratio/<task>``.

Validation reads θ and nothing else: the meta-training's own state, keys and
results are bit-identical with and without it (tests/test_meta_validation.py).
In a multi-process run only process 0 validates (the others wait at the next
outer step's collectives); its ``export_best`` is written by a fresh
single-process child, as orbax's save would wait for the other processes.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from training import evaluation
from training.stats import finite_or_none, mean_or_inf
from training.sweep import Sweep

DIVERGED_RATIO = 10.0
REF_FILE = "meta_valid_ref.json"
BEST_DIR = "export_best"
PREFIX = "meta_valid/"


def task_ratio(loss: float, ref: float) -> float:
  """Test loss of θ over θ₀'s, clipped to [1/DIVERGED_RATIO, DIVERGED_RATIO];
  a non-finite (diverged) loss counts DIVERGED_RATIO (θ₀'s: 1/DIVERGED_RATIO)."""
  ok, ref_ok = math.isfinite(loss), math.isfinite(ref)
  if not ok:
    return 1.0 if not ref_ok else DIVERGED_RATIO
  if not ref_ok:
    return 1.0 / DIVERGED_RATIO
  if ref <= 0 or loss <= 0:  # a loss that reached 0: the smaller one wins outright
    return 1.0 if loss == ref else (1.0 / DIVERGED_RATIO if loss < ref else DIVERGED_RATIO)
  return float(np.clip(loss / ref, 1.0 / DIVERGED_RATIO, DIVERGED_RATIO))


def geometric_mean(ratios: Sequence[float]) -> float:
  return float(np.exp(np.mean(np.log(np.asarray(ratios, np.float64)))))


def score_standard_error(score: float, seed_losses: Sequence[np.ndarray],
                         ref_seed_losses: Sequence[np.ndarray]) -> float:
  """Standard error of ``score`` (the geometric mean over tasks of
  mean_s L_s / mean_s L₀_s) from the spread over S paired seeds. Per task,
  to first order log ratio moves with u_s = L_s / mean L - L₀_s / mean L₀,
  so var(log ratio) = var(u) / S (sample variance); tasks are independent:
  se(log score) = sqrt(Σ var) / n_tasks, se(score) = score · se(log score).
  A task whose ratio is pinned (a diverged seed, a loss <= 0, or clipped at
  ×DIVERGED_RATIO) does not move with the seeds and adds 0. nan below 2 seeds."""
  total, n = 0.0, len(seed_losses)
  for x, x0 in zip(seed_losses, ref_seed_losses):
    x, x0 = np.asarray(x, np.float64), np.asarray(x0, np.float64)
    if x.size < 2:
      return math.nan
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(x0))):
      continue
    m, m0 = x.mean(), x0.mean()
    if m <= 0 or m0 <= 0 or not 1 / DIVERGED_RATIO < m / m0 < DIVERGED_RATIO:
      continue
    total += np.var(x / m - x0 / m0, ddof=1) / x.size
  return float(score * math.sqrt(total) / n)


def _means(seed_losses: dict[str, np.ndarray]) -> dict[str, float]:
  """Per task: the mean over seeds (+inf if any seed diverged)."""
  return {k: mean_or_inf(v) for k, v in seed_losses.items()}


def _task_names(entries) -> list[str]:
  """Unique names: the task's, with ``@<steps>`` where a suite repeats a task."""
  names = [e.task.name for e in entries]
  return [n if names.count(n) == 1 else f"{n}@{e.num_steps}" for n, e in zip(names, entries)]


class MetaValidator:
  """Validates θ of one run on a suite; ``validator(step, theta)`` -> record.

  ``entries``: the suite entries (default ``meta_tasks.get_suite(config.validate_suite)``;
  tests pass a tiny one). Building it compiles nothing; the first call compiles
  one program per suite entry, later calls reuse them.
  """

  def __init__(self, config: Any, workdir: str, start_step: int = 0, entries=None,
               log: Callable[[str], None] = print):
    import meta_tasks
    self.config, self.workdir, self.log = config, workdir, log
    self.suite = config.validate_suite
    self.entries = list(entries if entries is not None else meta_tasks.get_suite(self.suite))
    if not self.entries:
      raise ValueError(f"validate_suite {self.suite!r} has no tasks.")
    self.names = _task_names(self.entries)
    first = config.validate_first_seed
    self.seeds = list(range(first, first + config.validate_seeds))
    make_tx = lambda e: lambda theta: evaluation.lo_optax(config.lo, theta, e.task, e.num_steps)
    self.sweeps = [Sweep(make_tx(e), e.task, e.num_steps) for e in self.entries]
    self.ref, self.ref_seeds = self._read_ref()
    self.best = self._best_before(start_step)
    reused = seeds_init_was_chosen_on(config.init_theta, self.suite, self.seeds)
    if reused:
      log(f"WARNING: init_theta {config.init_theta!r} was chosen as the best of a meta-validation "
          f"on {self.suite!r} with seeds {reused}, which this run validates on again: its score "
          "there carries those seeds' luck, so this run's scores against it read ≥ 1 even where "
          "θ is no worse (the winner's curse). Validate on seeds it was not chosen on "
          "(--validate_first_seed).")

  # ---------------------------------------------------------------- the record
  def describe(self) -> dict[str, Any]:
    return {"suite": self.suite, "seeds": self.seeds, "tasks": self.names,
            "num_steps": {n: e.num_steps for n, e in zip(self.names, self.entries)}}

  def _read_ref(self) -> tuple[dict[str, float] | None, dict[str, np.ndarray] | None]:
    """θ₀'s (mean, per-seed) test losses from meta_valid_ref.json; per-seed
    None in a file written before they were recorded."""
    path = os.path.join(self.workdir, REF_FILE)
    if not os.path.exists(path):
      return None, None
    try:
      with open(path) as f:
        data = json.load(f)
      losses = data["test_loss"]
      recorded = {k: data[k] for k in ("suite", "seeds", "tasks", "num_steps")}
    except (OSError, ValueError, KeyError, TypeError) as e:
      self.log(f"WARNING: {path} is unreadable ({type(e).__name__}); re-evaluating θ₀.")
      return None, None
    if recorded != self.describe():
      raise ValueError(
          f"{path} holds θ₀'s test losses for validation on {recorded['suite']!r} with seeds "
          f"{recorded['seeds']} ({len(recorded['tasks'])} tasks); this run asks "
          f"{self.suite!r} with seeds {self.seeds}, whose scores would not compare. Repeat "
          f"the original --validate_suite/--validate_seeds/--validate_first_seed, or delete {REF_FILE} and "
          f"{BEST_DIR} to restart validation.")
    as_float = lambda v: math.inf if v is None else float(v)
    seeds = data.get("test_loss_seeds")
    return ({k: as_float(v) for k, v in losses.items()},
            None if seeds is None else {k: np.array([as_float(x) for x in v], np.float64)
                                        for k, v in seeds.items()})

  def _best_before(self, start_step: int) -> float:
    """The lowest score logged at steps <= start_step (θ₀'s 1.0 if none is lower)."""
    path = os.path.join(self.workdir, "metrics.jsonl")
    if self.ref is None or not os.path.exists(path):
      return 1.0
    from training import tracking
    scores = [r.get(PREFIX + "score") for r in tracking.read_metrics(self.workdir)
              if r.get("step", 0) <= start_step]
    return min([1.0] + [float(x) for x in scores if isinstance(x, (int, float))])

  # -------------------------------------------------------------- evaluation
  def seed_losses(self, theta: Any) -> dict[str, np.ndarray]:
    """Per task: the test loss of each seed (+inf where it diverged)."""
    theta = jax.tree_util.tree_map(np.asarray, jax.device_get(theta))  # a host copy:
    # uncommitted inputs, the same compiled program whatever θ's sharding was.
    return {name: np.asarray(sweep(theta, self.seeds).test_loss, np.float64).reshape(-1)
            for name, sweep in zip(self.names, self.sweeps)}

  def test_losses(self, theta: Any) -> dict[str, float]:
    """Per task: the mean test loss over seeds (+inf if any seed diverged)."""
    return _means(self.seed_losses(theta))

  def reference(self) -> dict[str, float]:
    """θ₀'s per-task test losses: from meta_valid_ref.json, else evaluated and
    stored (its per-seed losses too: added to an older file, its means kept)."""
    if self.ref is None or self.ref_seeds is None:
      from lopt import diskio
      from training.trainer import initial_theta
      self.ref_seeds = self.seed_losses(initial_theta(self.config))
      if self.ref is None:
        self.ref = _means(self.ref_seeds)
      record = {**self.describe(), "theta": "initial_theta(config): outer step 0",
                "test_loss": finite_or_none(self.ref),
                "test_loss_seeds": finite_or_none(self.ref_seeds)}
      diskio.write_atomic(os.path.join(self.workdir, REF_FILE),
                          json.dumps(record, indent=1, sort_keys=True, allow_nan=False))
    return self.ref

  def __call__(self, step: int, theta: Any) -> dict[str, Any]:
    """Validate θ of outer step ``step``; export it if it is the best so far;
    return the metrics to log at ``step``."""
    start = time.perf_counter()
    ref = self.reference()
    seeds = self.seed_losses(theta)
    losses = _means(seeds)
    ratios = {k: task_ratio(losses[k], ref[k]) for k in self.names}
    score = geometric_mean(list(ratios.values()))
    se = score_standard_error(score, [seeds[k] for k in self.names],
                              [self.ref_seeds[k] for k in self.names])
    is_best = score < self.best
    if is_best:
      self.best = score
      self.export_best(step, theta, score, ratios, losses, se)
    seconds = time.perf_counter() - start
    self.log(f"meta-validation at outer step {step}: score {score:.4f} ± {se:.4f} s.e. "
             f"over {len(self.seeds)} seeds (θ₀ = 1), best "
             f"{self.best:.4f}{' (new best, exported)' if is_best else ''}, {seconds:.0f} s")
    record = {PREFIX + "score": score, PREFIX + "score_se": finite_or_none(se),
              PREFIX + "best_score": self.best,
              PREFIX + "is_best": int(is_best), PREFIX + "seconds": seconds}
    for k in self.names:
      record[PREFIX + "test_loss/" + k] = finite_or_none(losses[k])
      record[PREFIX + "ratio/" + k] = ratios[k]
    return record

  def export_best(self, step: int, theta: Any, score: float, ratios: dict[str, float],
                  losses: dict[str, float], score_se: float = math.nan) -> str:
    metadata = {"meta_validation": {
        "outer_step": int(step), "score": float(score),
        "score_se": finite_or_none(score_se), "suite": self.suite,
        "seeds": self.seeds, "ratios": ratios,
        "test_loss": finite_or_none(losses),
        "reference_test_loss": finite_or_none(self.reference()),
        "rule": "geometric mean over tasks of test loss / θ₀'s (θ₀ = 1.0; lower is better)"}}
    out = os.path.join(self.workdir, BEST_DIR)
    if jax.process_count() > 1:
      _export_in_subprocess(self.workdir, out, theta, metadata)
    else:
      export_theta(self.config, self.workdir, out, theta, metadata)
    return out


def export_theta(config: Any, workdir: str, out_dir: str, theta: Any,
                 metadata: dict[str, Any]) -> str:
  """``lopt.save_pretrained`` of θ with the run's export metadata plus ``metadata``."""
  from lopt.pretrained import save_pretrained
  from training.export import run_metadata
  step = metadata["meta_validation"]["outer_step"]
  meta = {**run_metadata(config, workdir, step), **metadata}
  return str(save_pretrained(out_dir, config.lo, theta, meta))


def _export_in_subprocess(workdir: str, out_dir: str, theta: Any,
                          metadata: dict[str, Any]) -> None:
  """``export_theta`` in a ``training.export.run_cpu_child`` (process 0 of a
  multi-process run)."""
  from training.export import run_cpu_child
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(theta))]
  with tempfile.TemporaryDirectory(dir=workdir) as tmp:
    np.savez(os.path.join(tmp, "theta.npz"), *leaves)
    with open(os.path.join(tmp, "metadata.json"), "w") as f:
      json.dump(metadata, f)
    run_cpu_child(["training.meta_validation", workdir, out_dir, tmp],
                  f"exporting the best θ to {out_dir}")


def main(argv: list[str] | None = None) -> int:
  """``python -m training.meta_validation WORKDIR OUT_DIR TMP``: export θ from
  TMP/theta.npz (leaves in the order of the run's θ) with TMP/metadata.json."""
  from training import checkpoint
  from training.trainer import initial_theta
  workdir, out_dir, tmp = (argv if argv is not None else sys.argv[1:])
  config = checkpoint.read_config(workdir)
  treedef = jax.tree_util.tree_structure(initial_theta(config))
  with np.load(os.path.join(tmp, "theta.npz")) as z:
    leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
  with open(os.path.join(tmp, "metadata.json")) as f:
    metadata = json.load(f)
  export_theta(config, workdir, out_dir, jax.tree_util.tree_unflatten(treedef, leaves), metadata)
  return 0


def seeds_init_was_chosen_on(init_theta: str | None, suite: str, seeds: list[int]) -> list[int]:
  """The seeds of ``seeds`` on which the warm start ``init_theta`` was picked
  as a run's best by meta-validation on ``suite`` (its metadata's
  ``meta_validation``, which only ``export_best`` and copies of it carry);
  [] without a warm start, a record, or a shared seed."""
  if init_theta is None:
    return []
  import lopt
  try:
    record = lopt.load_metadata(init_theta).get("meta_validation")
  except (OSError, ValueError):
    return []
  if not isinstance(record, dict) or record.get("suite") != suite:
    return []
  return sorted(set(record.get("seeds") or ()) & set(seeds))


def for_run(config: Any, workdir: str, start_step: int) -> MetaValidator | None:
  """The run's validator (process 0 of a run with ``validate_every`` > 0), else None."""
  if not config.validate_every or jax.process_index() != 0:
    return None
  return MetaValidator(config, workdir, start_step)


def is_validation_step(config: Any, step: int) -> bool:
  return bool(config.validate_every) and (step % config.validate_every == 0
                                          or step == config.outer_steps)


if __name__ == "__main__":
  raise SystemExit(main())
