#!/usr/bin/env python
"""One prepared GPU check: the fused kernels' tests, the update and meta-training
benchmarks, and the shipped LO's form, as one JSON and one markdown table.

    bash scripts/gpu_check.sh OUTDIR             # on one H100/H200: <= 8 minutes in all
    bash scripts/gpu_check.sh --dry-run OUTDIR   # CPU, tiny sizes, Pallas in interpret mode

Writes ``OUTDIR/gpu_check.json`` and ``OUTDIR/gpu_check.md`` (rewritten after
every stage, so a run killed from outside still leaves what it measured) and
prints the table. Each stage runs in its own subprocess with its own time limit;
a stage that hangs is killed and recorded as ``timeout`` with the rows it had
finished, and the other stages still run:

* ``env``: the device, jax, the peak HBM bandwidth (H100 SXM 3.35 TB/s, H200
  4.8 TB/s, from ``device_kind``; otherwise unknown);
* ``fused_tests``: ``tests/test_fused_update.py`` (MLPLOpt's kernels) and
  ``tests/test_fused_adaptive.py`` (AdaptiveLOpt's, the mulo-m form) under
  pytest with the real compiled kernels (``JAX_PLATFORMS`` is set to the GPU,
  since the tests' conftest would otherwise pick the CPU; the row records the
  backend and whether the kernels ran interpreted);
* ``bench_update``: one update at 1M and 100M params for optax.adam and the
  reference μLO (``MLPLOpt(mup=False)``) on the XLA and Pallas backends
  (``scripts/bench_update.py``'s ``bench_size``);
* ``bench_meta``: PES meta-training particle-steps/s on the ``mulo-m`` and
  ``small`` configs for the XLA and Pallas backends and the plain-Adam floor,
  and the compile count (``scripts/bench_meta.py``);
* ``shipped_lo``: the same update and meta benches for the architecture config
  of the shipped MLPLOpt form (``lopt.load_metadata("mulo-r")["config"]``, the
  robust form, also that of mulo-s and sp-lo; passed through unchanged but for
  ``backend``), unless it equals the reference config;
* ``shipped_adaptive``: the update bench (optax.adam, XLA, Pallas) for the
  shipped default LO (``lopt.load_pretrained("mulo-m")``, an AdaptiveLOpt: its
  config and θ, ``backend`` overridden), the optimizer users get from ``mulo-m``.

The JSON also holds the three GPU targets (update ≤ 2.5× Adam and ≥ 70% of
peak bandwidth at 100M params; μLO_M-config meta-training ≥ 1500 particle-steps/s
on an H100, scaled by peak bandwidth on other devices), each PASS, MISS or
unmeasured, and the first two for the mulo-m form's update. Nothing on this
path imports tensorflow-datasets or wandb (the stages block both imports, as
on the device machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from training import records
from training.report import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAGES = ("env", "fused_tests", "bench_update", "bench_meta", "shipped_lo", "shipped_adaptive")
# Seconds per stage on a GPU: 450 in all, leaving the 8-minute run 30 s of slack.
# (Set before any GPU run: shipped_adaptive, 2 sizes x 3 optimizers with no
# meta-training, took its seconds from env and the MLPLOpt stages.)
GPU_LIMITS = {"env": 30, "fused_tests": 110, "bench_update": 65, "bench_meta": 130,
              "shipped_lo": 70, "shipped_adaptive": 45}
DRY_LIMITS = {"env": 60, "fused_tests": 150, "bench_update": 120, "bench_meta": 300,
              "shipped_lo": 240, "shipped_adaptive": 120}
FUSED_TEST_FILES = ("test_fused_update.py", "test_fused_adaptive.py")
# Imports the device machine cannot satisfy: a stage that needs one fails here too.
BLOCKED_IMPORTS = ("tensorflow_datasets", "tensorflow", "wandb")
DRY_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
H100_PEAK = 3.35e12
TARGET_RATIO, TARGET_BW, TARGET_META_H100 = 2.5, 0.70, 1500.0


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What each stage runs, on a GPU or in a dry run."""
  update_sizes: tuple[str, ...]
  update_iters: int
  update_warmup: int
  meta_configs: tuple[str, ...]   # in priority order: a timeout keeps the earlier rows
  meta_width: int | None          # None: the config's own
  meta_batch: int | None
  pairs: int
  truncation: int
  outer_steps: int
  max_seconds: float | None       # cap on each timed loop
  data_examples: int              # synthetic CIFAR-10 training images
  tests: tuple[str, ...]          # pytest node ids under tests/ (none: FUSED_TEST_FILES)
  shipped_meta_backends: tuple[str, ...]


GPU = Sizes(update_sizes=("1m", "100m"), update_iters=10, update_warmup=2,
            meta_configs=("mulo-m", "small"), meta_width=None, meta_batch=None, pairs=8,
            truncation=50, outer_steps=20, max_seconds=5.0, data_examples=50_000,
            tests=(), shipped_meta_backends=("pallas", "xla"))
DRY = Sizes(update_sizes=("tiny",), update_iters=3, update_warmup=1,
            meta_configs=("mulo-m", "small"), meta_width=16, meta_batch=8, pairs=2,
            truncation=4, outer_steps=1, max_seconds=None, data_examples=2_000,
            tests=("test_fused_update.py::test_backend_selection",
                   "test_fused_update.py::test_kernels_lower_to_triton_for_gpu",
                   "test_fused_adaptive.py::test_backend_selection_record_and_fallback",
                   "test_fused_adaptive.py::test_kernels_lower_to_triton_for_gpu"),
            # The Pallas path of PES is exercised by bench_meta; one backend keeps it fast.
            shipped_meta_backends=("xla",))


# ============================================================== stage side (child)
class _Partial:
  """A stage's result, rewritten atomically at ``path`` whenever it grows, so a
  stage killed at its time limit still hands back what it finished."""

  def __init__(self, path: str):
    self.path, self.data = path, {}

  def save(self) -> None:
    from lopt import diskio  # the stages import lopt anyway; the orchestrator does not
    diskio.write_atomic(self.path, json.dumps(self.data, default=_jsonable))


def _jsonable(x):
  try:
    return float(x)
  except (TypeError, ValueError):
    return str(x)


_T0 = time.perf_counter()


def _progress(msg: str) -> None:
  """A line in the stage's log: its tail lands in the JSON, so a hang shows where."""
  print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", flush=True)


def stage_env(out: _Partial, sizes: Sizes, args) -> None:
  import platform
  import jax
  import jaxlib
  from bench_update import table_peak_bandwidth
  import lopt
  device = jax.devices()[0]
  peak = table_peak_bandwidth(device.device_kind)
  out.data.update(
      device_kind=device.device_kind, backend=jax.default_backend(),
      device_count=jax.device_count(), jax=jax.__version__, jaxlib=jaxlib.__version__,
      python=platform.python_version(), peak_bytes_per_s=peak,
      peak_source="table" if peak else "unknown device: no fraction of peak",
      interpret_mode=lopt.kernels.interpret_mode())
  out.save()


def stage_fused_tests(out: _Partial, sizes: Sizes, args) -> None:
  import pytest
  tests = os.path.join(ROOT, "tests")
  targets = [os.path.join(tests, t) for t in sizes.tests or FUSED_TEST_FILES]
  out.data.update(passed=0, failed=0, skipped=0, errors=0, failures=[],
                  selected="all" if not sizes.tests else list(sizes.tests))
  out.save()

  class Counter:
    def pytest_runtest_logreport(self, report):
      if report.when == "call" or report.outcome != "passed":
        key = {"passed": "passed", "skipped": "skipped"}.get(report.outcome)
        if key is None:
          key = "failed" if report.when == "call" else "errors"
          out.data["failures"].append(f"{report.nodeid} ({report.when})")
        out.data[key] += 1
      if "backend" not in out.data:  # conftest has chosen the platform by now
        import jax
        import lopt
        out.data.update(backend=jax.default_backend(),
                        interpret_mode=lopt.kernels.interpret_mode())
      out.save()

  _progress(f"pytest {' '.join(targets)}")
  t0 = time.perf_counter()
  code = pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", *targets],
                     plugins=[Counter()])
  out.data.update(exit_code=int(code), duration_s=time.perf_counter() - t0)
  out.save()


def _update_rows(out: _Partial, key: str, sizes: Sizes, config: dict | None,
                 pretrained: str | None = None) -> None:
  import jax
  from bench_update import bench_size, table_peak_bandwidth
  peak = table_peak_bandwidth(jax.devices()[0].device_kind)
  out.data.update(peak_bytes_per_s=peak, iters=sizes.update_iters, warmup=sizes.update_warmup)
  out.data.setdefault(key, [])
  lo = pretrained or "MLPLOpt"
  for name in sizes.update_sizes:
    _progress(f"update {name}: optax.adam, {lo}[xla], {lo}[pallas]")
    out.data[key] += bench_size(name, ["xla", "pallas"], sizes.update_warmup,
                                sizes.update_iters, peak, config, pretrained)
    out.save()


def stage_bench_update(out: _Partial, sizes: Sizes, args) -> None:
  _update_rows(out, "rows", sizes, None)


def _meta_rows(out: _Partial, key: str, sizes: Sizes, config: dict | None,
               backends: tuple[str, ...], floors: dict[str, dict]) -> None:
  """Rows of PES particle-steps/s, in priority order: per config the Adam floor
  (unless ``floors`` has it already), then each backend."""
  from training.cli import bench_meta
  import lopt
  bench_meta.prepare_data_cache(sizes.data_examples)
  out.data.update(pairs=sizes.pairs, truncation=sizes.truncation)
  out.data.setdefault(key, [])
  kw = dict(pairs=sizes.pairs, truncation=sizes.truncation, outer_steps=sizes.outer_steps,
            max_seconds=sizes.max_seconds)
  for name in sizes.meta_configs:
    task = bench_meta.make_task(name, sizes.meta_width, sizes.meta_batch)
    data = task.data()
    common = dict(config=name, width=task.width, batch=task.batch_size)
    floor = floors.get(name)
    if floor is None:
      _progress(f"PES {name}: Adam floor")
      floor = dict(common, opt="optax.adam floor", backend=None,
                   **bench_meta.bench_adam_floor(task, data=data, **kw))
      floors[name] = floor
      out.data[key].append(floor)
      out.save()
    for backend in backends:
      lo = lopt.MLPLOpt.from_record({**(config or {}), "backend": backend})
      _progress(f"PES {name}: MLPLOpt[{backend}]")
      row = dict(common, opt=f"MLPLOpt[{backend}]", backend=backend,
                 **bench_meta.bench_lo(task, lo, data=data, **kw))
      row["adam_floor_steps_per_s"] = floor["steps_per_s"]
      row["vs_adam_floor"] = floor["steps_per_s"] / row["steps_per_s"]
      out.data[key].append(row)
      out.save()


def stage_bench_meta(out: _Partial, sizes: Sizes, args) -> None:
  _meta_rows(out, "rows", sizes, None, ("pallas", "xla"), {})


def stage_shipped_lo(out: _Partial, sizes: Sizes, args) -> None:
  import lopt
  config = dict(lopt.load_metadata(args.pretrained)["config"])
  reference = lopt.MLPLOpt().to_record()
  differs = {k: [reference.get(k), v] for k, v in config.items()
             if k != "backend" and reference.get(k) != v}
  out.data.update(name=args.pretrained, config=config, differs=differs,
                  equals_reference=not differs)
  out.save()
  if not differs:
    return
  floors = {}  # the Adam floors bench_meta measured in this run, where it got that far
  if args.reuse and os.path.exists(args.reuse):
    with open(args.reuse) as f:
      floors = {r["config"]: r for r in json.load(f).get("rows", []) if r.get("backend") is None}
  _update_rows(out, "update_rows", sizes, config)
  _meta_rows(out, "meta_rows", sizes, config, sizes.shipped_meta_backends, floors)


def stage_shipped_adaptive(out: _Partial, sizes: Sizes, args) -> None:
  import lopt
  meta = lopt.load_metadata(args.adaptive)
  out.data.update(name=args.adaptive, architecture=meta["architecture"], config=meta["config"],
                  kernel_rules=lopt.kernels.adaptive_supports(lopt.load_pretrained(
                      args.adaptive)[0].step))
  out.save()
  _update_rows(out, "update_rows", sizes, None, args.adaptive)


def run_stage(args) -> int:
  for name in BLOCKED_IMPORTS:
    sys.modules[name] = None  # `import name` now raises ImportError
  out = _Partial(args.result)
  _progress(f"stage {args.stage} ({'dry run' if args.dry_run else 'device'})")
  globals()[f"stage_{args.stage}"](out, DRY if args.dry_run else GPU, args)
  _progress(f"stage {args.stage} done")
  return 0


# ============================================================== orchestrator (parent)
def _tail(path: str, chars: int = 4000) -> str:
  try:
    with open(path, errors="replace") as f:
      return f.read()[-chars:]
  except OSError:
    return ""


def _spawn(stage: str, limit: float, env: dict, scratch: str, args) -> dict:
  """Run one stage in its own process group; kill the group at ``limit`` seconds."""
  result = os.path.join(scratch, f"{stage}.json")
  log = os.path.join(scratch, f"{stage}.log")
  cmd = [sys.executable, os.path.abspath(__file__), "--stage", stage, "--result", result,
         "--pretrained", args.pretrained, "--adaptive", args.adaptive,
         "--reuse", os.path.join(scratch, "bench_meta.json")]
  if args.dry_run:
    cmd.append("--dry-run")
  t0 = time.perf_counter()
  with open(log, "w") as f:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      code = proc.wait(timeout=limit)
      status = "ok" if code == 0 else "error"
    except subprocess.TimeoutExpired:
      code, status = None, "timeout"
      for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
        try:
          os.killpg(proc.pid, sig)
        except ProcessLookupError:
          break
        try:
          proc.wait(timeout=grace)
          break
        except subprocess.TimeoutExpired:
          continue
  seconds = time.perf_counter() - t0
  try:
    with open(result) as f:
      data = json.load(f)
  except (OSError, ValueError):  # the stage wrote no result (or an unreadable one)
    data = {}
  return {"status": status, "seconds": seconds, "limit_s": limit, "returncode": code,
          "result": data, "log_tail": _tail(log)}


def _find(rows, **match):
  return next((r for r in rows or [] if all(r.get(k) == v for k, v in match.items())), None)


def evaluate_targets(report: dict) -> list[dict]:
  """The issue's three GPU targets, for the reference and the shipped LO forms."""
  stages, dry = report["stages"], report["mode"] == "dry-run"
  peak = stages.get("env", {}).get("result", {}).get("peak_bytes_per_s")
  big = report["sizes"]["update_sizes"][-1]
  meta_floor = TARGET_META_H100 * peak / H100_PEAK if peak else None
  sources = [("reference", stages.get("bench_update", {}).get("result", {}).get("rows"),
              stages.get("bench_meta", {}).get("result", {}).get("rows"))]
  shipped = stages.get("shipped_lo", {}).get("result", {})
  if shipped.get("differs"):
    sources.append((f"shipped {shipped.get('name')}", shipped.get("update_rows"),
                    shipped.get("meta_rows")))
  if "shipped_adaptive" in stages:  # an update-only form: no meta-training target
    adaptive = stages["shipped_adaptive"].get("result", {})
    sources.append((f"shipped {adaptive.get('name', 'adaptive')}", adaptive.get("update_rows"),
                    False))
  targets = []
  for form, update_rows, meta_rows in sources:
    upd = _find(update_rows, size=big, backend="pallas")
    meta = _find(meta_rows, config="mulo-m", backend="pallas")
    checks = [
        (f"Pallas update at {big}: ≤ {TARGET_RATIO}× optax.adam", upd and upd["ratio"],
         TARGET_RATIO, "max", None),
        (f"Pallas update at {big}: ≥ {TARGET_BW:.0%} of peak HBM bandwidth (model bytes)",
         upd and upd.get("bw_model"), TARGET_BW, "min",
         None if upd is None or peak else "unknown device: no peak bandwidth"),
        ("mulo-m-config PES meta-training (Pallas): ≥ 1500 particle-steps/s on H100, "
         "scaled by peak bandwidth", meta and meta["steps_per_s"], meta_floor, "min",
         None if meta is None or peak else "unknown device: no bandwidth to scale by"),
    ]
    if meta_rows is False:
      checks = checks[:2]
    for what, value, bound, kind, why in checks:
      if dry:
        status = "n/a (dry run)"
      elif why:
        status = f"unmeasured ({why})"
      elif value is None:
        status = "unmeasured (stage did not finish)"
      else:
        ok = value <= bound if kind == "max" else value >= bound
        status = "PASS" if ok else "MISS"
      targets.append(dict(form=form, target=what, value=value, bound=bound, status=status))
  return targets


# ------------------------------------------------------------------ markdown
def _num(x, fmt: str = "{:.3g}") -> str:
  return "—" if x is None else fmt.format(x)


def _update_md(stage: str, rows, prefix: str = "") -> list[list[str]]:
  out = []
  for r in rows or []:
    bw = f"{_num(r['gbps'], '{:.1f}')} GB/s"
    if r.get("bw_compulsory") is not None:
      bw += f"; {r['bw_compulsory']:.0%} of peak (compulsory)"
    if r.get("bw_model") is not None:
      bw += f", {r['bw_model']:.0%} (model)"
    out.append([stage, f"{prefix}update {r['size']} ({r['n'] / 1e6:.2f}M) {r['opt']}",
                f"{1e3 * r['seconds']:.3f} ms", f"{r['ratio']:.2f}× adam", bw,
                f"{r['state']:.1f}", "—", "ok"])
  return out


def _meta_md(stage: str, rows, prefix: str = "") -> list[list[str]]:
  return [[stage, f"{prefix}PES {r['config']} (w{r['width']}, b{r['batch']}) {r['opt']}",
           f"{r['steps_per_s']:.1f} particle-steps/s",
           f"{r['vs_adam_floor']:.1f}× slower than floor" if r.get("vs_adam_floor") else "floor",
           f"{r['tflops']:.3g} TFLOP/s (inner matmuls)", "—", str(r["compiles"]),
           f"ok ({r['outer_steps']} timed outer step(s); the first, with its "
           f"compile, took {r['first_s']:.1f} s)"] for r in rows or []]


def to_markdown(report: dict) -> str:
  header = ["stage", "case", "measured", "vs Adam", "bandwidth / compute", "state B/param",
            "compiles", "status"]
  lines = []
  for stage in STAGES:
    s = report["stages"].get(stage)
    if s is None:
      lines.append([stage, "—", "—", "—", "—", "—", "—", "not run"])
      continue
    r, rows = s["result"], []
    note = s["status"] if s["status"] == "ok" else (
        f"{s['status'].upper()} after {s['seconds']:.0f} s (limit {s['limit_s']:.0f} s)")
    if stage == "env" and r:
      peak = r.get("peak_bytes_per_s")
      rows.append([stage, "device", f"{r['device_kind']} ({r['backend']}), jax {r['jax']}",
                   "—", f"peak {peak / 1e12:.2f} TB/s ({r['peak_source']})" if peak
                   else f"peak {r['peak_source']}", "—", "—",
                   f"{note}; commit {report.get('commit')}" + (
                       "; WARNING: no GPU, so nothing here is a device figure"
                       if report["mode"] == "device" and r["backend"] != "gpu" else "")])
    elif stage == "fused_tests" and r:
      counts = (f"{r.get('passed', 0)} passed, {r.get('failed', 0)} failed, "
                f"{r.get('errors', 0)} errors, {r.get('skipped', 0)} skipped")
      mode = ("interpret mode" if r.get("interpret_mode") else "compiled kernels") + \
          f" on {r.get('backend', '?')}"
      what = (", ".join(f"tests/{t}" for t in FUSED_TEST_FILES) if r.get("selected") == "all"
              else ", ".join(r.get("selected", [])))
      fails = f"; failed: {', '.join(r['failures'])}" if r.get("failures") else ""
      rows.append([stage, what, counts, "—", "—", "—", "—", f"{note}; {mode}{fails}"])
    elif stage == "bench_update":
      rows += _update_md(stage, r.get("rows"))
    elif stage == "bench_meta":
      rows += _meta_md(stage, r.get("rows"))
    elif stage == "shipped_lo" and r:
      diff = ", ".join(f"{k}={v[1]}" for k, v in sorted(r.get("differs", {}).items()))
      rows.append([stage, f"{r['name']} config", "equals the reference MLPLOpt() config: see "
                   "the reference rows" if r.get("equals_reference") else
                   f"differs from the reference: {diff}", "—", "—", "—", "—", note])
      # An LO equal to the reference is not benchmarked again: it has no rows of its own.
      rows += _update_md(stage, r.get("update_rows"), f"{r['name']} LO: ")
      rows += _meta_md(stage, r.get("meta_rows"), f"{r['name']} LO: ")
    elif stage == "shipped_adaptive" and r:
      rows.append([stage, f"{r['name']} ({r.get('architecture')}), its config and θ",
                   "the fused kernels run its step rules" if r.get("kernel_rules") else
                   "its step rules run in XLA on every backend", "—", "—", "—", "—", note])
      rows += _update_md(stage, r.get("update_rows"), f"{r['name']} LO: ")
    if not rows:
      rows.append([stage, "—", "—", "—", "—", "—", "—", note])
    elif s["status"] != "ok":
      rows.append([stage, "(rest of stage)", "—", "—", "—", "—", "—", note])
    lines += rows
  for t in report.get("targets", []):
    lines.append(["target", f"{t['form']}: {t['target']}", _num(t["value"]),
                  "—", f"bound {_num(t['bound'])}", "—", "—", t["status"]])
  md = [f"GPU check ({report['mode']}), {report['started']}, commit {report.get('commit')}, "
        f"{report.get('wall_s', 0):.0f} s wall-clock", ""] + markdown_table(header, lines)
  return "\n".join(md) + "\n"


def orchestrate(args) -> int:
  os.makedirs(args.outdir, exist_ok=True)
  sizes = DRY if args.dry_run else GPU
  limits = dict(DRY_LIMITS if args.dry_run else GPU_LIMITS)
  for item in filter(None, (args.limits or "").split(",")):
    name, _, value = item.partition("=")
    if name not in STAGES:
      raise SystemExit(f"--limits: unknown stage {name!r}; stages: {', '.join(STAGES)}")
    limits[name] = float(value)
  only = [s for s in (args.only or "").split(",") if s]
  unknown = [s for s in only if s not in STAGES]
  if unknown:
    raise SystemExit(f"--only: unknown stages {unknown}; stages: {', '.join(STAGES)}")
  budget = args.budget or sum(limits.values())
  scratch = tempfile.mkdtemp(prefix="gpu_check_")

  env = dict(os.environ, PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
             LOPT_CACHE_DIR=os.path.join(scratch, "data"))
  if args.dry_run:
    env["JAX_PLATFORMS"] = "cpu"
    # Unoptimized CPU code compiles about twice as fast; dry-run timings mean nothing anyway.
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"), DRY_XLA_FLAGS]))
  compile_cache = args.compile_cache or (
      os.path.join(tempfile.gettempdir(), "lopt-gpu-check-cache") if args.dry_run else None)
  if compile_cache:  # a rerun (the test suite's dry run, say) skips the CPU compiles
    env.update(JAX_COMPILATION_CACHE_DIR=compile_cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")

  started = time.time()
  report = {"schema": 1, "mode": "dry-run" if args.dry_run else "device",
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": os.environ.get("GPU_CHECK_COMMIT") or records.git_commit(mark_dirty=True),
            "budget_s": budget, "limits_s": limits,
            "sizes": dataclasses.asdict(sizes), "pretrained": args.pretrained,
            "adaptive": args.adaptive,
            "stages": {}, "targets": []}

  def write():
    report["wall_s"] = time.time() - started
    report["targets"] = evaluate_targets(report)
    with open(os.path.join(args.outdir, "gpu_check.json"), "w") as f:
      json.dump(report, f, indent=1, default=_jsonable)
    with open(os.path.join(args.outdir, "gpu_check.md"), "w") as f:
      f.write(to_markdown(report))

  for stage in STAGES:
    if only and stage not in only and stage != "env":
      continue
    left = budget - (time.time() - started)
    if left < 5:
      report["stages"][stage] = {"status": "skipped", "seconds": 0.0, "limit_s": 0.0,
                                 "returncode": None, "result": {},
                                 "log_tail": "no time left in the budget"}
      write()
      continue
    print(f"[gpu_check] {stage} (limit {min(limits[stage], left):.0f} s) ...", flush=True)
    res = _spawn(stage, min(limits[stage], left), env, scratch, args)
    report["stages"][stage] = res
    print(f"[gpu_check] {stage}: {res['status']} in {res['seconds']:.1f} s", flush=True)
    if res["status"] != "ok":
      print(res["log_tail"][-2000:], flush=True)
    if stage == "env" and not args.dry_run and res["result"].get("backend") == "gpu":
      env["JAX_PLATFORMS"] = "cuda"  # or tests/conftest.py would choose the CPU
    write()
  write()
  print()
  print(to_markdown(report), flush=True)
  print(f"[gpu_check] wrote {os.path.join(args.outdir, 'gpu_check.json')} and gpu_check.md")
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("outdir", nargs="?", help="folder for gpu_check.json and gpu_check.md")
  parser.add_argument("--dry-run", action="store_true",
                      help="tiny sizes on the CPU, Pallas in interpret mode (a smoke test)")
  parser.add_argument("--pretrained", default="mulo-r",
                      help="the shipped MLPLOpt LO whose config shipped_lo benchmarks "
                           "(default mulo-r, the robust form)")
  parser.add_argument("--adaptive", default="mulo-m",
                      help="the shipped adaptive LO shipped_adaptive benchmarks (default mulo-m)")
  parser.add_argument("--only", default=None,
                      help="comma list of stages to run (env always runs): " + ", ".join(STAGES))
  parser.add_argument("--limits", default=None,
                      help="per-stage time limits, e.g. bench_meta=200,shipped_lo=60")
  parser.add_argument("--budget", type=float, default=None,
                      help="seconds for all stages together (default: the sum of the limits)")
  parser.add_argument("--compile-cache", default=None,
                      help="persistent XLA compile cache dir (default: a temp dir in dry runs, "
                           "none on the device)")
  parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
  parser.add_argument("--result", help=argparse.SUPPRESS)
  parser.add_argument("--reuse", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.stage:
    return run_stage(args)
  if not args.outdir:
    parser.error("give the output folder: gpu_check.py [--dry-run] OUTDIR")
  return orchestrate(args)


if __name__ == "__main__":
  sys.exit(main())
