"""Multi-host meta-training, actually run: two processes on localhost, each with
its own 2 CPU devices, joined by ``jax.distributed`` (gloo collectives), launched
the way the README tells users to launch on a cluster (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID).

One test, three launches, to stay within a minute on a small CPU machine:
1. both processes meta-train the ``tiny`` preset (on quadratics); process 1 alone gets SIGTERM
   at outer step 2, and both stop there together and checkpoint (each process
   writes its shards of the particle-sharded estimator state through orbax);
2. both resume with ``scripts/meta_train.py`` (the user's command), finish and
   export;
3. meanwhile, this process runs the same config as one process on one device.
θ of the 2-process run (interrupted and resumed) must equal the 1-process θ up
to float summation order (the pair sum is an all-reduce over 4 devices).
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import lopt
from training import config as config_lib
from training import tracking, trainer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTER_STEPS = 4
# The tiny preset on quadratic inner tasks (as the CLI tests' FAST config): the
# multi-host machinery (particles sharded over the 4 devices of 2 processes,
# per-process checkpoint shards, resume) is the same, and each of the 3 compiles
# of the outer step (1 process; 2 processes, fresh and resumed) takes ~9
# CPU-seconds instead of ~15 for the tiny distribution's two digits MLPs (with
# the tests' XLA flags; 17 and 34 with XLA's defaults).
OVERRIDES = dict(distribution="quadratic", outer_steps=OUTER_STEPS, checkpoint_every=2,
                 log_every=1, wandb_mode="disabled")
FLAGS = [f"--{k}={v}" for k, v in OVERRIDES.items()]

# Phase 1 of each process: the trainer API, with a SIGTERM to process 1 only.
DRIVER = """
import os, signal, sys
import jax
from training import sharding
sharding.maybe_initialize_distributed()  # before anything that may touch a JAX backend
from training import config as config_lib, trainer
config = config_lib.get_preset("tiny", **%r)

def preempt_one(step, record):
  if step == 2 and jax.process_index() == 1:
    os.kill(os.getpid(), signal.SIGTERM)

state = trainer.run(config, sys.argv[1], callback=preempt_one, progress=False)
print("PROCESSES", jax.process_count(), "DEVICES", jax.device_count(), "STOPPED", int(state.step))
""" % OVERRIDES


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(argv: list[str], workdir: str, log_dir: str, tag: str) -> list[tuple]:
  port = _free_port()
  cache = jax.config.jax_compilation_cache_dir or os.path.join(REPO_ROOT, ".xla-cache")
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=" ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                                "--xla_force_host_platform_device_count=2"])),
               JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid), JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5",
               JAX_SHARE_BINARY_BETWEEN_HOSTS=os.environ.get("SHARE", "false"),
               WANDB_MODE="disabled",
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(os.path.join(log_dir, f"{tag}-{pid}.log"), "w+")
    procs.append((subprocess.Popen([sys.executable, *argv, workdir], env=env, cwd=REPO_ROOT,
                                   stdout=log, stderr=subprocess.STDOUT), log))
  return procs


def _wait(procs, timeout: float) -> list[tuple[int, str]]:
  deadline = time.monotonic() + timeout
  out = []
  for proc, log in procs:
    try:
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      for p, _ in procs:
        p.kill()
      proc.wait()
    log.seek(0)
    out.append((proc.returncode, log.read()))
    log.close()
  return out


@pytest.mark.slow
def test_two_processes_meta_train_checkpoint_resume_and_match_one(tmp_path):
  workdir, logs = str(tmp_path / "two"), str(tmp_path)
  t0 = time.monotonic()
  first = _launch(["-c", DRIVER], workdir, logs, "phase1")
  # The reference, as one process on one device, while the two processes run.
  config = config_lib.get_preset("tiny", **OVERRIDES)
  reference = trainer.run(config, str(tmp_path / "one"), progress=False)
  t_ref = time.monotonic() - t0
  results = _wait(first, timeout=300)
  t_first = time.monotonic() - t0
  for rc, log in results:
    assert rc == 0, log[-3000:]
    assert "PROCESSES 2 DEVICES 4 STOPPED 2" in log, log[-3000:]
  # Both processes wrote their part of the step-2 checkpoint of the sharded state.
  state_dir = os.path.join(workdir, "checkpoints", "2", "state")
  assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state_dir)), \
      os.listdir(state_dir)

  second = _launch([os.path.join("scripts", "meta_train.py"), "--preset", "tiny", *FLAGS,
                    "--no_progress", "--workdir"], workdir, logs, "phase2")
  results = _wait(second, timeout=300)
  print(f"reference {t_ref:.0f} s, phase 1 {t_first:.0f} s, "
        f"phase 2 {time.monotonic() - t0 - t_first:.0f} s")
  for pid, (rc, log) in enumerate(results):
    assert rc == 0, log[-3000:]
    assert "Resumed" in log or pid > 0, log[-3000:]
  assert "Exported the learned optimizer" in results[0][1]

  # θ: the interrupted-and-resumed 2-process run equals the straight 1-process run.
  _, theta = lopt.load_pretrained(os.path.join(workdir, "export"))
  ref_leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(reference.theta)]
  got_leaves = jax.tree_util.tree_leaves(theta)
  assert len(ref_leaves) == len(got_leaves)
  # Not bitwise: the pair sum is an all-reduce in another order, and Adam's
  # m/√v turns ulps of the gradient into up to ~1e-4 of a step. Measured: the
  # largest difference is ~5e-6 of the largest movement of θ (3e-8 of 6e-3; on
  # the digits MLPs ~2e-4); a wrong run (other pairs, other keys, a lost update)
  # differs by the movement itself.
  theta0 = [np.asarray(x) for x in jax.tree_util.tree_leaves(trainer.initial_theta(config))]
  moved = max(float(np.max(np.abs(b - c))) for b, c in zip(ref_leaves, theta0))
  differs = max(float(np.max(np.abs(a - b))) for a, b in zip(got_leaves, ref_leaves))
  assert moved > 1e-4, "θ never moved"
  print(f"θ: largest difference {differs:.3g}, largest movement {moved:.3g}")
  assert differs <= 2e-3 * moved, (differs, moved)
  # One metrics record per step, written once (by process 0), matching the reference's.
  steps = [r["step"] for r in tracking.read_metrics(workdir)]
  assert steps == list(range(1, OUTER_STEPS + 1)), steps
  ref_losses = [r["meta_loss"] for r in tracking.read_metrics(str(tmp_path / "one"))]
  got_losses = [r["meta_loss"] for r in tracking.read_metrics(workdir)]
  np.testing.assert_allclose(got_losses, ref_losses, rtol=1e-4)
  with open(os.path.join(workdir, "config.json")) as f:
    assert config_lib.config_from_json(json.load(f)) == config
