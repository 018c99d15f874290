#!/usr/bin/env python
"""Meta-training throughput: particle inner-steps per second.

    python scripts/bench_meta.py                       # small config (CPU default)
    python scripts/bench_meta.py --configs mulo-m,small --outer_steps 100   # GPU

For each configuration it times, in the same process:

* **PES**: one jitted outer step = 8 antithetic pairs (16 particles) x K=50
  inner steps of the MLP trained by the hidden-32 μLO, plus the θ update;
* **Adam floor**: the same 16 inner models trained for K steps by plain
  ``optax.adam`` (vmapped, one scan), i.e. the cost of the inner problem alone.

It prints particle-steps/s for both, their ratio, the number of XLA
compilations across all outer steps (target: 1 per task shape), and the
achieved TFLOP/s of the inner model (6·batch·Σ fan_in·fan_out per step: forward
and backward matmuls only, so it excludes the optimizer's own work).

Inputs are 32x32x3 like CIFAR-10. The pixel values do not affect throughput,
so the script writes a synthetic uint8 array cache (``LOPT_CACHE_DIR``) in that
shape instead of needing the real dataset.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    # μLO_M's largest inner model (DESIGN.md §5): MLP 3072→1024→1024→10, batch 4096.
    "mulo-m": dict(width=1024, batch_size=4096),
    "small": dict(width=128, batch_size=128),
}


def _synthetic_cifar_cache(path) -> None:
  import numpy as np
  rng = np.random.default_rng(0)
  arrays = {"train_images": rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8),
            "train_labels": rng.integers(0, 10, 50_000).astype(np.int32),
            "test_images": rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8),
            "test_labels": rng.integers(0, 10, 10_000).astype(np.int32)}
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez(path, **arrays)


class AdamAsLOpt:
  """Plain Adam behind the learned-optimizer interface (θ is ignored)."""

  def __init__(self, learning_rate: float = 1e-3):
    import optax
    self.tx = optax.adam(learning_rate)

  def init(self, key):
    import jax.numpy as jnp
    return {"unused": jnp.zeros(())}

  def init_state(self, params):
    return self.tx.init(params)

  def update(self, theta, grads, state, params, *, num_steps=None, mup=None, loss=None):
    return self.tx.update(grads, state, params)


def bench_config(name: str, args) -> dict:
  import jax
  import optax
  from lopt import MLPLOpt
  from meta_tasks import ImageMLPTask
  from training import tracking
  from training.estimators import make_estimator
  from training.lo_system import LOTrainingSystem, TruncationSchedule

  spec = CONFIGS[name]
  task = ImageMLPTask(dataset="cifar10", width=spec["width"], depth=3,
                      batch_size=args.batch or spec["batch_size"], parameterization="mup")
  schedule = TruncationSchedule(100, 1000)
  particles = 2 * args.pairs

  # --- PES with the learned optimizer.
  lo = MLPLOpt(backend=args.backend) if args.backend else MLPLOpt()
  data = task.data()  # a jit argument, never a baked-in constant
  estimator = lambda data: make_estimator(
      "pes", system=LOTrainingSystem(lo, task, args.truncation, schedule, data=data),
      num_pairs=args.pairs, sigma=0.01)
  opt = optax.adamw(3e-3)
  theta = lo.init(jax.random.PRNGKey(0))

  def outer_step(theta, opt_state, est_state, key, data):
    g, est_state, _ = estimator(data).estimate(theta, est_state, key)
    u, opt_state = opt.update(g, opt_state, theta)
    return optax.apply_updates(theta, u), opt_state, est_state

  step = jax.jit(outer_step, donate_argnums=(1, 2))
  est_state = jax.jit(estimator(None).init)(jax.random.PRNGKey(1), theta)
  opt_state = opt.init(theta)
  compiles0 = tracking.compile_count()
  times = []
  for i in range(args.outer_steps + 1):
    t0 = time.perf_counter()
    theta, opt_state, est_state = step(theta, opt_state, est_state, jax.random.PRNGKey(i), data)
    jax.block_until_ready(theta)
    if i:  # step 0 includes compilation
      times.append(time.perf_counter() - t0)
  lo_compiles = tracking.compile_count() - compiles0
  lo_time = statistics.median(times)

  # --- Adam floor: the same inner models and K steps, no estimator.
  adam_system = lambda data: LOTrainingSystem(AdamAsLOpt(), task, args.truncation, schedule,
                                              data=data)
  dummy = {"unused": jax.numpy.zeros(())}
  keys = jax.random.split(jax.random.PRNGKey(2), particles)
  states = jax.jit(jax.vmap(lambda k: adam_system(None).init_state(k)))(keys)
  unroll = jax.jit(lambda states, keys, data: jax.vmap(
      lambda s, k: adam_system(data).unroll(dummy, dummy, s, k)[0])(states, keys),
      donate_argnums=0)
  adam_times = []
  for i in range(args.outer_steps + 1):
    t0 = time.perf_counter()
    states = unroll(states, jax.random.split(jax.random.PRNGKey(100 + i), particles), data)
    jax.block_until_ready(states)
    if i:
      adam_times.append(time.perf_counter() - t0)
  adam_time = statistics.median(adam_times)

  steps = particles * args.truncation
  import math
  from meta_tasks.datasets import image_shape
  widths = [math.prod(image_shape("cifar10", None, False)), spec["width"], spec["width"], 10]
  macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
  flops = 6 * task.batch_size * macs * steps
  return dict(config=name, width=spec["width"], batch=task.batch_size,
              lo_steps_per_s=steps / lo_time, adam_steps_per_s=steps / adam_time,
              lo_tflops=flops / lo_time / 1e12, adam_tflops=flops / adam_time / 1e12,
              compiles=lo_compiles, outer_steps=args.outer_steps)


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
  parser.add_argument("--backend", default=None, help="LO update backend, if selectable")
  args = parser.parse_args(argv)

  import jax
  on_gpu = jax.default_backend() == "gpu"
  configs = args.configs.split(",") if args.configs else (list(CONFIGS) if on_gpu else ["small"])
  unknown = [c for c in configs if c not in CONFIGS]
  if unknown:
    parser.error(f"unknown configs {unknown}; valid: {list(CONFIGS)}")
  args.outer_steps = args.outer_steps or (100 if on_gpu else 3)
  os.environ.setdefault("LOPT_CACHE_DIR", tempfile.mkdtemp(prefix="lopt_bench_"))
  from meta_tasks.datasets import cache_path
  path = cache_path(os.environ["LOPT_CACHE_DIR"], "cifar10", None, False)
  if not path.exists():
    _synthetic_cifar_cache(path)

  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
        f"{args.pairs} antithetic pairs, K={args.truncation}, hidden-32 μLO, PES")
  print(f"{'config':8} {'width':>5} {'batch':>5} {'PES LO steps/s':>15} {'Adam steps/s':>13} "
        f"{'Adam/LO':>8} {'LO TFLOP/s':>10} {'Adam TFLOP/s':>12} {'compiles':>9}")
  for name in configs:
    r = bench_config(name, args)
    print(f"{r['config']:8} {r['width']:5d} {r['batch']:5d} {r['lo_steps_per_s']:15.1f} "
          f"{r['adam_steps_per_s']:13.1f} {r['adam_steps_per_s'] / r['lo_steps_per_s']:7.1f}x "
          f"{r['lo_tflops']:10.4f} {r['adam_tflops']:12.4f} {r['compiles']:>9}"
          f"  (over {r['outer_steps']} outer steps)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
