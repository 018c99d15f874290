"""Time one learned-optimizer update (MLPLOpt or AdaptiveLOpt, per backend) against optax.adam.

    python scripts/bench_update.py                          # GPU: every size; CPU: 1m, XLA only
    python scripts/bench_update.py --sizes 1m,100m --backends xla,pallas --iters 20
    python scripts/bench_update.py --config mulo-m          # the shipped adaptive LO, its θ

For each parameter set it prints the median time of a jitted update (after
warm-up, ``block_until_ready`` on every call), the ratio to Adam measured in the
same process, and the achieved memory bandwidth as a fraction of the device's
peak. Bytes moved are counted two ways:

* compulsory: the nbytes of every array the update reads (grads, params for
  the LO, optimizer state) plus every array it writes (updates, new state);
* model: what the fused kernels actually move by design
  (``lopt.kernels.kernel_bytes_per_param``: two passes plus the g² row/column
  means; rows/columns and θ are negligible; for AdaptiveLOpt
  ``lopt.kernels.adaptive_bytes_per_param``, with the mean-free residual's add
  as its own pass, since the timed update's output is not consumed). Only for
  the pallas backend.

Peak bandwidth comes from a table of known devices; on CPU (or an unknown
device) it is a measured copy bandwidth (a large jitted ``x * 2``), and the
table says so. ``--config NAME`` benchmarks a pretrained LO instead of the
reference ``MLPLOpt(mup=False)``: an MLPLOpt's architecture config
(``lopt.load_metadata(NAME)["config"]``), or, for any other architecture
(``mulo-m``, an AdaptiveLOpt), the shipped LO itself, its θ included.
``bench_size`` is also imported by ``gpu_check.py``. On
CPU the pallas backend runs in interpret mode, which times an emulation, not a
kernel: it is skipped unless asked for.

A second table (``--forms``, default ``mulo-m,mulo-r``; ``--forms ''`` skips it)
times the forms users run, each against ``optax.adam`` in the same process:
the shipped ``mulo-m`` (an AdaptiveLOpt, its meta-trained θ), the shipped
``mulo-r`` (``lopt.forms.robust``, its θ) and (``--forms adaptive``)
``lopt.AdaptiveLOpt()`` at θ = 0, each on its default backend ("auto": the fused Pallas update on
GPU), with ns per parameter, FLOPs per parameter
and bytes accessed per parameter from XLA's cost analysis of the compiled
update, the achieved GFLOP/s, its fraction of the GFLOP/s of a large
``jnp.dot`` timed in the same process, and optimizer-state bytes per
parameter (Adam: 8). ``--profile`` adds, per form, where the time goes: a
``jax.profiler`` trace of the compiled update, its time per HLO op (fusion or
kernel), largest first, with each op's output shape.

    python scripts/bench_update.py --sizes 1m --backends '' --profile
"""

from __future__ import annotations

import argparse
import dataclasses
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
  # (layers, width) of the MLP stacks: tiny 2 x (64² + 64) = 8.3K, for smoke tests
  # (gpu_check.py --dry-run); 1m 4 x (512² + 512) = 1.05M; 100m 24 x (2048² + 2048) =
  # 100.7M, the issue-8 reference size.
  stacks = {"tiny": (2, 64), "1m": (4, 512), "100m": (24, 2048)}
  if name in stacks:
    layers, d = stacks[name]
    return {k: v for i in range(layers) for k, v in _block(f"l{i}", d, d).items()}
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


def _problem(name: str) -> tuple[dict, dict, int]:
  """(params, grads, parameter count) of the parameter set ``name``."""
  params = _tree(param_shapes(name), jax.random.PRNGKey(0))
  grads = jax.tree_util.tree_map(lambda p: 1e-3 * p, params)
  return params, grads, sum(p.size for p in jax.tree_util.tree_leaves(params))


def model_bytes_per_param(lo) -> int | None:
  """Bytes per f32 parameter the fused kernels of ``lo`` move by design (None:
  its update runs in XLA whatever the backend)."""
  if isinstance(lo, lopt.AdaptiveLOpt):
    if not lopt.kernels.adaptive_supports(lo.step):
      return None
    # The mean-free add is its own pass: the timed update's output is not consumed.
    return lopt.kernels.adaptive_bytes_per_param(4, lopt.kernels.adaptive_mean_free(lo.step))[1]
  return lopt.kernels.kernel_bytes_per_param(4)[0]


def _lo_and_theta(backend: str, config: dict | None, pretrained: str | None):
  if pretrained is not None:
    lo, theta = lopt.load_pretrained(pretrained)
    return dataclasses.replace(lo, backend=backend), jax.tree_util.tree_map(jnp.asarray, theta)
  lo = (lopt.MLPLOpt(mup=False, backend=backend) if config is None
        else lopt.MLPLOpt.from_record({**config, "backend": backend}))
  return lo, lo.init(jax.random.PRNGKey(1))


def bench_size(name: str, backends: list[str], warmup: int, iters: int, peak: float | None,
               config: dict | None = None, pretrained: str | None = None) -> list[dict]:
  """Rows (one per optimizer: optax.adam, then each backend) for the parameter set
  ``name``. ``peak`` None (unknown device) leaves the bandwidth fractions None;
  ``gbps`` (achieved GB/s of compulsory traffic) is always filled. The LO is the
  reference ``MLPLOpt(mup=False)``, or ``config`` (e.g. a pretrained LO's
  architecture config) with ``backend`` overridden, or the pretrained LO
  ``pretrained`` (its config and θ; e.g. "mulo-m") with ``backend`` overridden."""
  params, grads, n = _problem(name)
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
    lo, theta = _lo_and_theta(backend, config, pretrained)
    # A μP-mode LO needs the tensors' kinds: every matrix here is a hidden one.
    kinds = lopt.mup.kinds_from_paths(params, {"kernel": "hidden"}) if lo.mup else None
    state = lo.init_state(params)
    update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=1000, mup=kinds))
    seconds = time_call(update, grads, state, params, warmup=warmup, iters=iters)
    moved = _nbytes((grads, state, params)) + _nbytes(
        jax.eval_shape(update, grads, state, params))
    per_param = model_bytes_per_param(lo) if backend == "pallas" else None
    model = per_param * n if per_param else None
    label = f"{type(lo).__name__}[{backend}]"
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


def matmul_gflops(n: int = 1024, iters: int = 7) -> float:
  """GFLOP/s of a jitted float32 ``jnp.dot`` of two [n, n] matrices (2n³ FLOPs)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  return 2 * n**3 / time_call(dot, a, a, warmup=2, iters=iters) / 1e9


def form_update(form: str, params):
  """(jitted update(grads, state, params), initial state) of a form users run:
  "adam" (optax.adam), "mulo-m" or "mulo-r" (a shipped LO, its θ) or "adaptive"
  (AdaptiveLOpt at θ = 0). Every matrix is a hidden one in the μP spec."""
  if form == "adam":
    tx = optax.adam(1e-3)
    return jax.jit(lambda g, s, p: tx.update(g, s, p)), tx.init(params)
  kinds = lopt.mup.kinds_from_paths(params, {"kernel": "hidden"})
  if form in ("mulo-m", "mulo-r"):
    lo, theta = lopt.load_pretrained(form)
  elif form == "adaptive":
    lo = lopt.AdaptiveLOpt()
    theta = jax.tree_util.tree_map(jnp.zeros_like, lo.init(jax.random.PRNGKey(0)))
  else:
    raise ValueError(f"unknown form {form!r}")
  update = jax.jit(lambda g, s, p: lo.update(theta, g, s, p, num_steps=1000, mup=kinds))
  return update, lo.init_state(params)


def hlo_op_shapes(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> "its output shape, opcode" in an optimized module's text."""
  import re
  return {m.group(1): f"{m.group(2)} {m.group(3)}" for m in re.finditer(
      r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+(?: \S+\))?) ([\w\-]+)\(", hlo_text, re.M)}


def profile_ops(fn, *args, calls: int = 5) -> list[tuple[str, float]]:
  """(HLO op, µs per call) of a jitted ``fn`` from a jax.profiler trace, largest first."""
  import collections
  import glob
  import gzip
  import json
  import tempfile
  jax.block_until_ready(fn(*args))
  with tempfile.TemporaryDirectory() as logdir:
    with jax.profiler.trace(logdir, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(fn(*args))
    path = glob.glob(f"{logdir}/**/*.trace.json.gz", recursive=True)[0]
    with gzip.open(path) as f:
      events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  hlo_names = set(hlo_op_shapes(fn.lower(*args).compile().as_text()))
  total = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in hlo_names:
      total[e["name"]] += e.get("dur", 0.0) / calls
  return total.most_common()


def bench_forms(name: str, forms: list[str], warmup: int, iters: int,
                dot_gflops: float) -> list[dict]:
  """Rows (optax.adam, then each form) for the parameter set ``name``: seconds,
  ns/param, FLOPs and bytes accessed per param (XLA cost analysis), GFLOP/s,
  fraction of ``dot_gflops`` and state bytes per param."""
  params, grads, n = _problem(name)
  rows = []
  for form in ["adam", *forms]:
    update, state = form_update(form, params)
    seconds = time_call(update, grads, state, params, warmup=warmup, iters=iters)
    cost = update.lower(grads, state, params).compile().cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    flops = cost.get("flops", 0.0) + cost.get("transcendentals", 0.0)
    rows.append(dict(size=name, n=n, opt="optax.adam" if form == "adam" else form, form=form,
                     seconds=seconds, ns_per_param=1e9 * seconds / n, flops_per_param=flops / n,
                     bytes_per_param=cost.get("bytes accessed", float("nan")) / n,
                     gflops=flops / seconds / 1e9, dot_fraction=flops / seconds / 1e9 / dot_gflops,
                     state=_nbytes(state) / n, update=update, args=(grads, state, params)))
  adam_s = rows[0]["seconds"]
  for row in rows:
    row["ratio"] = row["seconds"] / adam_s
  return rows


def print_forms(rows: list[dict], dot_gflops: float, profile: bool, top: int = 12) -> None:
  print(f"\nforms users run (matmul reference: jnp.dot 1024x1024 f32 = {dot_gflops:.1f} GFLOP/s "
        "in this process; FLOPs and bytes from XLA's cost analysis)")
  header = (f"{'size':>6} {'params':>8} {'optimizer':>16} {'ms':>9} {'x adam':>7} {'ns/param':>9} "
            f"{'FLOP/param':>10} {'B/param':>8} {'GFLOP/s':>8} {'x dot':>7} {'state B/p':>9}")
  print(header)
  print("-" * len(header))
  for row in rows:
    print(f"{row['size']:>6} {row['n'] / 1e6:7.2f}M {row['opt']:>16} {1e3 * row['seconds']:9.3f} "
          f"{row['ratio']:7.2f} {row['ns_per_param']:9.2f} {row['flops_per_param']:10.1f} "
          f"{row['bytes_per_param']:8.1f} {row['gflops']:8.2f} {100 * row['dot_fraction']:6.1f}% "
          f"{row['state']:9.2f}")
  if not profile:
    return
  for row in rows:
    ops = profile_ops(row["update"], *row["args"])
    shapes = hlo_op_shapes(row["update"].lower(*row["args"]).compile().as_text())
    total = sum(us for _, us in ops)
    print(f"\nwhere {row['opt']}'s update ({row['size']}) spends its time: {len(ops)} HLO ops "
          f"ran, {total / 1e3:.3f} ms per call inside them "
          f"({1e3 * row['seconds']:.3f} ms wall)")
    for op, us in ops[:top]:
      print(f"  {us:9.1f} us {100 * us / total:5.1f}%  {op:<28} {shapes.get(op, '')[:70]}")
    rest = sum(us for _, us in ops[top:])
    if rest:
      print(f"  {rest:9.1f} us {100 * rest / total:5.1f}%  ({len(ops) - top} more ops)")


def main() -> None:
  on_gpu = jax.default_backend() == "gpu"
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1m,100m,vit-b,gpt2-medium" if on_gpu else "1m",
                      help="comma-separated: " + ", ".join(SIZES))
  parser.add_argument("--backends", default="xla,pallas" if on_gpu else "xla",
                      help="comma-separated LO backends: xla, pallas")
  parser.add_argument("--iters", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--forms", default="mulo-m,mulo-r",
                      help="comma-separated forms for the FLOP table: mulo-m, mulo-r, adaptive "
                           "('' skips)")
  parser.add_argument("--profile", action="store_true",
                      help="per form, the time per HLO op from a jax.profiler trace")
  parser.add_argument("--config", default=None,
                      help="benchmark this pretrained LO instead of the reference "
                           "MLPLOpt(mup=False): an MLPLOpt's architecture config (e.g. "
                           "mulo-r), or the shipped LO itself (e.g. mulo-m, an AdaptiveLOpt)")
  args = parser.parse_args()
  config = pretrained = None
  if args.config:
    meta = lopt.load_metadata(args.config)
    if meta["architecture"] == "MLPLOpt":
      config = meta["config"]
    else:
      pretrained = args.config
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
  if pretrained is not None:
    print(f"LO: the shipped {pretrained} ({lopt.load_metadata(pretrained)['architecture']}), "
          "its config and θ")
  if "pallas" in backends and not on_gpu:
    print("note: pallas off GPU runs in interpret mode (an XLA emulation of the kernels); "
          "its time is not a kernel timing.")
  sizes = [s for s in args.sizes.split(",") if s]
  if backends:
    if pretrained is None:
      low, high = lopt.kernels.kernel_bytes_per_param(4)
      designed = f"{low} B/param for f32; {high} if XLA reads g twice for the row/col means of g²"
    else:
      designed = f"{model_bytes_per_param(lopt.load_pretrained(pretrained)[0])} B/param for f32"
    print("bytes: compulsory = nbytes(read: grads, state[, params]) + nbytes(written: updates, "
          f"state); model = the fused kernels' designed traffic ({designed})")
    header = (f"{'size':>12} {'params':>8} {'optimizer':>28} {'ms':>9} {'x adam':>7} "
              f"{'B/param':>8} {'%peak':>6} {'model%':>7} {'state B/p':>9}")
    print(header)
    print("-" * len(header))
  for name in sizes if backends else []:
    for row in bench_size(name, backends, args.warmup, args.iters, peak, config, pretrained):
      model = f"{100 * row['bw_model']:6.1f}%" if row["bw_model"] else f"{'-':>7}"
      print(f"{row['size']:>12} {row['n'] / 1e6:7.1f}M {row['opt']:>28} "
            f"{1e3 * row['seconds']:9.3f} {row['ratio']:7.2f} "
            f"{row['compulsory'] / row['n']:8.1f} {100 * row['bw_compulsory']:5.1f}% {model} "
            f"{row['state']:9.2f}")
  forms = [f for f in args.forms.split(",") if f]
  if forms:
    dot = matmul_gflops()
    rows = [row for name in sizes
            for row in bench_forms(name, forms, args.warmup, args.iters, dot)]
    print_forms(rows, dot, args.profile)


if __name__ == "__main__":
  main()
