"""Meta-validation (issue 19 part 4): the score against θ₀, the best export, no
recompilation after the first validation, resume, and that validating does not
change meta-training's own results (θ bit-identical with and without it)."""

import json
import math
import os

import jax
import numpy as np
import pytest

import lopt
import meta_tasks
from meta_tasks import ImageMLPTask, SuiteEntry
from training import config as config_lib
from training import meta_validation, tracking, trainer
from training.meta_validation import DIVERGED_RATIO, geometric_mean, task_ratio

from cli_helpers import REPO_ROOT, load_script

plot_meta_validation = load_script("plot_meta_validation")

# A tiny validation suite: two small digits MLPs, full horizons of 30 and 40 steps.
_TASK = ImageMLPTask(dataset="digits", width=16, depth=2, batch_size=32)
TINY_SUITE = [SuiteEntry(_TASK, 30, _TASK),
              SuiteEntry(ImageMLPTask(dataset="digits", width=24, depth=2, batch_size=32), 40,
                         None)]


def _config(**overrides):
  # Meta-training on quadratic tasks: validation (on the digits MLPs above) does
  # not care what θ was trained on, and the outer step compiles in ~9 CPU-seconds
  # instead of ~15 for the tiny distribution's two digits MLPs (the tests' XLA
  # flags; 17 and 34 with XLA's defaults), and runs in 0.01 s instead of 0.5.
  base = dict(distribution="quadratic", outer_steps=4, log_every=2, checkpoint_every=100,
              validate_suite="smoke", wandb_mode="disabled")
  return config_lib.get_preset("tiny").replace(**{**base, **overrides})


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def test_a_warm_start_picked_on_the_validation_seeds_is_named(tmp_path):
  # a27's θ̄@2000 (mulo-m from 2026-12-05) and θ̄@3000 were each picked as its
  # best on screen-user-cpu seeds 300-307 (their metadata's meta_validation).
  picked = meta_validation.seeds_init_was_chosen_on
  candidate = os.path.join(REPO_ROOT, "results", "candidates", "mulo-a27-3000")
  a27_2000 = os.path.join(REPO_ROOT, "results", "candidates", "mulo-a27-2000")
  assert picked(candidate, "screen-user-cpu", list(range(296, 304))) == [300, 301, 302, 303]
  assert picked(a27_2000, "screen-user-cpu", list(range(300, 308))) == list(range(300, 308))
  assert picked(candidate, "screen-user-cpu", list(range(700, 708))) == []
  assert picked(candidate, "smoke", list(range(300, 308))) == []    # another suite
  assert picked("mulo-r", "screen-user-cpu", list(range(300, 308))) == []  # no such record
  assert picked(None, "screen-user-cpu", [300]) == []
  lines = []
  meta_validation.MetaValidator(
      _config(init_theta=candidate, validate_suite="screen-user-cpu", validate_first_seed=306,
              validate_seeds=4),
      str(tmp_path), entries=TINY_SUITE, log=lines.append)
  assert len(lines) == 1 and "WARNING" in lines[0] and "[306, 307]" in lines[0]
  meta_validation.MetaValidator(
      _config(init_theta=candidate, validate_suite="screen-user-cpu", validate_first_seed=700),
      str(tmp_path), entries=TINY_SUITE, log=lines.append)
  assert len(lines) == 1


def test_ratio_and_score_rules():
  assert task_ratio(0.5, 1.0) == 0.5 and task_ratio(2.0, 1.0) == 2.0
  assert task_ratio(math.inf, 1.0) == DIVERGED_RATIO            # θ diverged
  assert task_ratio(1000.0, 1.0) == DIVERGED_RATIO              # clipped
  assert task_ratio(1e-6, 1.0) == 1 / DIVERGED_RATIO
  assert task_ratio(1.0, math.inf) == 1 / DIVERGED_RATIO        # only θ₀ diverged
  assert task_ratio(math.inf, math.inf) == 1.0
  assert geometric_mean([1.0, 1.0, 1.0]) == 1.0
  assert geometric_mean([0.25, 4.0]) == pytest.approx(1.0)
  assert geometric_mean([0.5, 0.5, 4.0]) == pytest.approx(1.0)
  assert geometric_mean([DIVERGED_RATIO, 1.0]) == pytest.approx(math.sqrt(10))


def test_score_standard_error_closed_form_and_coverage():
  se = meta_validation.score_standard_error
  # One task, θ₀ flat over 3 seeds, θ at 1, 2, 3: u = x/2 - 1 = (-1/2, 0, 1/2),
  # var(u) = 1/4, se(log) = sqrt(1/12); score 2.
  assert se(2.0, [np.array([1.0, 2.0, 3.0])], [np.ones(3)]) == pytest.approx(
      2.0 * math.sqrt(1 / 12), rel=1e-12)
  # Paired seeds: θ = 0.8 θ₀ on every seed leaves no noise in the ratio.
  x0 = np.array([0.3, 0.5, 0.4, 0.9])
  assert se(0.8, [0.8 * x0], [x0]) == pytest.approx(0.0, abs=1e-15)
  # Pinned tasks add nothing: diverged seed, clipped ratio. One seed: nan.
  assert se(1.0, [np.array([1.0, np.inf]), 100 * x0], [np.ones(2), x0]) == 0.0
  assert math.isnan(se(1.0, [np.array([1.0])], [np.array([1.0])]))
  # Coverage: over many draws of 3 tasks × 8 lognormal seeds (θ₀ and θ with
  # independent noise), the predicted se matches the spread of the score.
  rng = np.random.default_rng(0)
  means, sig, S = np.array([0.02, 0.5, 2.3]), np.array([0.3, 0.1, 0.02]), 8
  scores, ses = [], []
  for _ in range(4000):
    x = [m * np.exp(s * rng.standard_normal(S)) for m, s in zip(means, sig)]
    x0 = [m * np.exp(s * rng.standard_normal(S)) for m, s in zip(means, sig)]
    score = geometric_mean([a.mean() / b.mean() for a, b in zip(x, x0)])
    scores.append(score)
    ses.append(se(score, x, x0))
  assert np.median(ses) == pytest.approx(np.std(scores), rel=0.12)


def test_config_fields_are_bookkeeping_and_validated():
  c = _config(validate_every=3)
  assert {"validate_every", "validate_suite", "validate_seeds",
          "validate_first_seed"} <= set(c.BOOKKEEPING)
  assert "validate_every" not in c.recipe()
  assert config_lib.get_preset("tiny").validate_every == 0   # off by default
  for bad, field in ((dict(validate_every=-1), "validate_every"),
                     (dict(validate_seeds=0), "validate_seeds"),
                     (dict(validate_first_seed=-1), "validate_first_seed"),
                     (dict(validate_every=1, validate_suite="nope"), "validate_suite"),
                     (dict(validate_every=1, validate_suite="heldout-user-cpu"),
                      "validate_suite")):
    with pytest.raises(config_lib.ConfigError, match=field):
      _config(**bad)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The tiny preset for 4 outer steps, without and with validation every 2
  (the second run split in two calls: a resume)."""
  plain = str(tmp_path_factory.mktemp("plain"))
  validated = str(tmp_path_factory.mktemp("validated"))
  state_plain = trainer.run(_config(), plain, progress=False)

  compiles = []
  real_call = meta_validation.MetaValidator.__call__

  def counting_call(self, step, theta):
    before = tracking.compile_count()
    out = real_call(self, step, theta)
    compiles.append((step, tracking.compile_count() - before))
    return out

  mp = pytest.MonkeyPatch()
  mp.setattr(meta_tasks, "get_suite", lambda name, data_dir=None: list(TINY_SUITE))
  mp.setattr(meta_validation.MetaValidator, "__call__", counting_call)
  try:
    state_validated = trainer.run(_config(validate_every=2), validated, progress=False)
  finally:
    mp.undo()
  return dict(plain=plain, validated=validated, state_plain=state_plain,
              state_validated=state_validated, compiles=compiles)


def test_validation_does_not_change_meta_training(runs):
  for a, b in zip(_leaves(runs["state_plain"]), _leaves(runs["state_validated"])):
    np.testing.assert_array_equal(a, b)     # θ, outer state, particles, keys: bit-identical
  plain = {r["step"]: r for r in tracking.read_metrics(runs["plain"])}
  validated = {r["step"]: r for r in tracking.read_metrics(runs["validated"])}
  assert sorted(plain) == sorted(validated) == [2, 4]
  for step in (2, 4):
    assert validated[step]["meta_loss"] == plain[step]["meta_loss"]
    assert "meta_valid/score" not in plain[step]


def test_validation_records_reference_and_best(runs):
  workdir = runs["validated"]
  records = {r["step"]: r for r in tracking.read_metrics(workdir)}
  with open(os.path.join(workdir, meta_validation.REF_FILE)) as f:
    ref = json.load(f)
  names = [e.task.name for e in TINY_SUITE]
  assert ref["tasks"] == names and ref["seeds"] == [0] and ref["suite"] == "smoke"
  for n in names:   # per seed too (one seed here: no standard error)
    assert np.mean(ref["test_loss_seeds"][n]) == pytest.approx(ref["test_loss"][n], rel=1e-12)
  assert all(records[step]["meta_valid/score_se"] is None for step in (2, 4))
  best = 1.0
  for step in (2, 4):
    r = records[step]
    ratios = [r[f"meta_valid/ratio/{n}"] for n in names]
    for n in names:   # ratio = test loss / θ₀'s test loss, as logged
      assert r[f"meta_valid/ratio/{n}"] == pytest.approx(
          task_ratio(r[f"meta_valid/test_loss/{n}"], ref["test_loss"][n]), rel=1e-12)
    assert r["meta_valid/score"] == pytest.approx(geometric_mean(ratios), rel=1e-12)
    assert r["meta_valid/is_best"] == int(r["meta_valid/score"] < best)
    best = min(best, r["meta_valid/score"])
    assert r["meta_valid/best_score"] == pytest.approx(best)
  best_dir = os.path.join(workdir, meta_validation.BEST_DIR)
  if best < 1.0:   # exported: what load_pretrained reads
    meta = lopt.load_metadata(best_dir)["meta_validation"]
    assert meta["score"] == pytest.approx(best)
    assert records[meta["outer_step"]]["meta_valid/score"] == pytest.approx(best)
  else:            # θ₀ stayed the best: nothing exported
    assert not os.path.exists(best_dir)


def test_no_recompilation_after_the_first_validation(runs):
  # The first validation compiles one program per suite entry (θ₀ and θ share
  # it: θ is an argument; a hit of the tests' persistent XLA cache compiles
  # nothing); the next one, with a new θ, compiles nothing.
  (first_step, first), (second_step, second) = runs["compiles"]
  assert (first_step, second_step) == (2, 4)
  assert first <= 2 * len(TINY_SUITE) and second == 0
  records = {r["step"]: r for r in tracking.read_metrics(runs["validated"])}
  assert records[2]["theta_norm"] != records[4]["theta_norm"]   # θ did change
  for r in (records[2], records[4]):   # the meta-gradient's split: ‖ĝ‖² = signal + noise
    assert r["grad_noise_sq"] > 0 and np.isfinite(r["grad_signal_sq"])
    assert r["grad_signal_sq"] + r["grad_noise_sq"] == pytest.approx(r["grad_norm"]**2, rel=1e-4)
    # Records every 2 steps: each averages its own step and the one before.
    assert r["grad_split_steps"] == 2 and r["grad_noise_sq_mean"] > 0


def test_validator_reuses_its_compiled_programs_and_exports_the_best(tmp_path):
  config = _config(validate_every=1)
  (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
  v = meta_validation.MetaValidator(config, str(tmp_path), entries=TINY_SUITE[:1],
                                    log=lambda s: None)
  theta0 = trainer.initial_theta(config)
  first = v(1, theta0)               # compiles; θ₀ against itself
  assert first["meta_valid/score"] == 1.0 and first["meta_valid/is_best"] == 0
  assert not (tmp_path / meta_validation.BEST_DIR).exists()
  theta = jax.tree_util.tree_map(lambda x: np.asarray(x) * np.float32(1.01), theta0)
  before = tracking.compile_count()
  second = v(2, theta)
  assert tracking.compile_count() == before      # a new θ: the same compiled program
  if hasattr(v.sweeps[0]._run, "_cache_size"):   # and no retrace (the XLA cache aside)
    assert v.sweeps[0]._run._cache_size() == 1
  name = TINY_SUITE[0].task.name
  # A reference twice as high makes θ score 0.5 x its true ratio: the best, exported.
  v.ref = {name: 2 * v.ref[name]}
  (tmp_path / "metrics.jsonl").write_text(
      json.dumps({"step": 2, "inner_steps": 640, "cpu_hours": 0.25}) + "\n")
  third = v(3, theta)
  assert third["meta_valid/score"] == pytest.approx(second["meta_valid/score"] / 2)
  assert third["meta_valid/is_best"] == 1 and third["meta_valid/score"] < 1.0
  lo, loaded = lopt.load_pretrained(tmp_path / meta_validation.BEST_DIR)
  assert lo == config.lo
  for a, b in zip(_leaves(loaded), _leaves(theta)):
    np.testing.assert_array_equal(a, b)
  meta = lopt.load_metadata(tmp_path / meta_validation.BEST_DIR)["meta_validation"]
  assert meta["outer_step"] == 3 and meta["score"] == pytest.approx(third["meta_valid/score"])
  assert meta["ratios"][name] == pytest.approx(third[f"meta_valid/ratio/{name}"])
  # The run's budget up to that step (its newest metrics row) travels with it.
  budget = lopt.load_metadata(tmp_path / meta_validation.BEST_DIR)["training"]
  assert (budget["outer_steps"], budget["inner_steps"], budget["cpu_hours"]) == (3, 640, 0.25)
  # A worse score later is not exported.
  v.ref = {name: v.ref[name] / 2}
  assert v(4, theta)["meta_valid/is_best"] == 0
  assert lopt.load_metadata(tmp_path / meta_validation.BEST_DIR)["meta_validation"][
      "outer_step"] == 3


def test_resume_keeps_the_best_and_refuses_another_suite(tmp_path):
  config = _config(validate_every=1)
  name = TINY_SUITE[0].task.name
  ref = {"suite": "smoke", "seeds": [0], "tasks": [name],
         "num_steps": {name: TINY_SUITE[0].num_steps}, "test_loss": {name: 1.0}}
  (tmp_path / meta_validation.REF_FILE).write_text(json.dumps(ref))
  (tmp_path / "metrics.jsonl").write_text(
      "".join(json.dumps(r) + "\n" for r in ({"step": 1, "meta_valid/score": 0.9},
                                             {"step": 2, "meta_valid/score": 0.7},
                                             {"step": 3, "meta_valid/score": 0.5})))
  v = meta_validation.MetaValidator(config, str(tmp_path), start_step=2,
                                    entries=TINY_SUITE[:1], log=lambda s: None)
  assert v.best == 0.7 and v.ref == {name: 1.0}   # step 3 will be re-run
  with pytest.raises(ValueError, match="validate_seeds"):
    meta_validation.MetaValidator(config.replace(validate_seeds=2), str(tmp_path),
                                  entries=TINY_SUITE[:1])


def test_first_seed_validates_those_seeds_with_the_same_numbers(tmp_path):
  # Seeds 1.. alone read what seed 1 reads beside seed 0; the record names them,
  # so a resume with other seeds is refused.
  theta0 = trainer.initial_theta(_config())
  name = TINY_SUITE[0].task.name
  both = meta_validation.MetaValidator(_config(validate_every=1, validate_seeds=2),
                                       str(tmp_path / "a"), entries=TINY_SUITE[:1])
  one = meta_validation.MetaValidator(
      _config(validate_every=1, validate_first_seed=1), str(tmp_path / "b"),
      entries=TINY_SUITE[:1])
  assert both.seeds == [0, 1] and one.seeds == [1] and one.describe()["seeds"] == [1]
  x2, x1 = both.seed_losses(theta0)[name], one.seed_losses(theta0)[name]
  assert x1.shape == (1,) and x1[0] == pytest.approx(x2[1], rel=1e-6) and x2[0] != x2[1]


def test_reference_without_seeds_is_completed_and_its_means_kept(tmp_path):
  # meta_valid_ref.json from before the per-seed record: one more evaluation of
  # θ₀ adds them; the stored means (so the scores) stay; with 2 seeds the
  # logged standard error is the paired delta-method one.
  config = _config(validate_every=1, validate_seeds=2)
  name = TINY_SUITE[0].task.name
  ref = {"suite": "smoke", "seeds": [0, 1], "tasks": [name],
         "num_steps": {name: TINY_SUITE[0].num_steps}, "test_loss": {name: 1.0}}
  (tmp_path / meta_validation.REF_FILE).write_text(json.dumps(ref))
  v = meta_validation.MetaValidator(config, str(tmp_path), entries=TINY_SUITE[:1],
                                    log=lambda s: None)
  assert v.ref_seeds is None
  theta0 = trainer.initial_theta(config)
  theta = jax.tree_util.tree_map(lambda x: np.asarray(x) * np.float32(1.01), theta0)
  r = v(1, theta)
  stored = json.loads((tmp_path / meta_validation.REF_FILE).read_text())
  assert stored["test_loss"] == {name: 1.0} and v.ref == {name: 1.0}
  x0 = v.seed_losses(theta0)[name]
  np.testing.assert_allclose(stored["test_loss_seeds"][name], x0, rtol=1e-12)
  x = v.seed_losses(theta)[name]
  assert r[f"meta_valid/test_loss/{name}"] == pytest.approx(x.mean(), rel=1e-6)
  assert r["meta_valid/score"] == pytest.approx(x.mean() / 1.0, rel=1e-6)
  u = x / x.mean() - x0 / x0.mean()
  assert r["meta_valid/score_se"] == pytest.approx(
      r["meta_valid/score"] * math.sqrt(np.var(u, ddof=1) / 2), rel=1e-6)
  # A new validator reads the completed file: nothing re-evaluated.
  again = meta_validation.MetaValidator(config, str(tmp_path), entries=TINY_SUITE[:1])
  np.testing.assert_allclose(again.ref_seeds[name], x0, rtol=1e-12)


def test_plot(tmp_path):
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
      {"step": 5, "meta_loss": 1.0},
      {"step": 10, "meta_loss": 1.0, "meta_valid/score": 0.9},
      {"step": 20, "meta_loss": 1.0, "meta_valid/score": 0.8, "meta_valid/score_se": 0.05},
      {"step": 30, "meta_loss": 1.0, "meta_valid/score": 1.2, "meta_valid/score_se": None})))
  steps, scores, best = plot_meta_validation.read_curve(str(tmp_path))
  assert steps == [0, 10, 20, 30] and scores == [1.0, 0.9, 0.8, 1.2] and best == 20
  assert plot_meta_validation.read_standard_errors(str(tmp_path)) == {20: 0.05}
  out = tmp_path / "curve.png"
  assert plot_meta_validation.main([str(tmp_path), "--out", str(out)]) == 0
  assert out.stat().st_size > 1000
  assert plot_meta_validation.main([str(tmp_path / "missing")]) == 2
  # θ₀'s legend names a warm start where config.json has one.
  assert plot_meta_validation.start_label(str(tmp_path)) == "θ₀ (untrained start) = 1"
  (tmp_path / "config.json").write_text(json.dumps({"init_theta": "runs/a/export_best"}))
  assert plot_meta_validation.start_label(str(tmp_path)) == \
      "θ₀ (warm start: runs/a/export_best) = 1"


def test_export_entry_point_of_multi_process_runs(tmp_path):
  # Process 0 of a multi-process run exports through a fresh process running
  # ``python -m training.meta_validation WORKDIR OUT TMP``: θ's leaves in an npz.
  config = _config(validate_every=1)
  (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
  theta = jax.tree_util.tree_map(lambda x: np.asarray(x) * np.float32(0.5),
                                 trainer.initial_theta(config))
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  np.savez(tmp / "theta.npz", *_leaves(theta))
  meta = {"meta_validation": {"outer_step": 7, "score": 0.8, "ratios": {"a": 0.8}}}
  (tmp / "metadata.json").write_text(json.dumps(meta))
  out = tmp_path / "best"
  assert meta_validation.main([str(tmp_path), str(out), str(tmp)]) == 0
  lo, loaded = lopt.load_pretrained(out)
  assert lo == config.lo
  for a, b in zip(_leaves(loaded), _leaves(theta)):
    np.testing.assert_array_equal(a, b)
  assert lopt.load_metadata(out)["meta_validation"]["outer_step"] == 7
