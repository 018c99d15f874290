"""Evaluation: the CLI end to end on the smoke suite (report.md == results.json),
a learned-optimizer checkpoint as an optimizer, NaN safety, one compile per
sweep, the tuning argmin, the speedup in closed form, and bad input."""

import dataclasses
import json
import os
import re

import jax
import numpy as np
import pytest

import lopt
from lopt import baselines
import meta_tasks
from meta_tasks import QuadraticTask
from training import evaluation, report, stats, sweep, tracking
from training.cli import evaluate as evaluate_cli



def _strict_json(path):
  def refuse(name):
    raise ValueError(f"non-standard JSON constant {name}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


@pytest.fixture(scope="module")
def lo_checkpoint(tmp_path_factory):
  path = tmp_path_factory.mktemp("lo") / "mulo-untrained"
  lopt.save_pretrained(path, lopt.MLPLOpt(), lopt.MLPLOpt().init(jax.random.PRNGKey(0)))
  return str(path)


# The smoke suite's first task only (--tasks): each task costs 5 compiles (the
# LO untuned, its step-multiplier tuning and tuned run, AdamW's tuning and run);
# measured on the 2-core CPU, cold: the fixture takes 28 s, 47 s with both tasks.
SMOKE_TASK = "mlp-mup_digits8_w32_d3_relu_b128"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, lo_checkpoint):
  """The whole CLI, shrunk: one task, 20 steps, 2-point LR grids, 2 seeds (5 compiles)."""
  workdir = str(tmp_path_factory.mktemp("smoke"))
  rc = evaluate_cli.main(["--optimizers", f"mulo={lo_checkpoint}", "--suite", "smoke",
                          "--tasks", f"^{SMOKE_TASK}$",
                          "--workdir", workdir, "--max_steps", "20", "--lr_grid_points", "2",
                          "--seeds", "2", "--tuning_seeds", "2", "--eval_batches", "2",
                          "--note", "test run"])
  assert rc == 0
  return workdir, _strict_json(os.path.join(workdir, "results.json"))


def test_first_seed_reports_those_seeds_with_the_same_numbers(smoke_run, lo_checkpoint, tmp_path):
  """--first_seed 1 --seeds 1 reports seed 1 alone, and its run is seed 1's of
  the 2-seed smoke run (each seed's run is independent of the others)."""
  _, full = smoke_run
  rc = evaluate_cli.main(["--optimizers", f"mulo={lo_checkpoint}", "--suite", "smoke",
                          "--tasks", f"^{SMOKE_TASK}$", "--workdir", str(tmp_path / "w"),
                          "--max_steps", "20", "--lr_grid_points", "2", "--seeds", "1",
                          "--first_seed", "1", "--tuning_seeds", "2", "--eval_batches", "2",
                          "--no_step_mult_tuning"])
  assert rc == 0
  one = _strict_json(str(tmp_path / "w" / "results.json"))
  assert one["settings"]["seeds"] == [1] and full["settings"]["seeds"] == [0, 1]
  pick = lambda res: res["suites"]["smoke"]["tasks"][0]["results"]["mulo"]
  assert pick(one)["seeds"] == [1]
  np.testing.assert_allclose(pick(one)["test_loss_per_seed"], pick(full)["test_loss_per_seed"][1:],
                             rtol=1e-5)
  with pytest.raises(ValueError, match="reported seeds must lie in 0..999"):
    evaluation.evaluate([], ["smoke"], seeds=2, first_seed=999)


def test_smoke_writes_all_outputs(smoke_run):
  workdir, results = smoke_run
  assert os.path.isfile(os.path.join(workdir, "report.md"))
  plots = sorted(os.listdir(os.path.join(workdir, "plots")))
  assert plots == sorted(report.plot_name(t["task"], 20)
                         for t in results["suites"]["smoke"]["tasks"])
  assert results["protocol"] == evaluation.PROTOCOL
  assert {"jax", "optax", "flax", "lopt_commit"} <= set(results["versions"])
  assert results["device"]["platform"] == "cpu"
  assert results["settings"]["max_steps"] == 20
  assert results["settings"]["task_filter"] == f"^{SMOKE_TASK}$"
  assert [t["task"] for t in results["suites"]["smoke"]["tasks"]] == [SMOKE_TASK]
  # AdamW was not asked for: added as the reference, and the report says so.
  adamw = [o for o in results["optimizers"] if o["label"] == "adamw"]
  assert adamw and adamw[0]["added_as_reference"]
  text = open(os.path.join(workdir, "report.md")).read()
  assert "added as the speedup reference" in text and "--max_steps 20" in text
  assert "test run" in text
  for task in results["suites"]["smoke"]["tasks"]:
    r = task["results"]["adamw"]
    assert len(r["curve"]["step"]) == 20 and r["curve"]["step"][-1] == 20
    assert np.array(r["curve"]["train_loss_per_seed"]).shape == (2, 20)
    assert r["speedup"] == {"value": 1.0, "bound": "=", "reference_steps": 20}
    assert r["learning_rate"] in baselines.default_lr_grid("adamw")
    # The test curve: every max(1, 20 // TEST_CURVE_POINTS) = 1 update; its last
    # point is the final params' test loss (the same fixed batches), for every optimizer.
    for res in task["results"].values():
      c = res["test_curve"]
      assert c["step"] == list(range(1, 21))
      per_seed = np.array(c["test_loss_per_seed"], np.float64)
      assert per_seed.shape == (2, 20)
      np.testing.assert_allclose(per_seed[:, -1], res["test_loss_per_seed"], rtol=1e-6)
      np.testing.assert_allclose(c["test_loss_median"], np.median(per_seed, axis=0), rtol=1e-12)


def _parse_tables(text):
  """Markdown tables as lists of {column: cell}, keyed by the preceding suite."""
  tables, suite, header = {}, None, None
  for line in text.splitlines():
    m = re.match(r"## Suite `(.+)`", line)
    if m:
      suite = m.group(1)
    if not line.startswith("|"):
      header = None
      continue
    cells = [c.strip() for c in line.strip("|").split("|")]
    if header is None:
      header = cells
      tables.setdefault((suite, tuple(header)), [])
    elif not set(line) <= set("|-"):
      tables[(suite, tuple(header))].append(dict(zip(header, cells)))
  return tables


def _same_number(cell, value, digits):
  """The cell is ``value`` printed with ``digits`` significant digits (formatting only)."""
  if value is None:
    return cell in ("diverged", "—", "untuned")
  return float(cell) == float(f"{value:.{digits}g}")


def test_report_numbers_equal_results_json(smoke_run):
  workdir, results = smoke_run
  tables = _parse_tables(open(os.path.join(workdir, "report.md")).read())
  rows = tables[("smoke", report.TASK_COLUMNS)]
  expected = list(report.task_rows(results))
  assert len(rows) == len(expected) == 3  # 1 task x (mulo, mulo (tuned), adamw)
  for row, r in zip(rows, expected):
    assert (row["task"], int(row["steps"]), row["optimizer"]) == (r["task"], r["steps"],
                                                                  r["optimizer"])
    assert _same_number(row["final train loss"], r["final_train_loss"], 4)
    assert _same_number(row["test loss"], r["test_loss"], 4)
    per_seed = np.asarray(results["suites"]["smoke"]["tasks"][0]["results"][r["optimizer"]]
                          ["test_loss_per_seed"], np.float64)
    assert per_seed.shape == (2,)   # s.e. of 2 seeds: |x0 - x1| / 2
    assert _same_number(row["test loss s.e."], abs(per_seed[0] - per_seed[1]) / 2, 2)
    assert row["test accuracy"] == "—" or abs(float(row["test accuracy"])
                                              - r["test_accuracy"]) <= 5e-5
    assert _same_number(row["rank (test)"], r["rank"], 3)
    assert _same_number(row["rank (train)"], r["train_rank"], 3)
    assert row["max loss spike"] == f"{r['max_loss_spike']:.3g}×"
    if r["optimizer"] == "mulo (tuned)":
      assert row["LR"] == f"step×{r['step_mult']:g}"
    else:
      assert row["LR"] == ("untuned" if r["lr"] is None else f"{r['lr']:g}")
    s = r["speedup"]
    m = re.fullmatch(r"([<>]?)([0-9.e+-]+)×", row["speedup vs tuned AdamW"])
    assert m and (m.group(1) or "=") == s["bound"] and _same_number(m.group(2), s["value"], 3)
  summary = tables[("smoke", report.SUMMARY_COLUMNS)]
  for row in summary:
    x = results["suites"]["smoke"]["summary"][row["optimizer"]]
    assert float(row["average rank (test loss)"]) == float(f"{x['average_rank']:.2f}")
    assert float(row["average rank (train loss)"]) == float(f"{x['average_train_rank']:.2f}")
    assert row["diverged runs"] == f"{x['num_diverged']}/{x['num_runs']}"


def test_learned_optimizer_checkpoint_runs(smoke_run, lo_checkpoint):
  _, results = smoke_run
  described = [o for o in results["optimizers"] if o["label"] == "mulo"][0]
  assert described["kind"] == "learned" and described["checkpoint"] == lo_checkpoint
  assert described["architecture"] == "MLPLOpt"
  tuned = [o for o in results["optimizers"] if o["label"] == "mulo (tuned)"][0]
  assert tuned["step_mult_tuned"] and not described["step_mult_tuned"]
  for task in results["suites"]["smoke"]["tasks"]:
    r = task["results"]["mulo"]   # untuned: as exported, step multiplier 1
    assert r["learning_rate"] is None and r["tuning"] is None and r["step_mult"] == 1.0
    assert r["num_diverged"] == 0 and np.isfinite(r["final_train_loss"])
    assert np.all(np.isfinite(r["curve"]["train_loss_per_seed"]))
    t = task["results"]["mulo (tuned)"]
    assert t["learning_rate"] is None and t["tuning"]["hparam"] == "step_mult"
    assert t["step_mult"] == t["tuning"]["chosen"]
  # The LO's step multiplier gets the same tuning budget as AdamW's LR: as many
  # grid points, the same seeds and horizon, the test-loss rule.
  by_opt = {}
  for t in results["tuning"]:
    by_opt.setdefault(t["optimizer"], []).append(t)
  assert set(by_opt) == {"adamw", "mulo (tuned)"}
  for a, m in zip(by_opt["adamw"], by_opt["mulo (tuned)"]):
    assert len(m["grid"]) == len(a["lr_grid"]) == 2
    assert m["grid"] == stats.step_mult_grid(2) and m["hparam"] == "step_mult"
    assert (m["seeds"], m["num_steps"], m["tuning_task"]) == (a["seeds"], a["num_steps"],
                                                             a["tuning_task"])
    best = int(np.argmin([np.inf if x is None else x for x in m["mean_test_loss"]]))
    assert m["chosen"] == m["grid"][best]


def test_step_mult_grid():
  assert stats.step_mult_grid(7) == [0.1778, 0.3162, 0.5623, 1.0, 1.778, 3.162, 5.623]
  assert stats.step_mult_grid(1) == [1.0]
  assert stats.step_mult_grid(2) == [0.5623, 1.0]
  for n in range(1, 10):
    g = stats.step_mult_grid(n)
    assert len(g) == n and 1.0 in g and g == sorted(g)


def test_pretrained_step_mult_scales_every_update(lo_checkpoint):
  params = {"w": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
            "b": np.ones(4, np.float32)}
  grads = jax.tree.map(lambda p: np.cos(3 * p) + 0.1, params)
  kinds = lopt.mup.kinds_from_paths(params, {r"w": "input"})
  plain = lopt.pretrained_optax(lo_checkpoint, num_steps=10, mup=kinds)
  half = lopt.pretrained_optax(lo_checkpoint, num_steps=10, mup=kinds, step_mult=0.5)
  one = lopt.pretrained_optax(lo_checkpoint, num_steps=10, mup=kinds, step_mult=1.0)
  s_plain, s_half = plain.init(params), half.init(params)
  assert jax.tree_util.tree_structure(one.init(params)) == jax.tree_util.tree_structure(
      s_plain)   # step_mult=1: the transformation unchanged
  both = jax.jit(lambda s1, s2: (plain.update(grads, s1, params), half.update(grads, s2, params)))
  for _ in range(3):   # the same inputs each step: the LO's own state evolves identically
    (u_plain, s_plain), (u_half, s_half) = both(s_plain, s_half)
    assert any(np.any(np.asarray(u) != 0) for u in jax.tree.leaves(u_plain))
    for a, b in zip(jax.tree.leaves(u_plain), jax.tree.leaves(u_half)):
      np.testing.assert_array_equal(np.asarray(b), np.float32(0.5) * np.asarray(a))
  assert lopt.check_num_steps(s_half, 10) == 3   # the LO state is still found
  for bad in (0, -1.0, float("nan"), float("inf"), True, "2", 1e-50):
    with pytest.raises(ValueError, match="step_mult"):
      lopt.pretrained_optax(lo_checkpoint, num_steps=10, step_mult=bad)


def test_tuned_lo_at_step_mult_1_is_the_untuned_lo(lo_checkpoint):
  untuned = evaluation.parse_optimizer(f"mulo={lo_checkpoint}")
  tuned = dataclasses.replace(untuned, label="mulo (tuned)", tune_step_mult=True)
  assert tuned.tuned and not untuned.tuned and tuned.hparam == "step_mult"
  a = sweep.train_curves(untuned.make_tx(QUADRATIC, 8), QUADRATIC, 8, seeds=[0])
  b = sweep.train_curves(tuned.make_tx(QUADRATIC, 8), QUADRATIC, 8, seeds=[0],
                              lrs=[1.0, 0.5])
  np.testing.assert_allclose(b.train_loss[0], a.train_loss, rtol=1e-6)
  assert not np.allclose(b.train_loss[1], a.train_loss)


QUADRATIC = QuadraticTask(dim=4, condition_number=1.0, noise=0.0, batch_size=2)


def test_untuned_los_of_one_form_share_one_compile_and_match_the_closed_over_run():
  lo = lopt.MLPLOpt()
  theta_a = lo.init(jax.random.PRNGKey(0))
  theta_b = jax.tree.map(lambda x: x * 1.5 + 0.01, theta_a)
  a = evaluation.Optimizer("a", checkpoint="a", lo=lo, theta=theta_a)
  b = evaluation.Optimizer("b", checkpoint="b", lo=lo, theta=theta_b)
  entry = meta_tasks.SuiteEntry(task=QUADRATIC, num_steps=9, tuning_task=None)
  ev = evaluation.Evaluator([0, 1], log=lambda line: None)
  before = tracking.compile_count()
  ra, rb = ev.run(a, entry), ev.run(b, entry)
  assert tracking.compile_count() - before == 1 and len(ev.lo_sweeps) == 1
  every = evaluation.test_curve_every(9)
  for opt, r in ((a, ra), (b, rb)):   # θ as an argument = θ baked into its own program
    ref = sweep.train_curves(opt.make_tx(QUADRATIC, 9), QUADRATIC, 9, [0, 1], test_every=every)
    np.testing.assert_allclose(r["final_train_loss_per_seed"], ref.final_train_loss, rtol=1e-5)
    np.testing.assert_allclose(r["test_loss_per_seed"], ref.test_loss, rtol=1e-5)
    assert r["max_loss_spike"] == pytest.approx(np.max(ref.max_spike), rel=1e-5)
  assert ra["test_loss"] != rb["test_loss"]


def test_absurd_lr_is_recorded_as_diverged_in_one_compile():
  calls = []

  def make_tx(lr):
    calls.append(lr)
    return baselines.get("sgd", learning_rate=lr)

  before = tracking.compile_count()
  curves = sweep.train_curves(make_tx, QUADRATIC, 12, seeds=[0, 1], lrs=[0.4, 1e6])
  assert tracking.compile_count() - before == 1  # the whole LR x seed sweep
  assert len(calls) == 1                          # traced once, LR traced, not baked in
  assert curves.train_loss.shape == (2, 2, 12)
  np.testing.assert_array_equal(curves.diverged, [[False, False], [True, True]])
  assert np.all(np.isfinite(curves.final_train_loss[0]))
  assert np.all(curves.final_train_loss[1] == np.inf) and np.all(curves.test_loss[1] == np.inf)
  assert curves.test_accuracy is None  # the quadratic has no accuracy metric


def test_test_curve_is_the_test_loss_after_every_kth_update():
  # QUADRATIC has no noise and unit curvatures: its train and test losses are
  # the same function, the minibatch loss of step t is the loss after update
  # t - 1, and SGD at lr 0.4 multiplies the loss by 0.81 per update.
  make_tx = lambda lr: baselines.get("sgd", learning_rate=lr)
  before = tracking.compile_count()
  run = sweep.Sweep(make_tx, QUADRATIC, 12, grid=True, test_every=3)
  c = run(np.asarray([0.4, 1e6], np.float32), [0, 1])
  assert tracking.compile_count() - before == 1
  assert c.test_curve.shape == (2, 2, 4)
  np.testing.assert_allclose(c.test_curve[0, :, -1], c.test_loss[0], rtol=1e-6)
  np.testing.assert_allclose(c.test_curve[0, :, :-1], c.train_loss[0][:, [3, 6, 9]], rtol=1e-6)
  np.testing.assert_allclose(c.test_curve[0, :, 1:] / c.test_curve[0, :, :-1], 0.81 ** 3,
                             rtol=1e-4)
  assert np.all(c.test_curve[1] == np.inf)  # the diverged LR, as its final losses
  assert sweep.Sweep(lambda _: make_tx(0.4), QUADRATIC, 12)(None, [0]).test_curve is None
  for bad in (-1, 13, 2.0, True):
    with pytest.raises(ValueError, match="test_every"):
      sweep.Sweep(make_tx, QUADRATIC, 12, test_every=bad)


def test_tuning_picks_the_known_best_lr():
  # 0.5·mean_i (x_i - c_i)² in 4 dims: the gradient is r/4, so SGD with lr = 4
  # lands on the optimum in one step (loss exactly 0); 0.4 contracts by 0.9 per
  # step; 40 multiplies the error by -9 per step and diverges.
  ev = evaluation.Evaluator(seeds=[0], tuning_seeds=2, log=lambda _: None,
                            lr_grids={"sgd": [40.0, 0.4, 4.0]})
  sgd = evaluation.Optimizer(label="sgd", baseline="sgd")
  tuning = ev.tune(sgd, QUADRATIC, 10)
  assert tuning["chosen_lr"] == 4.0 and tuning["chosen_index"] == 2
  assert tuning["mean_final_train_loss"][2] < 1e-10  # 0 up to rounding of x - (x - c)
  assert list(tuning["num_diverged"]) == [2, 0, 0]
  assert ev.tune(sgd, QUADRATIC, 10) is tuning  # cached per (optimizer, task, horizon)


def test_baseline_cache_reuses_tuning_and_runs_across_evaluators(tmp_path):
  entry = meta_tasks.SuiteEntry(task=QUADRATIC, num_steps=10, tuning_task=None)
  sgd = evaluation.Optimizer(label="sgd", baseline="sgd")

  def evaluator(log):
    return evaluation.Evaluator(seeds=[0, 1], tuning_seeds=2, log=log,
                                lr_grids={"sgd": [40.0, 0.4, 4.0]}, cache_dir=str(tmp_path))

  first_log, second_log = [], []
  first = evaluator(first_log.append).run(sgd, entry)
  second = evaluator(second_log.append).run(sgd, entry)
  assert not any("cached" in line for line in first_log)
  assert sum("cached" in line for line in second_log) == 2  # tuning and the run
  assert second["learning_rate"] == first["learning_rate"] == 4.0
  np.testing.assert_array_equal(second["final_train_loss_per_seed"],
                                first["final_train_loss_per_seed"])
  assert second["test_loss"] == first["test_loss"]
  # A different horizon is a different key: nothing reused.
  third_log = []
  evaluator(third_log.append).run(sgd, meta_tasks.SuiteEntry(task=QUADRATIC, num_steps=8, tuning_task=None))
  assert not any("cached" in line for line in third_log)


def test_pick_lr_handles_nan_ties_and_all_diverged():
  lrs = [1e-1, 1e-3, 1e-2]
  assert stats.pick_lr(lrs, np.array([[0.5, 0.5], [0.4, np.nan], [0.3, 0.3]])) == 2
  assert stats.pick_lr(lrs, np.array([[0.3, 0.3], [0.5, 0.5], [0.3, 0.3]])) == 2  # tie
  assert stats.pick_lr(lrs, np.full((3, 2), np.nan)) == 1  # all diverged: smallest


def test_speedup_closed_form():
  ref_steps = np.arange(1, 1001)
  ref = 1.0 / ref_steps                      # AdamW reaches 1/k at step k
  steps = np.arange(1, 101)

  def ending_at(final):
    return np.linspace(1.0, final, 100)

  exact = stats.speedup(ref_steps, ref, steps, ending_at(1 / 400), smooth=1)
  assert exact == {"value": 4.0, "bound": "=", "reference_steps": 400}
  never = stats.speedup(ref_steps, ref, steps, ending_at(1 / 5000), smooth=1)
  assert never["bound"] == ">" and never["value"] == 10.0       # > 1000/100
  first = stats.speedup(ref_steps, ref, steps, ending_at(3.0), smooth=1)
  assert first["bound"] == "<" and first["value"] == 0.01       # < 1/100
  diverged = stats.speedup(ref_steps, ref, steps, np.full(100, np.inf), smooth=1)
  assert diverged["value"] is None
  # Trailing-mean smoothing over 2 points: the optimizer's target is the mean of
  # its last two points and AdamW's curve is smoothed the same way.
  smoothed = stats.speedup(ref_steps, ref, steps, np.r_[np.ones(98), 0.006, 0.004],
                                smooth=2)
  k = int(np.argmax((ref[:-1] + ref[1:]) / 2 <= 0.005)) + 1  # first smoothed point <= 0.005
  assert smoothed["reference_steps"] == ref_steps[k] and smoothed["value"] == ref_steps[k] / 100


def test_max_loss_spike_metric():
  curves = np.array([[2.0, 1.0, 3.0, 0.5],        # peak 3 over a start of 2
                     [2.0, 1.0, 0.5, 0.1],        # never above the start
                     [1.0, np.nan, 0.5, 0.1]])    # non-finite: +inf
  np.testing.assert_array_equal(sweep.max_loss_spike(curves), [1.5, 1.0, np.inf])
  # The run-level number is the max over seeds, and a diverged seed is +inf.
  out = sweep._mark_divergence(
      _FakeTask(), {"train_loss": curves, "final_train_loss": np.array([0.5, 0.1, 0.1]),
                    "test_loss": np.array([0.6, 0.2, 0.2]),
                    "normalized_final_train_loss": np.array([0.2, 0.05, 0.05])}, 1.0)
  np.testing.assert_array_equal(out.max_spike, [1.5, 1.0, np.inf])
  assert list(out.diverged) == [False, False, True]


class _FakeTask:
  MAX_NORMALIZED_LOSS = 2.0


def test_window_means_and_ranks():
  steps, means = stats.window_means(np.arange(1.0, 1001.0), max_points=200)
  np.testing.assert_array_equal(steps, np.arange(5, 1001, 5))
  np.testing.assert_allclose(means, np.arange(3.0, 1000.0, 5.0))  # mean of 1..5 is 3
  short_steps, short = stats.window_means(np.array([[1.0, np.nan, 3.0]]))
  np.testing.assert_array_equal(short_steps, [1, 2, 3])
  assert np.isnan(short[0, 1])
  assert stats.average_ranks([1.0, None, 1.0, 0.5, float("nan")]) == [2.5, 4.5, 2.5, 1, 4.5]
  assert stats.subsample_grid([1, 2, 3, 4, 5, 6, 7], 3) == [1, 4, 7]


@pytest.mark.parametrize("args, message", [
    (["--optimizers", "adamw,notanopt", "--suite", "smoke"], "not a baseline (adam, adamw"),
    (["--optimizers", "adamw", "--suite", "nosuchsuite"], "heldout-width-cpu"),
    (["--optimizers", "lo=/nonexistent/ckpt", "--suite", "smoke"], "does not exist"),
    (["--optimizers", "adamw", "--suite", "heldout-width"], "tfds build"),
])
def test_bad_input_exits_2_with_a_clear_message(args, message, tmp_path, capsys):
  assert evaluate_cli.main(args + ["--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and "Traceback" not in err
  assert not (tmp_path / "results.json").exists()


def test_wrong_format_checkpoint_is_a_clear_error(tmp_path, capsys):
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "metadata.json").write_text(json.dumps({"format": "something-else"}))
  empty = tmp_path / "empty"
  empty.mkdir()
  for path, message in ((bad, "is missing"), (empty, "no metadata.json")):
    rc = evaluate_cli.main(["--optimizers", f"x={path}", "--suite", "smoke",
                            "--workdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_wandb_offline_logs_the_summary_table(smoke_run, monkeypatch):
  pytest.importorskip("wandb")
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir, results = smoke_run
  run_dir = report.log_to_wandb(results, workdir, project="lopt-eval-test")
  assert run_dir is not None and "offline-run" in run_dir


def test_one_wandb_mode_rule_for_evaluation_and_meta_training(monkeypatch, tmp_path, capsys):
  """tracking.wandb_mode (used by report.log_to_wandb and WandbLogger): WANDB_MODE,
  else online only with an API key (env or ~/.netrc), online without one -> offline."""
  from training.tracking import wandb_mode
  monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
  monkeypatch.delenv("NETRC", raising=False)
  monkeypatch.delenv("WANDB_MODE", raising=False)
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  assert wandb_mode() == "offline" and wandb_mode("disabled") == "disabled"
  assert wandb_mode("online") == "offline" and "needs an API key" in capsys.readouterr().out
  monkeypatch.setenv("WANDB_MODE", "disabled")
  assert wandb_mode() == "disabled"
  monkeypatch.delenv("WANDB_MODE")
  (tmp_path / ".netrc").write_text("machine api.wandb.ai login user password k\n")
  (tmp_path / ".netrc").chmod(0o600)
  assert wandb_mode() == "online"
  (tmp_path / ".netrc").unlink()
  monkeypatch.setenv("WANDB_API_KEY", "k")
  assert wandb_mode() == "online" == wandb_mode("online")


def test_screen_prints_the_evaluators_numbers_and_the_best_point_along_training(
    lo_checkpoint, capsys):
  from training.cli import screen
  assert screen.main([f"mulo={lo_checkpoint}", "--suite", "smoke", "--max_steps", "10",
                      "--seeds", "2"]) == 0
  out = capsys.readouterr().out
  assert re.search(r"^wall-clock per optimizer, compiles included: mulo \d+ s$", out, re.M)
  with pytest.raises(SystemExit):   # a filter that matches nothing is refused
    screen.main([f"mulo={lo_checkpoint}", "--suite", "smoke", "--tasks", "no-such-task"])
  assert "matches no task" in capsys.readouterr().err
  row = next(l for l in out.splitlines() if l.startswith("| mulo |"))
  cells = [c.strip() for c in row.strip("|").split("|")][1:]
  ev = evaluation.Evaluator(range(2), max_steps=10, log=lambda _: None)
  opt = evaluation.parse_optimizer(f"mulo={lo_checkpoint}")
  entries = meta_tasks.get_suite("smoke")
  assert len(cells) == len(entries) == 2
  for cell, entry in zip(cells, entries):
    r = ev.run(opt, entry)
    test, train, spike, best_at = (x.strip() for x in cell.split("/"))
    assert float(test) == float(f"{r['test_loss']:.3g}")
    assert float(train) == float(f"{r['final_train_loss']:.3g}")
    best, step = best_at.split("@")
    median = np.array(r["test_curve"]["test_loss_median"], np.float64)
    assert float(best) == float(f"{median.min():.3g}") and int(step) == 1 + int(np.argmin(median))
    # The curve's last point is the final test loss: its median bounds the best from above.
    assert median.min() <= np.median(r["test_loss_per_seed"]) * (1 + 1e-6)
  assert "average rank by test loss" in out
  # Fresh seeds: --first_seed 5 --seeds 1 reads seed 5 alone.
  assert screen.main([f"mulo={lo_checkpoint}", "--suite", "smoke", "--max_steps", "10",
                      "--seeds", "1", "--first_seed", "5"]) == 0
  out = capsys.readouterr().out
  assert "mean over seeds 5..5" in out
  row = next(l for l in out.splitlines() if l.startswith("| mulo |"))
  first = [c.strip() for c in row.strip("|").split("|")][1].split("/")[0]
  r5 = evaluation.Evaluator([5], max_steps=10, log=lambda _: None).run(opt, entries[0])
  assert float(first) == float(f"{r5['test_loss']:.3g}")
  with pytest.raises(SystemExit):
    screen.main([f"mulo={lo_checkpoint}", "--suite", "smoke", "--first_seed", "-1"])
