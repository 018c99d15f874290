"""The meta-objective of issue 19: the final part of each episode, per-task
normalization by the sign of Δ, and a run that continues exactly from the files
a git clone has (the committed checkpoints)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt import AdaptiveLOpt
from meta_tasks import QuadraticTask
from training import config as config_lib
from training import trainer
from training.estimators import make_estimator
from training.lo_system import LOTrainingSystem, TruncationSchedule
from training.system import UnrollOutput

TASK = QuadraticTask(dim=8, batch_size=4)
LO = AdaptiveLOpt(mup=False)


def _system(final_fraction=1.0, horizon=20, k=20):
  return LOTrainingSystem(LO, TASK, k, TruncationSchedule(horizon, horizon),
                          final_fraction=final_fraction, random_initial_offset=False)


def test_final_fraction_counts_only_the_end_of_each_episode():
  theta = LO.init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(1)
  outs = {}
  for f in (1.0, 0.5):
    system = _system(f)
    state = system.init_state(jax.random.PRNGKey(2), random_offset=False)
    _, outs[f] = system.unroll(theta, theta, state, key)
  full, final = np.asarray(outs[1.0].losses), np.asarray(outs[0.5].losses)
  assert np.all(full[:10] > 0)
  np.testing.assert_array_equal(final[:10], 0.0)       # inner steps 1..10 of 20
  np.testing.assert_array_equal(final[10:], full[10:])  # steps 11..20 unchanged
  assert bool(outs[0.5].ends[-1])


class _Scaled:
  """A system whose every meta-loss is ``scale`` times the wrapped one's."""

  def __init__(self, system, scale):
    self.system, self.scale = system, scale
    self.truncation_length = system.truncation_length

  def init_state(self, key, *, random_offset):
    return self.system.init_state(key, random_offset=random_offset)

  def unroll(self, theta_cur, theta_next, state, key):
    state, out = self.system.unroll(theta_cur, theta_next, state, key)
    return state, UnrollOutput(out.losses * self.scale, out.ends)


def test_sign_of_delta_makes_the_estimate_independent_of_the_task_loss_scale():
  """A task whose loss is 1000x another's moves θ exactly as much (sign_delta),
  so no task's loss scale dominates the meta-gradient; without it the
  estimate scales with the loss."""
  theta = LO.init(jax.random.PRNGKey(0))
  grads = {}
  for sign in (True, False):
    @jax.jit  # the scale is an argument: one compile serves both scales
    def estimate(scale):
      est = make_estimator("es_single", system=_Scaled(_system(k=5), scale), num_pairs=3,
                           sigma=0.01, sign_delta=sign)
      state = est.init(jax.random.PRNGKey(3), theta)
      return est.estimate(theta, state, jax.random.PRNGKey(4))[0]
    for scale in (1.0, 1000.0):
      g = estimate(jnp.float32(scale))
      grads[sign, scale] = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g)])
  np.testing.assert_array_equal(grads[True, 1.0], grads[True, 1000.0])
  assert np.any(grads[True, 1.0] != 0)
  # (float32: Δ is a difference of nearby losses, so only ~2 digits survive the scaling.)
  np.testing.assert_allclose(grads[False, 1000.0], 1000.0 * grads[False, 1.0], rtol=3e-2,
                             atol=1e-3 * np.abs(grads[False, 1000.0]).max())


FAST = dict(distribution="quadratic", lo=AdaptiveLOpt(mup=False), estimator="es_single",
            num_pairs=2, truncation_length=5, min_horizon=10, max_horizon=20, outer_steps=6,
            warmup_steps=2, checkpoint_every=3, keep_checkpoints=3, log_every=1,
            sign_delta=True, final_fraction=0.5, wandb_mode="disabled")


def test_run_continues_exactly_from_the_files_a_clone_has(tmp_path):
  """What git tracks of a workdir (config.json, checkpoints/, metrics.jsonl,
  wandb_run_id; not wandb/ or the lock) is enough to continue bit-exactly,
  the task-gap EMAs of the θ₀-weighted objective (dro_eta) included."""
  config = config_lib.get_preset("tiny", **FAST, dro_eta=5.0, dro_ema=0.5)
  straight = trainer.run(config, str(tmp_path / "straight"), progress=False)
  first = str(tmp_path / "first")
  half = trainer.run(config, first, stop_after=3, progress=False)
  assert int(half.step) == 3
  clone = str(tmp_path / "clone")
  shutil.copytree(first, clone, ignore=shutil.ignore_patterns("wandb", ".lopt.lock"))
  assert not os.path.exists(os.path.join(clone, "wandb"))
  resumed = trainer.run(config, clone, progress=False)
  assert int(resumed.step) == 6
  # The gap EMAs moved (counted steps seen) and resumed exactly.
  assert np.all(np.asarray(straight.task_gaps)[1] > 0)
  np.testing.assert_array_equal(np.asarray(straight.task_gaps), np.asarray(resumed.task_gaps))
  # Without dro_eta the state has no gap leaves: older checkpoints restore as written.
  plain = trainer.MetaTrainer(config.replace(dro_eta=None))
  assert jax.eval_shape(plain.init, jax.random.PRNGKey(0)).task_gaps == ()
  for a, b in zip(jax.tree_util.tree_leaves(straight.theta),
                  jax.tree_util.tree_leaves(resumed.theta)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # θ moved: the adaptive LO's learned parts are being meta-trained.
  theta0 = trainer.initial_theta(config)
  assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in
             zip(jax.tree_util.tree_leaves(theta0), jax.tree_util.tree_leaves(resumed.theta)))


def test_theta_average_is_the_ema_of_theta_and_what_the_run_checkpoints(tmp_path):
  """theta_ema = d: θ̄ after each outer step equals the NumPy recurrence
  θ̄ ← d·θ̄ + (1 − d)·θ from θ̄₀ = θ₀ over the θs the steps produced; a run
  stopped and resumed ends with the same θ̄ bit for bit, and its checkpoints'
  θ item (what export and meta-validation read) is θ̄, not θ."""
  from training import checkpoint
  config = config_lib.get_preset("tiny", **FAST, theta_ema=0.6)
  meta = trainer.MetaTrainer(config)
  state, data = meta.init(jax.random.PRNGKey(config.seed)), meta.data()
  step = jax.jit(meta.outer_step)
  flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64))
                                      for x in jax.tree_util.tree_leaves(tree)])
  want = flat(state.theta)
  np.testing.assert_array_equal(flat(state.theta_avg), want)
  for _ in range(4):
    state, _ = step(state, data)
    want = 0.6 * want + 0.4 * flat(state.theta)
    np.testing.assert_allclose(flat(state.theta_avg), want, rtol=1e-5, atol=1e-7)
  assert np.max(np.abs(flat(state.theta_avg) - flat(state.theta))) > 0  # θ moved: θ̄ lags
  straight = trainer.run(config, str(tmp_path / "straight"), progress=False)
  half = str(tmp_path / "half")
  trainer.run(config, half, stop_after=3, progress=False)
  resumed = trainer.run(config, half, progress=False)
  np.testing.assert_array_equal(flat(straight.theta_avg), flat(resumed.theta_avg))
  np.testing.assert_array_equal(flat(straight.theta), flat(resumed.theta))
  saved_step, saved = checkpoint.restore_theta(os.path.join(half, "checkpoints"))
  assert saved_step == 6
  np.testing.assert_array_equal(flat(saved), flat(resumed.theta_avg))
  # Off (the default): no θ̄ leaves, so older checkpoints restore as written.
  assert jax.eval_shape(trainer.MetaTrainer(config.replace(theta_ema=0.0)).init,
                        jax.random.PRNGKey(0)).theta_avg == ()
  with pytest.raises(config_lib.ConfigError, match="theta_ema"):
    config.replace(theta_ema=1.0)


def test_unit_task_grads_give_every_task_one_vote():
  """combine_task_grads against NumPy: the plain mean over alive tasks, and with
  unit=True the mean of each alive task's gradient divided by its norm, so a
  task whose estimate is 1000x larger moves θ no more than the others."""
  rng = np.random.default_rng(0)
  raw = [{"a": rng.normal(size=(3,)) * s, "b": rng.normal(size=(2, 2)) * s}
         for s in (1.0, 1000.0, 0.01)]
  alive = [True, True, False]
  grads = [jax.tree_util.tree_map(jnp.asarray, g, is_leaf=lambda x: isinstance(x, np.ndarray))
           for g in raw]
  flat = [np.concatenate([g["a"], g["b"].ravel()]) for g in raw]
  for unit in (False, True):
    out = trainer.combine_task_grads(grads, [jnp.asarray(a) for a in alive], unit)
    got = np.concatenate([np.asarray(out["a"]), np.asarray(out["b"]).ravel()])
    want = [f / np.linalg.norm(f) if unit else f for f, a in zip(flat, alive) if a]
    np.testing.assert_allclose(got, np.mean(want, axis=0), rtol=1e-5, atol=1e-7)
  # No task alive: a zero gradient, not NaN.
  out = trainer.combine_task_grads(grads, [jnp.asarray(False)] * 3, True)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(out))
  # Task weights: softmax(η · max(gap, −1/η)) × tasks, rescaled to mean 1 over
  # the alive tasks; a task 0.5 ahead of θ₀ weighs as one 1/η = 0.2 ahead.
  gap = np.array([0.1, -0.5, 0.3])
  weights = trainer.dro_weights(jnp.asarray(gap, jnp.float32), 5.0)
  z = np.exp(5 * np.maximum(gap, -0.2))
  want_w = 3 * z / z.sum()
  np.testing.assert_allclose(np.asarray(weights), want_w, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(trainer.dro_weights(jnp.asarray(gap), 0.0)), 1.0)
  out = trainer.combine_task_grads(grads, [jnp.asarray(a) for a in alive], False, weights)
  got = np.concatenate([np.asarray(out["a"]), np.asarray(out["b"]).ravel()])
  w_alive = want_w[:2] * 2 / want_w[:2].sum()
  np.testing.assert_allclose(got, (w_alive[0] * flat[0] + w_alive[1] * flat[1]) / 2,
                             rtol=1e-5, atol=1e-7)


def test_step_mult_spread_scales_each_episodes_updates_by_one_log_uniform_factor():
  """spread s: every episode draws one factor in [1/s, s], log-uniform, from its
  own key (the params are those of a run without it), and each update is
  exactly that factor times the unscaled LO's; s = 1 adds no state at all."""
  theta = LO.init(jax.random.PRNGKey(0))
  plain = _system()
  spread = LOTrainingSystem(LO, TASK, 20, TruncationSchedule(20, 20), step_mult_spread=3.0,
                            random_initial_offset=False)
  assert plain.init_state(jax.random.PRNGKey(2)).step_scale is None
  keys = jax.random.split(jax.random.PRNGKey(5), 4000)
  scales = np.asarray(jax.vmap(lambda k: spread.init_state(k).step_scale)(keys))
  assert scales.min() >= 1 / 3 - 1e-6 and scales.max() <= 3 + 1e-6
  logs = np.log(scales) / np.log(3.0)  # uniform on [-1, 1]: mean 0, variance 1/3
  assert abs(logs.mean()) < 0.05 and abs(logs.var() - 1 / 3) < 0.03
  s0, s1 = plain.init_state(keys[0]), spread.init_state(keys[0])
  for a, b in zip(jax.tree_util.tree_leaves(s0.params), jax.tree_util.tree_leaves(s1.params)):
    np.testing.assert_array_equal(a, b)
  (n0, _), (n1, _) = (s.inner_step(theta, st, jax.random.PRNGKey(6))
                      for s, st in ((plain, s0), (spread, s1)))
  for p, a, b in zip(*(jax.tree_util.tree_leaves(x) for x in (s0.params, n0.params, n1.params))):
    np.testing.assert_allclose(b - p, float(s1.step_scale) * (a - p), rtol=1e-5, atol=1e-7)
  assert float(n1.step_scale) == float(s1.step_scale)


def test_step_mult_spread_below_one_is_refused():
  with np.testing.assert_raises_regex(config_lib.ConfigError, "step_mult_spread"):
    config_lib.MetaTrainConfig(step_mult_spread=0.5)


def test_frozen_parts_of_theta_are_neither_perturbed_nor_updated():
  """frozen="scales,adapt.b1": their ES noise (so their estimate) is exactly 0 and after outer
  steps they are bit-identical to θ₀ (no AdamW decay either), while every other
  part of θ moved; an unknown path is refused, naming θ's parts."""
  config = config_lib.get_preset("tiny", **FAST).replace(frozen="scales, adapt.b1")
  tr = trainer.MetaTrainer(config)
  state = tr.init(jax.random.PRNGKey(0))
  theta0 = state.theta
  eps = tr.estimators()[0]._noise(jax.random.PRNGKey(1), theta0)  # ε of every estimate
  for leaf in (eps["scales"]["log_lr"], eps["scales"]["log_wd"], eps["adapt"]["b1"]):
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)
  assert np.all(np.asarray(eps["adapt"]["w1"]) != 0)
  step = jax.jit(tr.outer_step)
  for _ in range(3):
    state, _ = step(state, tr.data())
  moved = lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b)))
  for path in (("scales", "log_lr"), ("scales", "log_wd"), ("adapt", "b1")):
    a, b = theta0[path[0]][path[1]], state.theta[path[0]][path[1]]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert moved(theta0["adapt"]["w1"], state.theta["adapt"]["w1"])
  assert moved(theta0["residual"]["w0"], state.theta["residual"]["w0"])
  with np.testing.assert_raises_regex(config_lib.ConfigError, "frozen.*'scale'.*names no part"):
    config.replace(frozen="scale")


def test_warm_start_extends_theta_with_added_step_rules(tmp_path):
  """init_theta from an LO whose step rules this run's extend (a4's export,
  mulo-m's θ, plus EpochScales): θ is the pretrained one plus the new rule's
  zero θ, so the LO starts exactly where it was; any other difference still
  refuses."""
  import dataclasses
  import lopt
  from lopt import adaptive
  source = "results/meta-runs/mulo-a4-cpu/export_5000"
  lo, theta = lopt.load_pretrained(source)
  extended = dataclasses.replace(lo, step=lo.step + (adaptive.EpochScales(),))
  config = config_lib.get_preset("mulo-a12-cpu", wandb_mode="disabled")
  assert config.init_theta == source
  assert config.lo == extended
  got = trainer.initial_theta(config)
  assert sorted(got) == sorted([*theta, "epochs"])
  np.testing.assert_array_equal(np.asarray(got["epochs"]["w"]), np.zeros((2, 2)))
  for a, b in zip(jax.tree_util.tree_leaves({k: got[k] for k in theta}),
                  jax.tree_util.tree_leaves(theta)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other = config.replace(lo=dataclasses.replace(extended, b1=0.8))
  with pytest.raises(ValueError, match=f"init_theta '{source}' holds a AdaptiveLOpt"):
    trainer.initial_theta(other)


def test_small_theta_parts_are_logged_element_by_element():
  """The outer step's metrics carry θ's leaves of at most 4 elements, each
  element under theta/<path>[i], equal to θ's value; larger leaves are left out."""
  theta = {"scales": {"log_lr": jnp.asarray([0.5, -0.25]), "log_wd": jnp.asarray(0.125)},
           "big": {"w": jnp.ones((3, 3))}}
  parts = trainer.small_theta_parts(theta)
  assert parts.keys() == {"theta/scales.log_lr[0]", "theta/scales.log_lr[1]",
                          "theta/scales.log_wd"}
  assert [float(parts[k]) for k in sorted(parts)] == [0.5, -0.25, 0.125]


def test_signal_noise_windows_average_the_logged_split(tmp_path):
  """training.stats.signal_noise_windows against hand numbers: windows by outer
  step; per record the mean over its grad_split_steps steps (or, in older
  records, the logged step's own split, 1 step), weighted by those steps; the
  weighted s.e.; the mean noise², their ratio; records with a missing, None
  or non-finite value skipped. scripts/meta_grad_snr.py prints the table, or
  exits 2 on a run without the split."""
  from training import stats
  recs = [{"step": 10, "grad_signal_sq": 1.0, "grad_noise_sq": 10.0},
          {"step": 20, "grad_signal_sq": 3.0, "grad_noise_sq": 30.0},
          {"step": 25, "grad_norm": 1.0},
          {"step": 30, "grad_signal_sq": float("nan"), "grad_noise_sq": 1.0},
          {"step": 35, "grad_signal_sq_mean": None, "grad_noise_sq_mean": 1.0, "grad_split_steps": 5},
          {"step": 36, "grad_signal_sq": 9.0, "grad_noise_sq": 9.0,
           "grad_signal_sq_mean": -1.0, "grad_noise_sq_mean": 5.0, "grad_split_steps": 3},
          {"step": 38, "grad_signal_sq_mean": 1.0, "grad_noise_sq_mean": 1.0, "grad_split_steps": 1}]
  rows = stats.signal_noise_windows(recs, 20)
  assert [(r["first_step"], r["last_step"], r["steps"]) for r in rows] == [(10, 20, 2), (36, 38, 4)]
  assert rows[0]["signal_sq"] == 2.0 and rows[0]["noise_sq"] == 20.0 and rows[0]["snr"] == 0.1
  assert rows[0]["signal_sq_se"] == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))
  # (3·(−1) + 1·1) / 4 = −0.5; noise (3·5 + 1) / 4 = 4; s.e. √((3·0.25 + 2.25) / 1 / 4)
  assert rows[1]["signal_sq"] == -0.5 and rows[1]["noise_sq"] == 4.0 and rows[1]["snr"] == -0.125
  assert rows[1]["signal_sq_se"] == pytest.approx(np.sqrt(3.0 / 4))
  import json, subprocess, sys
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
  out = subprocess.run([sys.executable, "scripts/meta_grad_snr.py", str(tmp_path), "--window", "20"],
                       capture_output=True, text=True)
  assert out.returncode == 0 and "| 10–20 | 2 | 2 ± 1 | 20 | 0.1 |" in out.stdout
  (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "grad_norm": 1.0}) + "\n")
  out = subprocess.run([sys.executable, "scripts/meta_grad_snr.py", str(tmp_path)],
                       capture_output=True, text=True)
  assert out.returncode == 2 and "resume the run" in out.stderr
