"""Meta-training loop: resume equality, signals, config guards, corrupt checkpoints,
compile counts, export/load, and a real (tiny) meta-training that helps."""

import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from training import config as config_lib
from training import checkpoint, export, tracking, trainer

# Small and quick: quadratic inner tasks, 2 pairs, K=5, horizons 10-20.
FAST = dict(distribution="quadratic", num_pairs=2, truncation_length=5, min_horizon=10,
            max_horizon=20, outer_steps=6, warmup_steps=2, checkpoint_every=2,
            keep_checkpoints=5, log_every=1, wandb_mode="disabled")


def _fast(**overrides):
  return config_lib.get_preset("tiny", **{**FAST, **overrides})


def _theta_leaves(state):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(state.theta)]


def _strip_timing(records):
  return [{k: v for k, v in r.items() if k not in ("particle_steps_per_s", "cpu_hours")}
          for r in records]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("straight"))
  state = trainer.run(_fast(), workdir, progress=False)
  return workdir, state


def test_resume_after_preemption_is_bitwise_identical(straight_run, tmp_path):
  workdir, state = straight_run
  resumed_dir = str(tmp_path / "resumed")
  half = trainer.run(_fast(), resumed_dir, stop_after=3, progress=False)
  assert int(half.step) == 3
  resumed = trainer.run(_fast(), resumed_dir, progress=False)
  assert int(resumed.step) == 6
  for a, b in zip(_theta_leaves(state), _theta_leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  straight = _strip_timing(tracking.read_metrics(workdir))
  again = _strip_timing(tracking.read_metrics(resumed_dir))
  assert [r["step"] for r in again] == [1, 2, 3, 4, 5, 6]
  for r1, r2 in zip(straight, again):
    assert {k: v for k, v in r1.items() if k != "compiles"} == \
           {k: v for k, v in r2.items() if k != "compiles"}


def test_sigterm_checkpoints_and_resumes(straight_run, tmp_path):
  _, state = straight_run
  workdir = str(tmp_path / "signal")

  def send_sigterm(step, record):
    if step == 2:
      os.kill(os.getpid(), signal.SIGTERM)

  stopped = trainer.run(_fast(), workdir, callback=send_sigterm, progress=False)
  assert int(stopped.step) == 2
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored
  final = trainer.run(_fast(), workdir, progress=False)
  for a, b in zip(_theta_leaves(state), _theta_leaves(final)):
    np.testing.assert_array_equal(a, b)


def test_outer_step_compiles_once(straight_run):
  """No compilation after the first outer step. (The count at step 1 may be 0
  when the persistent compile cache already holds the program.)"""
  workdir, _ = straight_run
  compiles = [r["compiles"] for r in tracking.read_metrics(workdir)]
  assert len(compiles) == 6 and len(set(compiles)) == 1, compiles


def test_different_config_in_workdir_is_an_error(straight_run):
  workdir, _ = straight_run
  with pytest.raises(ValueError, match=r"sigma: workdir has 0.01, command asks 0.02"):
    trainer.run(_fast(sigma=0.02), workdir, progress=False)


def test_corrupt_checkpoint_falls_back_then_refuses(straight_run, tmp_path, capsys):
  src, _ = straight_run
  workdir = str(tmp_path / "corrupt")
  shutil.copytree(src, workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert steps[-1] == 6

  def corrupt(step):
    for root, _, files in os.walk(os.path.join(ckpt_dir, str(step), "state")):
      for name in files:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")

  corrupt(6)
  state = trainer.run(_fast(outer_steps=6), workdir, progress=False)
  assert "resuming from step 4" in capsys.readouterr().out
  assert int(state.step) == 6
  # The damaged step was moved aside and written again: the next run resumes from it.
  assert os.listdir(os.path.join(workdir, checkpoint.CORRUPT_DIR))[0].startswith("6-")
  trainer.run(_fast(outer_steps=6), workdir, progress=False)
  assert "resuming from step 6" not in capsys.readouterr().out.lower()
  for step in sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit()):
    corrupt(step)
  with pytest.raises(checkpoint.WorkdirError, match="none could be restored"):
    trainer.run(_fast(outer_steps=6), workdir, progress=False)


def test_presets_and_overrides():
  assert "mulo-m-es-single" in config_lib.preset_names()
  c = config_lib.get_preset("mulo-m-es-single", num_pairs=16)
  assert c.estimator == "es_single" and c.num_pairs == 16 and c.distribution == "mulo-m"
  assert (c.truncation_length, c.sigma, c.min_horizon, c.max_horizon) == (50, 0.01, 100, 1000)
  with pytest.raises(ValueError, match="Unknown preset 'nope'"):
    config_lib.get_preset("nope")
  with pytest.raises(ValueError, match=r"Unknown config fields \['sigmaa'\]"):
    config_lib.get_preset("tiny", sigmaa=1.0)
  with pytest.raises(ValueError, match="truncation_length"):
    config_lib.get_preset("tiny", truncation_length=500)


def test_export_and_load_pretrained(straight_run, tmp_path):
  workdir, state = straight_run
  out = export.export_workdir(workdir, str(tmp_path / "exported"))
  lo, theta = lopt.load_pretrained(out)
  assert lo == _fast().lo
  for a, b in zip(jax.tree_util.tree_leaves(theta), _theta_leaves(state)):
    np.testing.assert_array_equal(a, b)
  meta = lopt.load_metadata(out)
  assert meta["training"]["outer_steps"] == 6 and meta["parameterization"] == "mup"
  # A damaged metadata file gives a clear error.
  with open(os.path.join(out, "metadata.json"), "w") as f:
    json.dump({"format": "lopt-pretrained", "format_version": 99, "architecture": "MLPLOpt",
               "config": {}}, f)
  with pytest.raises(ValueError, match="format_version 99 is not supported"):
    lopt.load_pretrained(out)


def test_export_init_is_the_runs_untrained_theta(straight_run, tmp_path):
  workdir, _ = straight_run
  out = export.export_workdir(workdir, initial=True)
  assert out == os.path.join(workdir, "export_init")
  _, theta = lopt.load_pretrained(out)
  theta0 = trainer.MetaTrainer(_fast()).init(jax.random.PRNGKey(_fast().seed)).theta
  for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(theta0)):
    np.testing.assert_array_equal(a, np.asarray(b))
  assert lopt.load_metadata(out)["training"]["outer_steps"] == 0


def test_export_source_picks_the_named_step(straight_run, tmp_path):
  """WORKDIR@STEP exports that checkpoint's θ, @0 the untrained θ, a bare
  WORKDIR the newest; a malformed step is a clear error."""
  workdir, state = straight_run
  init = export.export_workdir(workdir, str(tmp_path / "init"), initial=True)
  newest = export.export_workdir(workdir, str(tmp_path / "newest"))
  step4 = export.export_workdir(workdir, str(tmp_path / "step4"), step=4)
  for source, expected in ((f"{workdir}@0", init), (workdir, newest), (f"{workdir}@4", step4)):
    out = export.export_source(source, str(tmp_path / source.replace(os.sep, "_")))
    for a, b in zip(jax.tree_util.tree_leaves(lopt.load_pretrained(out)[1]),
                    jax.tree_util.tree_leaves(lopt.load_pretrained(expected)[1])):
      np.testing.assert_array_equal(a, b)
  assert lopt.load_metadata(out)["training"]["outer_steps"] == 4
  theta0, theta4 = (jax.tree_util.tree_leaves(lopt.load_pretrained(p)[1]) for p in (init, step4))
  assert any(not np.array_equal(a, b) for a, b in zip(theta0, theta4))
  with pytest.raises(ValueError, match="WORKDIR@STEP"):
    export.export_source(f"{workdir}@last", str(tmp_path / "bad"))
  # scripts/evaluate.py takes the same source.
  from training.evaluation import parse_optimizer
  opt = parse_optimizer(f"{workdir}@4")
  assert opt.label.endswith("@4") and opt.checkpoint == os.path.join(workdir, "export@4")
  for a, b in zip(jax.tree_util.tree_leaves(opt.theta), theta4):
    np.testing.assert_array_equal(a, b)


def _heldout_losses(thetas, lo, tasks, num_steps, seeds=4):
  """For each θ of ``thetas``: the mean final training loss of ``tasks``
  trained by the LO at θ, over seeds (the evaluator's own training loop). θ is
  an argument of each task's compiled sweep, as in meta-validation: one compile
  per task serves every θ."""
  from training.sweep import Sweep
  seeds = list(range(100, 100 + seeds))
  losses = []
  for task in tasks:
    sweep = Sweep(lambda th, task=task: lo.as_optax(th, num_steps, mup=task.kinds), task,
                  num_steps)
    losses.append([sweep(theta, seeds).final_train_loss for theta in thetas])
  return [float(np.mean([per_task[i] for per_task in losses])) for i in range(len(thetas))]


def test_tiny_meta_training_improves_heldout_digits(tmp_path):
  """The `tiny` preset on one width (32) and 40 outer steps: θ after
  meta-training trains unseen digits MLP instances (new seeds; widths 32 and
  64, batch sizes 128 and 64) better than θ₀ does. Measured (mean final train
  loss over both tasks and 4 seeds, 60 inner steps): θ₀ 2.303 (its initial
  steps are tiny); θ after 30 outer steps 2.04, after 40 1.83, after 60 1.05."""
  import meta_tasks
  config = config_lib.get_preset("tiny", distribution="mulo-s-cpu", outer_steps=40,
                                 wandb_mode="disabled")
  state = trainer.run(config, str(tmp_path / "tiny"), progress=False)
  lo = config.lo
  theta0 = trainer.MetaTrainer(config).init(jax.random.PRNGKey(config.seed)).theta
  heldout = [e.task for e in meta_tasks.get_suite("smoke")]
  before, after = _heldout_losses([theta0, state.theta], lo, heldout, num_steps=60)
  assert after < before - 0.05, (before, after)


def test_log_meta_loss_is_the_log_of_the_normalized_loss():
  """Same keys, same trajectory: the log system reports log(linear + floor)."""
  import meta_tasks
  from training.lo_system import LOG_META_FLOOR, LOTrainingSystem, TruncationSchedule
  task = meta_tasks.get_distribution("quadratic").configs()[0]
  lo = _fast().lo
  theta = trainer.initial_theta(_fast())
  theta = jax.tree_util.tree_map(lambda x: x + 0.1, theta)  # non-zero steps
  outs = []
  for log in (False, True):
    system = LOTrainingSystem(lo, task, 5, TruncationSchedule(10, 20), log_meta_loss=log)
    state = system.init_state(jax.random.PRNGKey(0), random_offset=False)
    _, out = jax.jit(system.unroll)(theta, theta, state, jax.random.PRNGKey(1))
    outs.append(np.asarray(out.losses))
  linear, logged = outs
  assert np.all(linear > 0) and np.ptp(linear) > 0
  np.testing.assert_allclose(logged, np.log(linear + LOG_META_FLOOR), rtol=1e-5, atol=1e-6)
  assert config_lib.get_preset("tiny", log_meta_loss=True).log_meta_loss


def test_log_mean_meta_loss_hands_the_log_to_the_estimator():
  """The systems report linear losses and every estimator takes the log of
  each member's mean (floor LOG_META_FLOOR); the two logs exclude each other."""
  from training.lo_system import LOG_META_FLOOR
  config = config_lib.get_preset("tiny", log_mean_meta_loss=True)
  for estimator in ("es_single", "tbptt"):
    ests = trainer.MetaTrainer(config.replace(estimator=estimator)).estimators()
    assert ests and all(e.log_mean_floor == LOG_META_FLOOR and not e.system.log_meta_loss
                        for e in ests)
  assert all(e.log_mean_floor is None for e in trainer.MetaTrainer(_fast()).estimators())
  with pytest.raises(config_lib.ConfigError, match="log_mean_meta_loss"):
    config_lib.get_preset("tiny", log_mean_meta_loss=True, log_meta_loss=True)


def test_init_theta_warm_starts_a_run_from_a_pretrained_lo(straight_run, tmp_path):
  """A run with init_theta starts from the exported θ (a fresh outer optimizer),
  continues as a run of its own, and refuses an LO of another config."""
  workdir, state = straight_run
  src = export.export_workdir(workdir, str(tmp_path / "export"))
  warm = _fast(init_theta=str(src), outer_steps=2)
  for a, b in zip(jax.tree_util.tree_leaves(trainer.initial_theta(warm)), _theta_leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), b)
  started = trainer.MetaTrainer(warm).init(jax.random.PRNGKey(warm.seed))
  for a, b in zip(_theta_leaves(started), _theta_leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree_util.tree_leaves(started.opt_state)
             if jnp.issubdtype(x.dtype, jnp.floating))  # fresh Adam moments
  out = trainer.run(warm, str(tmp_path / "warm"), progress=False)
  assert int(out.step) == 2
  # The export's budget is the warm start's plus this run's.
  parent = lopt.load_metadata(str(src))["training"]
  meta = export.run_metadata(warm, str(tmp_path / "warm"), 2)["training"]
  own = tracking.read_metrics(str(tmp_path / "warm"))[-1]
  assert meta["warm_start"] == {"from": str(src), "outer_steps": 6,
                                "inner_steps": parent["inner_steps"],
                                "cpu_hours": parent["cpu_hours"]}
  assert meta["inner_steps"] == parent["inner_steps"] + own["inner_steps"]
  assert meta["cpu_hours"] == pytest.approx(parent["cpu_hours"] + own["cpu_hours"])
  moved = max(float(np.abs(a - b).max()) for a, b in zip(_theta_leaves(out), _theta_leaves(state)))
  assert moved > 0
  other = _fast(init_theta=str(src), **{"lo.hidden_size": 8})
  with pytest.raises(ValueError, match="init_theta .* holds a MLPLOpt"):
    trainer.initial_theta(other)
  with pytest.raises(ValueError, match="not a readable pretrained LO"):
    trainer.initial_theta(_fast(init_theta=str(tmp_path / "missing")))


def test_ship_reships_an_export_with_its_evaluation(straight_run, tmp_path):
  """lopt-ship NAME=EXPORT (e.g. WORKDIR/export_best, whose checkpoint may be
  rotated away) keeps θ, config and metadata and adds the evaluation headline."""
  from training.cli import ship
  workdir, _ = straight_run
  src = export.export_workdir(workdir, str(tmp_path / "export_best"))
  row = lambda test: {"final_train_loss": 0.1, "test_loss": test, "test_accuracy": 0.9,
                      "max_loss_spike": 1.0}
  results = {"command": "evaluate.py ...", "device": "cpu", "suites": {"s": {
      "summary": {"x": {"average_rank": 1.0}, "adamw": {"average_rank": 2.0}},
      "tasks": [{"task": "t", "num_steps": 10, "results": {"x": row(0.2), "adamw": row(0.3)}},
                {"task": "u", "num_steps": 10, "results": {"x": row(0.5), "adamw": row(0.4)}}]}}}
  path = tmp_path / "results.json"
  path.write_text(json.dumps(results))
  out = tmp_path / "ship"
  assert ship.main([f"x={src}", "--results", str(path), "--out", str(out),
                    "--description", "x=a test LO"]) == 0
  lo, theta = lopt.load_pretrained(str(out / "x"))
  lo0, theta0 = lopt.load_pretrained(str(src))
  assert lo == lo0
  for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(theta0)):
    np.testing.assert_array_equal(a, b)
  meta, meta0 = lopt.load_metadata(str(out / "x")), lopt.load_metadata(str(src))
  assert meta["training"] == {**meta0["training"], "accelerator_hours": None}
  suite = meta["evaluation"]["suites"]["s"]
  assert suite["beats_tuned_adamw_test_loss_fraction"] == 0.5 and meta["description"] == "a test LO"
  # Shipped under another name than its label in results.json: --label maps it.
  assert ship.main([f"y={src}", "--results", str(path), "--out", str(out), "--label", "y=x"]) == 0
  assert lopt.load_metadata(str(out / "y"))["evaluation"] == meta["evaluation"]
  with pytest.raises(SystemExit):  # no optimizer labelled y: a clear usage error
    ship.main([f"y={src}", "--results", str(path), "--out", str(out)])
