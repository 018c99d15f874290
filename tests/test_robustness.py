"""Bad input gets a clear one-line error, and nothing silently corrupts a run
(issue 13, part 2). One test per reported failure, then every flag of
``scripts/meta_train.py`` and ``scripts/evaluate.py`` driven with bad values.

The CLIs run in-process (``main(argv)``, capturing stderr and SystemExit);
only two end-to-end checks start a subprocess.
"""

import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from training import checkpoint, export, tracking, trainer
from training import config as config_lib

from cli_helpers import FAST, FAST_FLAGS, REPO_ROOT, load_script as _load_script
from cli_helpers import call as _call, fast_config as _fast

meta_train_cli = _load_script("meta_train")
evaluate_cli = _load_script("evaluate")


def _assert_one_line_error(err, *needles):
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1, f"expected one line, got:\n{err}"
  assert "Traceback" not in err and "error" in lines[0], err
  for needle in needles:
    assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _assert_same(a, b):
  for x, y in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def _truncate_largest_file(directory):
  files = [p for p in glob.glob(os.path.join(directory, "**", "*"), recursive=True)
           if os.path.isfile(p)]
  path = max(files, key=os.path.getsize)
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)


def _garble(directory):
  for path in glob.glob(os.path.join(directory, "**", "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "wb") as f:
        f.write(b"garbage")


def _steps(workdir):
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A completed 6-step run with checkpoints at 2, 4 and 6."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  state = trainer.run(_fast(), workdir, progress=False)
  assert _steps(workdir) == [2, 4, 6]
  return workdir, state


@pytest.fixture
def copy_of(finished, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(finished[0], workdir)
  return workdir


def _newest_restorable(workdir, capsys):
  """The step a resume would use, and whether it warned."""
  ckpt = checkpoint.Checkpointer(workdir, 5)
  try:
    abstract = jax.eval_shape(trainer.MetaTrainer(_fast()).init, jax.random.PRNGKey(0))
    step, _, _ = ckpt.restore_latest(abstract, _fast())
  finally:
    ckpt.close()
  return step, "WARNING" in capsys.readouterr().out


# ------------------------------------------------------------------ 1. corrupt θ item
def test_1_corrupt_theta_is_detected_on_resume_and_the_run_repairs_it(finished, copy_of, capsys):
  _, straight = finished
  _truncate_largest_file(os.path.join(copy_of, "checkpoints", "6", "theta"))
  code, out, err = _call(meta_train_cli.main, FAST_FLAGS + ["--workdir", copy_of], capsys)
  assert code == 0, err
  assert "checkpoint(s) [6] could not be restored" in out and "resuming from step 4" in out
  # Steps 5-6 were re-run (bitwise as before) and exported from the repaired checkpoint 6.
  step, theta = checkpoint.restore_theta(os.path.join(copy_of, "checkpoints"))
  assert step == 6
  _assert_same(theta, straight.theta)
  import lopt
  _, exported = lopt.load_pretrained(os.path.join(copy_of, "export"))
  _assert_same(exported, straight.theta)
  assert glob.glob(os.path.join(copy_of, checkpoint.CORRUPT_DIR, "6-*"))


def test_1_a_theta_item_that_differs_from_the_state_is_corrupt(copy_of, capsys):
  """Bytes that still parse but differ (bit rot) are caught by the θ == state.θ check."""
  ckpt = checkpoint.Checkpointer(copy_of, 5)
  abstract = jax.eval_shape(trainer.MetaTrainer(_fast()).init, jax.random.PRNGKey(0))
  leaves, treedef = jax.tree_util.tree_flatten(abstract)
  target = {f"{i:05d}": jax.ShapeDtypeStruct(x.shape, x.dtype) for i, x in enumerate(leaves)}
  import orbax.checkpoint as ocp
  restored = ckpt.manager.restore(6, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  state = jax.tree_util.tree_unflatten(treedef, [restored["state"][k]
                                                 for k in sorted(restored["state"])])
  shifted = jax.tree_util.tree_map(lambda x: np.asarray(x) + 1.0, state.theta)
  ckpt.save(8, state, shifted, {**restored["meta"], "step": 8})
  ckpt.close()
  assert _newest_restorable(copy_of, capsys) == (6, True)


# ------------------------------------------------------------------ 2. fallback repairs
def test_2_a_fallback_replaces_the_bad_checkpoint(copy_of, capsys):
  _garble(os.path.join(copy_of, "checkpoints", "6", "state"))
  state = trainer.run(_fast(), copy_of, progress=False)
  out = capsys.readouterr().out
  assert "resuming from step 4" in out and "moved to" in out
  assert int(state.step) == 6 and _steps(copy_of) == [2, 4, 6]
  # The next resume uses the rewritten step 6, without a warning.
  assert _newest_restorable(copy_of, capsys) == (6, False)
  trainer.run(_fast(), copy_of, progress=False)
  assert "WARNING" not in capsys.readouterr().out


# ------------------------------------------------------------------ 3. one-line errors
def test_3_no_checkpoint_readable_is_a_one_line_error(copy_of, capsys):
  for step in _steps(copy_of):
    _garble(os.path.join(copy_of, "checkpoints", str(step), "state"))
  with pytest.raises(checkpoint.WorkdirError, match="none could be restored") as info:
    trainer.run(_fast(), copy_of, progress=False)
  assert "\n" not in str(info.value)
  code, _, err = _call(meta_train_cli.main, FAST_FLAGS + ["--workdir", copy_of], capsys)
  assert code == 2
  _assert_one_line_error(err, "none could be restored", "[2, 4, 6]")


def test_3_an_empty_config_json_is_rebuilt_from_the_checkpoint(finished, copy_of, capsys):
  open(os.path.join(copy_of, "config.json"), "w").close()
  code, out, err = _call(meta_train_cli.main, FAST_FLAGS + ["--workdir", copy_of], capsys)
  assert code == 0, err
  assert "config.json is unreadable" in out
  with open(os.path.join(copy_of, "config.json")) as f:
    assert config_lib.config_from_json(json.load(f)) == _fast()


@pytest.mark.parametrize("extra, needles", [
    (["--sigma=0.02"], ["sigma: workdir has 0.01, command asks 0.02"]),
    (["--distribution=nope"], ["--distribution", "'nope'"]),
    (["--num_pairs=3", "--estimator=tbptt"], ["estimator: workdir has 'pes'",
                                             "num_pairs: workdir has 2"]),
])
def test_3_validation_errors_of_a_run_are_one_line(copy_of, extra, needles, capsys):
  before = open(os.path.join(copy_of, "config.json")).read()
  code, _, err = _call(meta_train_cli.main, FAST_FLAGS + extra + ["--workdir", copy_of], capsys)
  assert code == 2
  _assert_one_line_error(err, *needles)
  assert open(os.path.join(copy_of, "config.json")).read() == before


# ------------------------------------------------------------------ 4. config.json last
def test_4_a_rejected_command_writes_nothing(tmp_path, capsys):
  workdir = str(tmp_path / "fresh")
  for _ in range(2):  # the second run must not complain about the first one's settings
    code, _, err = _call(meta_train_cli.main,
                         FAST_FLAGS + ["--distribution=nope", "--workdir", workdir], capsys)
    assert code == 2
    _assert_one_line_error(err, "--distribution", "unknown distribution 'nope'")
  with pytest.raises(ValueError, match="Unknown distribution 'nope'"):
    trainer.run(_fast(distribution="nope"), workdir, progress=False)
  assert not os.path.exists(os.path.join(workdir, "config.json"))
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))


# ------------------------------------------------------------------ 5. checkpoint's own recipe
def test_5_recipe_is_checked_against_the_checkpoint_metadata(copy_of, capsys):
  os.remove(os.path.join(copy_of, "config.json"))
  shutil.rmtree(os.path.join(copy_of, "checkpoints", "6"))
  with pytest.raises(checkpoint.WorkdirError,
                     match=r"sigma: checkpoint 4 has 0.01, command asks 0.5"):
    trainer.run(_fast(sigma=0.5), copy_of, progress=False)
  assert not os.path.exists(os.path.join(copy_of, "config.json"))
  code, _, err = _call(meta_train_cli.main,
                       FAST_FLAGS + ["--sigma=0.5", "--workdir", copy_of], capsys)
  assert code == 2
  _assert_one_line_error(err, "sigma: checkpoint 4 has 0.01, command asks 0.5")


# ------------------------------------------------------------------ 6. non-finite settings
# The 17 harmful values the issue measured, and more of the same kind.
HARMFUL = [("lo.step_mult", v) for v in (-1, 0, float("nan"), float("inf"))] + [
    ("lo.exp_mult", float("nan")), ("sigma", float("inf")),
    ("outer_lr", -1), ("outer_lr", float("nan")), ("outer_lr", float("inf")),
    ("outer_final_lr", -1), ("outer_final_lr", float("nan")), ("warmup_steps", -1),
    ("weight_decay", -1), ("weight_decay", float("nan")),
    ("clip_norm", 0), ("clip_norm", -1), ("clip_norm", float("nan")),
    ("lo.step", "RMSNormalize(), GroupBase(0.01, 0)"),
    ("lo.step", "RMSNormalize(), GroupBase(0.01, float('inf'))"),
    ("lo.step", "RMSNormalize(), WeightDecay(-1e-3), GroupBase()"),
    ("lo.step", "RMSNormalize(), WeightDecay(float('nan')), GroupBase()"),
    ("outer_lr", 1e308), ("lo.step_mult", 1e-60),
    ("delta_clip", 0), ("sigma", 0), ("seed", -1), ("seed", 2**40), ("num_pairs", 1.5),
    ("outer_lr", True), ("lo.mup", 1), ("outer_steps", 0),
]


@pytest.mark.parametrize("field, value", HARMFUL)
def test_6_harmful_settings_are_rejected(field, value):
  with pytest.raises(config_lib.ConfigError, match=f"^{field} ") as info:
    _fast(**{field: value})
  assert info.value.field == field


def test_6_valid_optional_settings_are_accepted():
  c = _fast(**{"lo.step": ""}, delta_clip=None, **{"lo.exp_mult": 0.0},
            warmup_steps=0, outer_final_lr=0.0, weight_decay=0.0, seed=2**32 - 1)
  assert c.lo.step == ()
  step = "RMSNormalize(), WeightDecay(1e-4), GroupBase(0.01, 0.5)"
  assert _fast(**{"lo.step": step}).lo.step[2].hidden == 0.5


def test_6_a_non_finite_theta_never_reaches_a_checkpoint_or_an_export(
    copy_of, monkeypatch, tmp_path, capsys):
  """Even if an update turns non-finite (here a NaN learning rate slipped past
  validation), θ keeps its last finite value, the step counts as skipped, and a
  θ with a NaN can be neither checkpointed nor exported."""
  monkeypatch.setattr(trainer, "make_outer_optimizer", lambda config, mask=None: optax.chain(
      optax.clip_by_global_norm(1.0), optax.adamw(float("nan"))))
  workdir = str(tmp_path / "nan-lr")
  state = trainer.run(_fast(outer_steps=3, checkpoint_every=3), workdir, progress=False)
  assert int(state.skipped) == 3
  _assert_same(state.theta, trainer.initial_theta(_fast()))
  _, theta = checkpoint.restore_theta(os.path.join(workdir, "checkpoints"))
  assert all(np.all(np.isfinite(x)) for x in _leaves(theta))
  monkeypatch.undo()

  # Saving a NaN θ is refused, and nothing is written.
  finished_state = trainer.run(_fast(), copy_of, progress=False)  # restores step 6
  nan_theta = jax.tree_util.tree_map(lambda x: np.full(np.shape(x), np.nan, np.float32),
                                     finished_state.theta)
  ckpt = checkpoint.Checkpointer(copy_of, 5)
  with pytest.raises(FloatingPointError, match="refusing to checkpoint step 8"):
    ckpt.save(8, finished_state._replace(theta=nan_theta), nan_theta, {"step": 8})
  assert 8 not in ckpt.steps()
  # One written anyway (bypassing the check) is refused by export, skipped by resume.
  monkeypatch.setattr(checkpoint, "_check_finite", lambda theta, what: None)
  ckpt.save(8, finished_state._replace(theta=nan_theta), nan_theta,
            {"config": _fast().to_json(), "step": 8})
  ckpt.close()
  monkeypatch.undo()
  with pytest.raises(checkpoint.WorkdirError, match="non-finite. Refusing to export"):
    export.export_workdir(copy_of)
  assert _newest_restorable(copy_of, capsys) == (6, True)


# ------------------------------------------------------------------ 7. every pair diverged
def test_7_every_pair_diverged_skips_the_update_and_counts_it(tmp_path):
  config = _fast(**{"lo.step_mult": 1e30}, outer_steps=3, checkpoint_every=3)
  records = []
  state = trainer.run(config, str(tmp_path / "diverged"), progress=False,
                      callback=lambda step, record: records.append(record))
  pairs = config.num_pairs * len(trainer.MetaTrainer(config).tasks)
  assert [r["nan_resets"] for r in records] == [pairs] * 3
  assert [r["skipped"] for r in records] == [1, 2, 3]
  assert all(r["meta_loss"] is None for r in records)  # not 0.0
  assert all(v is None for r in records for k, v in r.items() if k.startswith("meta_loss/"))
  assert int(state.skipped) == 3
  # θ and the outer optimizer did not move (no weight decay, no momentum).
  fresh = trainer.MetaTrainer(config).init(jax.random.PRNGKey(config.seed))
  _assert_same(state.theta, fresh.theta)
  _assert_same(state.opt_state, fresh.opt_state)
  logged = tracking.read_metrics(str(tmp_path / "diverged"))
  assert [r["meta_loss"] for r in logged] == [None] * 3


# ------------------------------------------------------------------ 9. bad workdirs, --tasks
def _bad_workdirs(tmp_path):
  a_file = tmp_path / "a-file"
  a_file.write_text("not a directory")
  return {
      "empty": ("", "--workdir must be a directory path"),
      "existing file": (str(a_file), "is an existing file"),
      "parent is a file": (str(a_file / "run"), "cannot be created"),
      "unwritable parent": ("/proc/lopt-no-such-dir/run", "cannot be created"),
  }


@pytest.mark.parametrize("kind", ["empty", "existing file", "parent is a file",
                                  "unwritable parent"])
@pytest.mark.parametrize("script", ["meta_train", "evaluate"])
def test_9_bad_workdirs_are_one_line_errors(script, kind, tmp_path, capsys):
  workdir, message = _bad_workdirs(tmp_path)[kind]
  if script == "meta_train":
    argv = FAST_FLAGS + ["--workdir", workdir]
    main = meta_train_cli.main
  else:
    argv = ["--optimizers", "adamw", "--suite", "smoke", "--workdir", workdir]
    main = evaluate_cli.main
  code, _, err = _call(main, argv, capsys)
  assert code == 2
  _assert_one_line_error(err, "--workdir", message)


def test_9_a_missing_parent_is_created(tmp_path):
  workdir = str(tmp_path / "new" / "deeper" / "run")
  assert checkpoint.check_workdir(workdir) == workdir and os.path.isdir(workdir)


@pytest.mark.parametrize("regex", ["(", "[a-", "*x"])
def test_9_an_invalid_tasks_regex_is_a_one_line_error(regex, tmp_path, capsys):
  code, _, err = _call(evaluate_cli.main, ["--optimizers", "adamw", "--suite", "smoke",
                                           "--tasks", regex, "--workdir", str(tmp_path)], capsys)
  assert code == 2
  _assert_one_line_error(err, "--tasks", "invalid regular expression")


# ------------------------------------------------------------------ 10. exit status
def test_10_sigterm_exits_with_the_preemption_status_then_resumes(finished, tmp_path,
                                                                  monkeypatch, capsys):
  _, straight = finished
  workdir = str(tmp_path / "preempted")
  real_run = trainer.run

  def preempted_run(config, workdir, **kwargs):
    def send_sigterm(step, record):
      if step == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return real_run(config, workdir, callback=send_sigterm, **kwargs)

  monkeypatch.setattr(trainer, "run", preempted_run)
  code, out, _ = _call(meta_train_cli.main, FAST_FLAGS + ["--workdir", workdir], capsys)
  assert code == meta_train_cli.EXIT_PREEMPTED == trainer.EXIT_PREEMPTED == 75
  assert "Stopped at outer step 3 of 6" in out and _steps(workdir) == [2, 3]
  assert not os.path.exists(os.path.join(workdir, "export"))
  monkeypatch.undo()
  code, _, err = _call(meta_train_cli.main, FAST_FLAGS + ["--workdir", workdir], capsys)
  assert code == 0, err
  _, theta = checkpoint.restore_theta(os.path.join(workdir, "checkpoints"))
  _assert_same(theta, straight.theta)


def _subprocess_env():
  return dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled",
              JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
              PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.slow
def test_10_end_to_end_sigterm_gives_status_75(tmp_path):
  workdir = str(tmp_path / "e2e")
  flags = [f for f in FAST_FLAGS if not f.startswith("--outer_steps")]
  proc = subprocess.Popen([sys.executable, "scripts/meta_train.py", *flags,
                           "--outer_steps=100000", "--workdir", workdir],
                          cwd=REPO_ROOT, env=_subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  metrics = os.path.join(workdir, "metrics.jsonl")
  deadline = time.monotonic() + 240
  while time.monotonic() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and os.path.getsize(metrics) > 0:
      break
    time.sleep(0.5)
  assert proc.poll() is None, proc.communicate()
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 75, (out, err)
  assert "re-run the same command to resume" in out and "Traceback" not in err
  assert _steps(workdir)


@pytest.mark.parametrize("script, argv, flag", [
    ("meta_train.py", ["--preset", "tiny", "--workdir", "{tmp}", "--outer_lr", "nan"],
     "--outer_lr"),
    ("evaluate.py", ["--optimizers", "adamw", "--suite", "smoke", "--workdir", "{tmp}",
                     "--tasks", "("], "--tasks"),
])
def test_end_to_end_bad_flag_is_one_line_on_stderr(script, argv, flag, tmp_path):
  argv = [a.replace("{tmp}", str(tmp_path / "w")) for a in argv]
  out = subprocess.run([sys.executable, os.path.join("scripts", script), *argv], cwd=REPO_ROOT,
                       env=_subprocess_env(), capture_output=True, text=True, timeout=120)
  assert out.returncode == 2
  _assert_one_line_error(out.stderr, flag)
  assert not os.path.exists(tmp_path / "w" / "config.json")


# ------------------------------------------------------------------ every flag, bad values
NAMES = {"estimator", "meta_loss", "distribution", "wandb_mode", "lo.backend"}


def _meta_train_bad_values():
  """(flag, bad value) for every flag of meta_train.py, derived from the config
  fields and their rules, so a new field is covered as soon as it exists."""
  import dataclasses
  import typing
  cases = [("--preset", ""), ("--preset", "nope"), ("--workdir", ""),
           ("--workdir", "/proc/lopt-no-such-dir/run"), ("--no_progress=yes", None)]

  def fields(cls, prefix=""):  # (dotted name, type hint), nested dataclasses (lo) included
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
      default = field.default if field.default is not dataclasses.MISSING else None
      if dataclasses.is_dataclass(default):
        yield from fields(type(default), f"{prefix}{field.name}.")
      else:
        yield prefix + field.name, hints[field.name]

  for name, hint in fields(config_lib.MetaTrainConfig):
    base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    flag = f"--{name}"
    if base is bool:
      values = ["maybe", "", "2"]
      no = ".".join(name.split(".")[:-1] + ["no" + name.split(".")[-1]])
      cases += [(f"--{no}", v) for v in values]  # simple-parsing's negative flag
    elif base is tuple:  # lo.step: step rules
      values = ["Nope()", "GroupBase()", "1+"]
    elif base is str:
      values = [""] + (["nope"] if name in NAMES else [])
    else:
      values = ["abc", "", "nan", "inf", "-inf"] + (["1e308"] if base is float else [])
      if base is int:
        values += ["1.5", "1e3"]
      kind, low, inclusive = config_lib._NUMERIC_RULES.get(name, (base, None, True))
      if low is not None:
        values.append(str(kind(low) - 1))
        if not inclusive:
          values.append(str(kind(low)))
    cases += [(flag, v) for v in values]
  return cases


@pytest.mark.parametrize("flag, value", _meta_train_bad_values())
def test_every_meta_train_flag_rejects_bad_values(flag, value, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(trainer, "run", lambda *a, **k: pytest.fail("started training"))
  args = {"--preset": "tiny", "--workdir": str(tmp_path / "w")}
  if flag in args:
    args[flag] = value
  argv = [x for k, v in args.items() for x in (k, v)]
  if flag not in args:
    argv += [flag] if value is None else [flag, value]
  code, _, err = _call(meta_train_cli.main, argv, capsys)
  assert code == 2, err
  _assert_one_line_error(err, flag.split("=")[0])
  assert not os.path.exists(tmp_path / "w" / "config.json")


def test_every_meta_train_flag_is_covered():
  flags = {opt for action in meta_train_cli.build_parser()._actions
           for opt in action.option_strings if opt.startswith("--") and opt != "--help"}
  covered = {flag.split("=")[0] for flag, _ in _meta_train_bad_values()}
  assert flags == covered, flags ^ covered


EVALUATE_BAD = [("--optimizers", v) for v in ("", ",", "nope", "lo=/nonexistent/ckpt", "x=")] + [
    ("--suite", v) for v in ("", " , ", "nope")] + [
    ("--workdir", v) for v in ("", "/proc/lopt-no-such-dir/run")] + [
    (flag, v) for flag in ("--seeds", "--tuning_seeds", "--max_steps", "--lr_grid_points",
                           "--eval_batches")
    for v in ("0", "-1", "nan", "inf", "abc", "", "1.5")] + [
    ("--first_seed", v) for v in ("-1", "nan", "abc", "", "1.5", "1000", "998")] + [
    ("--data_dir", "/nonexistent/tfds"), ("--data_dir", ""),
    ("--baseline_cache", ""), ("--baseline_cache", "/etc/passwd"),
    ("--tasks", "("), ("--tasks", "no-task-has-this-name"),
    ("--wandb=yes", None), ("--no_step_mult_tuning=yes", None),
    ("--wandb_project", ""), ("--wandb_project", "  ")]
# --note takes any text (a line of the report): it has no bad value.


@pytest.mark.parametrize("flag, value", EVALUATE_BAD)
def test_every_evaluate_flag_rejects_bad_values(flag, value, tmp_path, capsys):
  args = {"--optimizers": "adamw", "--suite": "smoke", "--workdir": str(tmp_path / "w")}
  name = flag.split("=")[0]
  if name in args:
    args[name] = value
  argv = [x for k, v in args.items() for x in (k, v)]
  if name not in args:
    argv += [flag] if value is None else [flag, value]
  code, _, err = _call(evaluate_cli.main, argv, capsys)
  assert code == 2, err
  _assert_one_line_error(err, name)
  assert not os.path.exists(tmp_path / "w" / "results.json")


def test_every_evaluate_flag_is_covered():
  flags = {opt for action in evaluate_cli.build_parser()._actions
           for opt in action.option_strings if opt.startswith("--") and opt != "--help"}
  covered = {flag.split("=")[0] for flag, _ in EVALUATE_BAD} | {"--note"}
  assert flags == covered, flags ^ covered
