"""Meta-training throughput: particle inner-steps per second (``lopt-bench-meta``,
or ``python scripts/bench_meta.py``).

    python scripts/bench_meta.py                       # small config (CPU default)
    python scripts/bench_meta.py --configs mulo-m,small --outer_steps 100   # GPU
    python scripts/bench_meta.py --preset mulo-a-cpu    # a preset's real outer step

For each configuration it times, in the same process:

* **PES**: one jitted outer step = 8 antithetic pairs (16 particles) x K=50
  inner steps of the MLP trained by the hidden-32 μLO, plus the θ update;
* **Adam floor**: the same 16 inner models trained for K steps by plain
  ``optax.adam`` (vmapped, one scan), i.e. the cost of the inner problem alone.

It prints particle-steps/s for both, their ratio, the number of XLA
compilations across all outer steps (target: 1 per task shape), and the
achieved TFLOP/s of the inner model (6·batch·Σ fan_in·fan_out per step: forward
and backward matmuls only, so it excludes the optimizer's own work).

``--backend`` picks the LO update's backend (xla, pallas; default auto),
``--config NAME`` the architecture config of a pretrained LO instead of the
reference ``MLPLOpt()``, and ``--max_seconds`` caps each timed loop.
``bench_lo`` and ``bench_adam_floor`` are also imported by ``gpu_check.py``.

Inputs are 32x32x3 like CIFAR-10. The pixel values do not affect throughput,
so the script writes a synthetic uint8 array cache (``LOPT_CACHE_DIR``) in that
shape instead of needing the real dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from typing import Any

CONFIGS = {
    # μLO_M's largest inner model: MLP 3072→1024→1024→10, batch 4096.
    "mulo-m": dict(width=1024, batch_size=4096),
    "small": dict(width=128, batch_size=128),
}


def prepare_data_cache(num_train: int = 50_000) -> None:
  """Point ``LOPT_CACHE_DIR`` (a fresh temp dir unless set) at a synthetic CIFAR-10 cache."""
  import numpy as np
  os.environ.setdefault("LOPT_CACHE_DIR", tempfile.mkdtemp(prefix="lopt_bench_"))
  from meta_tasks.datasets import cache_path
  path = cache_path(os.environ["LOPT_CACHE_DIR"], "cifar10", None, False)
  if path.exists():
    return
  rng = np.random.default_rng(0)
  num_test = max(num_train // 5, 1)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, train_images=rng.integers(0, 256, (num_train, 32, 32, 3), dtype=np.uint8),
           train_labels=rng.integers(0, 10, num_train).astype(np.int32),
           test_images=rng.integers(0, 256, (num_test, 32, 32, 3), dtype=np.uint8),
           test_labels=rng.integers(0, 10, num_test).astype(np.int32))


class AdamAsLOpt:
  """Plain Adam behind the learned-optimizer interface (θ is ignored)."""

  def __init__(self, learning_rate: float = 1e-3):
    import optax
    self.learning_rate = learning_rate
    self.tx = optax.adam(learning_rate)

  def init(self, key):
    import jax.numpy as jnp
    return {"unused": jnp.zeros(())}

  def init_state(self, params):
    return self.tx.init(params)

  def check_theta(self, theta):
    if set(theta) != {"unused"}:
      raise ValueError(f"θ of AdamAsLOpt is {{'unused': 0.0}}, got keys {sorted(theta)}.")

  def update(self, theta, grads, state, params, *, num_steps=None, mup=None, loss=None):
    return self.tx.update(grads, state, params)

  def as_optax(self, theta, num_steps=None, mup=None):
    return self.tx

  def to_record(self):
    return {"learning_rate": self.learning_rate}


def make_task(name: str, width: int | None = None, batch: int | None = None):
  """The inner problem of config ``name`` (width/batch overridable, e.g. for smoke tests)."""
  from meta_tasks import ImageMLPTask
  spec = CONFIGS[name]
  return ImageMLPTask(dataset="cifar10", width=width or spec["width"], depth=3,
                      batch_size=batch or spec["batch_size"], parameterization="mup")


def _timed(step, n: int, max_seconds: float | None) -> tuple[float, float, int, int]:
  """Call ``step(i)`` (which blocks) 1 + up to ``n`` times: (seconds of the first
  call, which includes compilation; median seconds of the others; how many; the
  XLA compilations over all calls). With ``max_seconds``, stop once the timed
  calls have taken that long."""
  from training import tracking
  compiles, times = tracking.compile_count(), []
  for i in range(n + 1):
    t0 = time.perf_counter()
    step(i)
    times.append(time.perf_counter() - t0)
    if i and max_seconds is not None and sum(times[1:]) >= max_seconds:
      break
  return times[0], statistics.median(times[1:]), len(times) - 1, tracking.compile_count() - compiles


def _inner_flops(task, steps: int) -> float:
  """Forward + backward matmul FLOPs of ``steps`` inner steps (6·batch·Σ fan_in·fan_out)."""
  import math
  from meta_tasks.datasets import image_shape
  widths = [math.prod(image_shape("cifar10", None, False)), task.width, task.width, 10]
  return 6 * task.batch_size * sum(a * b for a, b in zip(widths[:-1], widths[1:])) * steps


@dataclasses.dataclass(frozen=True)
class _Particles:
  """What one benchmark times: per task, 2·``pairs`` particles of ``truncation``
  inner steps each."""
  tasks: tuple
  data: tuple   # jit arguments, never baked-in constants
  schedule: Any
  pairs: int
  truncation: int
  outer_steps: int
  max_seconds: float | None
  meta_loss: str = "train"

  def systems(self, lo, data) -> list:
    from training.lo_system import LOTrainingSystem
    return [LOTrainingSystem(lo, t, self.truncation, self.schedule, data=d,
                             meta_loss=self.meta_loss) for t, d in zip(self.tasks, data)]

  def time_lo(self, lo, estimator: str, opt) -> tuple[float, float, int, int]:
    """One jitted outer step: one ``estimator`` per task, the mean of their
    estimates and the θ update by ``opt``; (first, seconds, timed, compiles)."""
    import jax
    import optax
    from training.estimators import make_estimator

    def estimators(data):
      return [make_estimator(estimator, system=s, num_pairs=self.pairs, sigma=0.01)
              for s in self.systems(lo, data)]

    def outer_step(theta, opt_state, est_states, key, data):
      out = [e.estimate(theta, st, jax.random.fold_in(key, i))
             for i, (e, st) in enumerate(zip(estimators(data), est_states))]
      g = jax.tree_util.tree_map(lambda *x: sum(x) / len(x), *(g for g, _, _ in out))
      u, opt_state = opt.update(g, opt_state, theta)
      return optax.apply_updates(theta, u), opt_state, tuple(st for _, st, _ in out)

    theta = lo.init(jax.random.PRNGKey(0))
    init = jax.jit(lambda k, th: tuple(e.init(jax.random.fold_in(k, i), th) for i, e in
                                       enumerate(estimators((None,) * len(self.tasks)))))
    carry = [theta, opt.init(theta), init(jax.random.PRNGKey(1), theta)]
    jitted = jax.jit(outer_step, donate_argnums=(1, 2))

    def step(i):
      carry[:] = jitted(*carry, jax.random.PRNGKey(i), self.data)
      jax.block_until_ready(carry[0])

    return _timed(step, self.outer_steps, self.max_seconds)

  def time_adam(self) -> tuple[float, float, int, int]:
    """The same particles trained by plain Adam (vmapped, one scan, no
    estimator): the cost of the inner problems alone."""
    import jax
    particles = 2 * self.pairs
    dummy = {"unused": jax.numpy.zeros(())}
    systems = lambda data: self.systems(AdamAsLOpt(), data)
    keys = jax.random.split(jax.random.PRNGKey(2), particles)
    states = [tuple(jax.jit(jax.vmap(lambda k, s=s: s.init_state(k)))(keys)
                    for s in systems((None,) * len(self.tasks)))]
    unroll = jax.jit(lambda states, keys, data: tuple(
        jax.vmap(lambda st, k, s=s: s.unroll(dummy, dummy, st, k)[0])(st, keys)
        for s, st in zip(systems(data), states)), donate_argnums=0)

    def step(i):
      keys = jax.random.split(jax.random.PRNGKey(100 + i), particles)
      states[0] = unroll(states[0], keys, self.data)
      jax.block_until_ready(states[0])

    return _timed(step, self.outer_steps, self.max_seconds)


def _bench_task(task, timing, *, pairs: int = 8, truncation: int = 50, outer_steps: int = 3,
                max_seconds: float | None = None, data=None) -> dict:
  """``timing(run)`` of 2·``pairs`` particles of ``task`` (K = ``truncation``) as
  particle-steps/s, TFLOP/s of the inner model and the compilations."""
  from training.lo_system import TruncationSchedule
  run = _Particles((task,), (task.data() if data is None else data,),
                   TruncationSchedule(100, 1000), pairs, truncation, outer_steps, max_seconds)
  first, seconds, timed, compiles = timing(run)
  steps = 2 * pairs * truncation
  return dict(steps_per_s=steps / seconds, seconds_per_outer=seconds, first_s=first,
              compiles=compiles, outer_steps=timed,
              tflops=_inner_flops(task, steps) / seconds / 1e12)


def bench_lo(task, lo, **kw) -> dict:
  """PES meta-training with the LO ``lo`` on ``task``: particle-steps/s of one
  jitted outer step (``pairs`` antithetic pairs x ``truncation`` inner steps,
  plus the θ update) and the XLA compilations over all outer steps (keywords:
  ``_bench_task``'s)."""
  import optax
  return _bench_task(task, lambda run: run.time_lo(lo, "pes", optax.adamw(3e-3)), **kw)


def bench_adam_floor(task, **kw) -> dict:
  """The same 2·``pairs`` inner models trained for ``truncation`` steps by plain
  Adam (vmapped, one scan, no estimator): the cost of the inner problem alone."""
  return _bench_task(task, _Particles.time_adam, **kw)


def bench_distribution(name: str, lo, *, pairs: int, truncation: int, outer_steps: int,
                       estimator: str = "es_single", meta_loss: str = "valid",
                       max_seconds: float | None = None) -> dict:
  """Meta-training throughput on a named distribution: one jitted outer step
  runs one ``estimator`` per static task config (``pairs`` antithetic pairs
  each, K=``truncation``) and the θ update, as ``training.trainer`` does; and,
  in the same process, the same particles trained by plain Adam (the inner
  tasks alone). Their difference is the LO's share of the time."""
  import optax
  import meta_tasks
  from training.lo_system import TruncationSchedule

  tasks = tuple(meta_tasks.get_distribution(name).configs())
  run = _Particles(tasks, tuple(t.data() for t in tasks), TruncationSchedule(truncation, 1000),
                   pairs, truncation, outer_steps, max_seconds, meta_loss)
  lo_first, lo_s, timed, compiles = run.time_lo(lo, estimator, optax.adam(1e-3))
  adam_s = run.time_adam()[1]
  steps = 2 * pairs * truncation * len(tasks)
  return dict(tasks=[t.name for t in tasks], steps_per_s=steps / lo_s, seconds_per_outer=lo_s,
              first_s=lo_first, compiles=compiles, outer_steps=timed,
              adam_steps_per_s=steps / adam_s, lo_share=max(0.0, 1 - adam_s / lo_s))


def _bench_preset(args) -> int:
  import jax
  from training.config import get_preset
  c = get_preset(args.preset)
  r = bench_distribution(c.distribution, c.lo, pairs=c.num_pairs, truncation=c.truncation_length,
                         outer_steps=args.outer_steps or 5, estimator=c.estimator,
                         meta_loss=c.meta_loss, max_seconds=args.max_seconds)
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
        f"preset {args.preset}: {type(c.lo).__name__} on {c.distribution} "
        f"({len(r['tasks'])} task configs), {c.estimator}, {c.num_pairs} pairs each, "
        f"K={c.truncation_length}, meta-loss {c.meta_loss}")
  print(f"inner steps/s (LO meta-training, whole outer step): {r['steps_per_s']:9.0f}")
  print(f"inner steps/s (same particles, plain Adam):         {r['adam_steps_per_s']:9.0f}")
  print(f"LO update + estimator share of the time:            {100 * r['lo_share']:8.0f}%")
  print(f"seconds per outer step {r['seconds_per_outer']:.3f}; first call (compile) "
        f"{r['first_s']:.0f} s; XLA compilations, first call included, over {r['outer_steps']} timed outer steps: "
        f"{r['compiles']}")
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--configs", default=None, help="comma list of " + ", ".join(CONFIGS)
                      + " (default: both on GPU, small on CPU)")
  parser.add_argument("--outer_steps", type=int, default=None,
                      help="timed outer steps (default 100 on GPU, 3 on CPU)")
  parser.add_argument("--pairs", type=int, default=8)
  parser.add_argument("--truncation", type=int, default=50)
  parser.add_argument("--batch", type=int, default=None, help="override the batch size")
  parser.add_argument("--width", type=int, default=None, help="override the hidden width")
  parser.add_argument("--backend", default=None, help="LO update backend: auto, xla, pallas")
  parser.add_argument("--config", default=None,
                      help="meta-train the architecture config of this pretrained LO "
                           "(e.g. mulo-m) instead of the reference MLPLOpt()")
  parser.add_argument("--max_seconds", type=float, default=None,
                      help="stop each timed loop once its outer steps took this long")
  parser.add_argument("--preset", default=None,
                      help="time a meta-training preset's real outer step instead (its LO, "
                           "distribution, estimator, pairs, K and meta-loss; e.g. mulo-a-cpu)")
  args = parser.parse_args(argv)

  import jax
  if args.preset:
    return _bench_preset(args)
  on_gpu = jax.default_backend() == "gpu"
  configs = args.configs.split(",") if args.configs else (list(CONFIGS) if on_gpu else ["small"])
  unknown = [c for c in configs if c not in CONFIGS]
  if unknown:
    parser.error(f"unknown configs {unknown}; valid: {list(CONFIGS)}")
  args.outer_steps = args.outer_steps or (100 if on_gpu else 3)
  prepare_data_cache()
  import lopt
  config = dict(lopt.load_metadata(args.config)["config"]) if args.config else {}
  if args.backend:
    config["backend"] = args.backend

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
        f"{args.pairs} antithetic pairs, K={args.truncation}, PES, "
        f"LO {args.config or 'reference'} config, backend {args.backend or 'auto'}")
  print(f"{'config':8} {'width':>5} {'batch':>5} {'PES LO steps/s':>15} {'Adam steps/s':>13} "
        f"{'Adam/LO':>8} {'LO TFLOP/s':>10} {'Adam TFLOP/s':>12} {'compiles':>9}")
  for name in configs:
    task = make_task(name, args.width, args.batch)
    kw = dict(pairs=args.pairs, truncation=args.truncation, outer_steps=args.outer_steps,
              max_seconds=args.max_seconds, data=task.data())
    lo = bench_lo(task, lopt.MLPLOpt.from_record(config), **kw)
    adam = bench_adam_floor(task, **kw)
    print(f"{name:8} {task.width:5d} {task.batch_size:5d} {lo['steps_per_s']:15.1f} "
          f"{adam['steps_per_s']:13.1f} {adam['steps_per_s'] / lo['steps_per_s']:7.1f}x "
          f"{lo['tflops']:10.4f} {adam['tflops']:12.4f} {lo['compiles']:>9}"
          f"  (over {lo['outer_steps']} outer steps)")
  return 0
