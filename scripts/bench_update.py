"""Time one learned-optimizer update (MLPLOpt, per backend) against optax.adam.

    python scripts/bench_update.py                          # GPU: every size; CPU: 1m, XLA only
    python scripts/bench_update.py --sizes 1m,100m --backends xla,pallas --iters 20

For each parameter set it prints the median time of a jitted update (after
warm-up, ``block_until_ready`` on every call), the ratio to Adam measured in the
same process, and the achieved memory bandwidth as a fraction of the device's
peak. Bytes moved are counted two ways:

* compulsory: the nbytes of every array the update reads (grads, params for
  the LO, optimizer state) plus every array it writes (updates, new state);
* model: what the fused kernels actually move by design
  (``lopt.kernels.kernel_bytes_per_param``: two passes plus the g² row/column
  means; rows/columns and θ are negligible). Only for the pallas backend.

Peak bandwidth comes from a table of known devices; on CPU (or an unknown
device) it is a measured copy bandwidth (a large jitted ``x * 2``), and the
table says so. ``--config NAME`` benchmarks the architecture config of a
pretrained LO (``lopt.load_metadata(NAME)["config"]``) instead of the reference
``MLPLOpt(mup=False)``. ``bench_size`` is also imported by ``gpu_check.py``. On CPU the pallas backend runs in interpret mode, which times
an emulation, not a kernel: it is skipped unless asked for.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt

# Peak HBM bandwidth (bytes/s), matched on lower-cased device_kind, first hit wins.
PEAK_BANDWIDTH = (
    (("h200",), 4.8e12),
    (("h100", "pcie"), 2.0e12),
    (("h100",), 3.35e12),   # SXM (HBM3)
    (("a100",), 2.0e12),
)


def _block(prefix: str, d_in: int, d_out: int) -> dict:
  return {f"{prefix}_kernel": (d_in, d_out), f"{prefix}_bias": (d_out,)}


def _transformer(layers: int, d: int, mlp: int, extra: dict) -> dict:
  shapes = dict(extra)
  for i in range(layers):
    shapes.update({f"l{i}_ln1_scale": (d,), f"l{i}_ln1_bias": (d,),
                   f"l{i}_ln2_scale": (d,), f"l{i}_ln2_bias": (d,),
                   **_block(f"l{i}_qkv", d, 3 * d), **_block(f"l{i}_proj", d, d),
                   **_block(f"l{i}_fc1", d, mlp), **_block(f"l{i}_fc2", mlp, d)})
  shapes.update({"final_ln_scale": (d,), "final_ln_bias": (d,)})
  return shapes


SIZES = ("tiny", "1m", "100m", "vit-b", "gpt2-medium")


def param_shapes(name: str) -> dict[str, tuple[int, ...]]:
  if name == "tiny":   # 2 x (64² + 64) = 8.3K: smoke tests (gpu_check.py --dry-run)
    return {k: v for i in range(2) for k, v in _block(f"l{i}", 64, 64).items()}
  if name == "1m":     # 4 x (512² + 512) = 1.05M
    return {k: v for i in range(4) for k, v in _block(f"l{i}", 512, 512).items()}
  if name == "100m":   # 24 x (2048² + 2048) = 100.7M, the DESIGN.md reference point
    return {k: v for i in range(24) for k, v in _block(f"l{i}", 2048, 2048).items()}
  if name == "vit-b":  # ViT-B/16 at 224², 1000 classes: 86.6M
    return _transformer(12, 768, 3072, {
        "patch_kernel": (16, 16, 3, 768), "patch_bias": (768,), "cls": (1, 1, 768),
        "pos_embedding": (1, 197, 768), **_block("head", 768, 1000)})
  if name == "gpt2-medium":  # 24 layers, d=1024, vocab 50257 (tied head): 355M
    return _transformer(24, 1024, 4096, {"wte": (50257, 1024), "wpe": (1024, 1024)})
  raise ValueError(f"unknown size {name!r}; choose from {', '.join(SIZES)}")


def _tree(shapes: dict, key: jax.Array) -> dict:
  keys = jax.random.split(key, len(shapes))
  return {n: jax.random.normal(k, s, jnp.float32) for k, (n, s) in zip(keys, shapes.items())}


def _nbytes(tree) -> int:
  """Bytes of every array (or ShapeDtypeStruct) in a pytree."""
  return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
             for x in jax.tree_util.tree_leaves(tree))


def time_call(fn, *args, warmup: int, iters: int) -> float:
  """Median seconds per call of a jitted ``fn`` (compile and warm-up excluded)."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def table_peak_bandwidth(device_kind: str) -> float | None:
  """Peak HBM bytes/s of a known device kind (e.g. "NVIDIA H100 80GB HBM3"), else None."""
  kind = device_kind.lower()
  for keys, peak in PEAK_BANDWIDTH:
    if all(k in kind for k in keys):
      return peak
  return None


def peak_bandwidth(device) -> tuple[float, str]:
  """(bytes/s, where the number comes from)."""
  peak = table_peak_bandwidth(device.device_kind)
  if peak is not None:
    return peak, f"table ({device.device_kind})"
  # 256 MiB read and written in place (donated), so no call pays for fresh pages.
  double = jax.jit(lambda x: x * 2, donate_argnums=0)
  x = jnp.ones((64 * 2**20,), jnp.float32)
  nbytes, times = x.nbytes, []
  for i in range(12):
    start = time.perf_counter()
    x = jax.block_until_ready(double(x))
    if i >= 2:
      times.append(time.perf_counter() - start)
  return (2 * nbytes / statistics.median(times),
          f"measured: copy bandwidth of a jitted in-place x*2 on {device.device_kind}")


def lo_from_config(config: dict | None, backend: str):
  """The benchmarked LO: the reference ``MLPLOpt(mup=False)``, or ``MLPLOpt(**config)``
  (e.g. a pretrained LO's architecture config) with ``backend`` overridden."""
  if config is None:
    return lopt.MLPLOpt(mup=False, backend=backend)
  return lopt.MLPLOpt.from_record({**config, "backend": backend})


def bench_size(name: str, backends: list[str], warmup: int, iters: int, peak: float | None,
               config: dict | None = None) -> list[dict]:
  """Rows (one per optimizer: optax.adam, then each backend) for the parameter set
  ``name``. ``peak`` None (unknown device) leaves the bandwidth fractions None;
  ``gbps`` (achieved GB/s of compulsory traffic) is always filled."""
  shapes = param_shapes(name)
  params = _tree(shapes, jax.random.PRNGKey(0))
  grads = jax.tree_util.tree_map(lambda p: 1e-3 * p, params)
  n = sum(p.size for p in jax.tree_util.tree_leaves(params))
  rows = []

  adam = optax.adam(1e-3)
  adam_state = adam.init(params)
  adam_update = jax.jit(adam.update)
  adam_s = time_call(adam_update, grads, adam_state, warmup=warmup, iters=iters)
  moved = _nbytes((grads, adam_state)) + _nbytes(jax.eval_shape(adam.update, grads, adam_state))
  rows.append(dict(size=name, n=n, opt="optax.adam", backend=None, seconds=adam_s, ratio=1.0,
                   compulsory=moved, model=None, state=_nbytes(adam_state) / n))
  del adam_state

  for backend in backends:
    lo = lo_from_config(config, backend)
    # A μP-mode LO needs the tensors' kinds: every matrix here is a hidden one.
    kinds = lopt.mup.kinds_from_paths(params, {"kernel": "hidden"}) if lo.mup else None
    theta = lo.init(jax.random.PRNGKey(1))
    state = lo.init_state(params)
    update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=1000, mup=kinds))
    seconds = time_call(update, grads, state, params, warmup=warmup, iters=iters)
    moved = _nbytes((grads, state, params)) + _nbytes(
        jax.eval_shape(update, grads, state, params))
    model = lopt.kernels.kernel_bytes_per_param(4)[0] * n if backend == "pallas" else None
    label = f"MLPLOpt[{backend}]"
    if backend == "pallas" and lopt.kernels.interpret_mode():
      label += " (interpret)"
    rows.append(dict(size=name, n=n, opt=label, backend=backend, seconds=seconds,
                     ratio=seconds / adam_s, compulsory=moved, model=model,
                     state=_nbytes(state) / n))
    del state
  for row in rows:
    row["gbps"] = row["compulsory"] / row["seconds"] / 1e9
    row["bw_compulsory"] = row["compulsory"] / row["seconds"] / peak if peak else None
    row["bw_model"] = row["model"] / row["seconds"] / peak if row["model"] and peak else None
  return rows


def main() -> None:
  on_gpu = jax.default_backend() == "gpu"
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1m,100m,vit-b,gpt2-medium" if on_gpu else "1m",
                      help="comma-separated: " + ", ".join(SIZES))
  parser.add_argument("--backends", default="xla,pallas" if on_gpu else "xla",
                      help="comma-separated MLPLOpt backends: xla, pallas")
  parser.add_argument("--iters", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--config", default=None,
                      help="benchmark the architecture config of this pretrained LO "
                           "(e.g. mulo-m) instead of the reference MLPLOpt(mup=False)")
  args = parser.parse_args()
  config = lopt.load_metadata(args.config)["config"] if args.config else None
  backends = [b for b in args.backends.split(",") if b]
  for b in backends:
    if b not in ("xla", "pallas"):
      parser.error(f"unknown backend {b!r}")

  device = jax.devices()[0]
  peak, peak_source = peak_bandwidth(device)
  print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}")
  print(f"peak bandwidth: {peak / 1e9:.1f} GB/s, {peak_source}")
  if config is not None:
    print(f"LO config of {args.config}: {config}")
  if "pallas" in backends and not on_gpu:
    print("note: pallas off GPU runs in interpret mode (an XLA emulation of the kernels); "
          "its time is not a kernel timing.")
  low, high = lopt.kernels.kernel_bytes_per_param(4)
  print("bytes: compulsory = nbytes(read: grads, state[, params]) + nbytes(written: updates, "
        f"state); model = the fused kernels' designed traffic ({low} B/param for f32; {high} "
        "if XLA reads g twice for the row/col means of g²)")
  header = (f"{'size':>12} {'params':>8} {'optimizer':>28} {'ms':>9} {'x adam':>7} "
            f"{'B/param':>8} {'%peak':>6} {'model%':>7} {'state B/p':>9}")
  print(header)
  print("-" * len(header))
  for name in [s for s in args.sizes.split(",") if s]:
    for row in bench_size(name, backends, args.warmup, args.iters, peak, config):
      model = f"{100 * row['bw_model']:6.1f}%" if row["bw_model"] else f"{'-':>7}"
      print(f"{row['size']:>12} {row['n'] / 1e6:7.1f}M {row['opt']:>28} "
            f"{1e3 * row['seconds']:9.3f} {row['ratio']:7.2f} "
            f"{row['compulsory'] / row['n']:8.1f} {100 * row['bw_compulsory']:5.1f}% {model} "
            f"{row['state']:9.2f}")


if __name__ == "__main__":
  main()
