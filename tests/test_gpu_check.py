"""scripts/gpu_check.sh --dry-run (CPU, tiny sizes, Pallas interpreted) writes one
JSON and one markdown table with every stage's numbers; a stage past its time
limit is recorded as a timeout while the others still report; the GPU targets'
PASS/MISS logic, with the H200 bandwidth scaling."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "scripts",
                                                                      "gpu_check.py"))
gpu_check = sys.modules["gpu_check"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)  # importing it starts no jax

SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _strict_json(path):
  def refuse(name):
    raise ValueError(f"non-standard JSON constant {name}")
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def _positive(x):
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


# The dry run's stages also compile with XLA's CPU fusion emitters off (on top of
# gpu_check's DRY_XLA_FLAGS): the dry run takes ~15% less (measured, cold: 122 ->
# 104 s; bench_meta 55 -> 47 s, shipped_lo 40 -> 31 s). Its timings mean nothing
# on a CPU, and the only results it compares with references are those of the
# four fused-kernel tests, which select and lower kernels.
NO_FUSION_EMITTERS = "xla_cpu_use_fusion_emitters"


def _xla_flags() -> str:
  """This session's XLA_FLAGS, plus NO_FUSION_EMITTERS=false where this jaxlib
  knows the flag (XLA aborts on an unknown one; a compile option just raises)."""
  import jax
  flags = os.environ.get("XLA_FLAGS", "")
  try:
    jax.jit(lambda x: x).lower(0.0).compile(compiler_options={NO_FUSION_EMITTERS: False})
  except Exception:  # pylint: disable=broad-except
    return flags
  return " ".join(filter(None, [flags, f"--{NO_FUSION_EMITTERS}=false"]))


def _run(*args, timeout):
  env = dict(os.environ, PYTHON=sys.executable, XLA_FLAGS=_xla_flags())
  return subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("gpu_check")
  proc = _run("--dry-run", str(out), timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = _strict_json(out / "gpu_check.json")
  md = (out / "gpu_check.md").read_text()
  return report, md, proc.stdout


@pytest.mark.slow
def test_dry_run_reports_every_stage_with_numbers(dry_run):
  report, _, _ = dry_run
  assert report["mode"] == "dry-run"
  assert list(report["stages"]) == list(gpu_check.STAGES)
  for name, stage in report["stages"].items():
    assert stage["status"] == "ok", (name, stage["log_tail"])
    assert _positive(stage["seconds"]) and stage["seconds"] <= stage["limit_s"]

  env = report["stages"]["env"]["result"]
  assert env["backend"] == "cpu" and env["interpret_mode"] is True
  assert env["peak_bytes_per_s"] is None  # a CPU is no known device

  tests = report["stages"]["fused_tests"]["result"]
  assert tests["passed"] == len(gpu_check.DRY.tests) >= 2
  assert (tests["failed"], tests["errors"], tests["exit_code"]) == (0, 0, 0)
  assert tests["backend"] == "cpu" and tests["interpret_mode"] is True


def _check_update_rows(rows, lo="MLPLOpt"):
  assert [r["backend"] for r in rows] == [None, "xla", "pallas"]
  assert rows[0]["opt"] == "optax.adam" and rows[0]["ratio"] == 1.0
  assert rows[2]["opt"] == f"{lo}[pallas] (interpret)"
  for r in rows:
    assert r["size"] == "tiny" and r["n"] == 2 * (64 * 64 + 64)
    for key in ("seconds", "ratio", "gbps", "state", "compulsory"):
      assert _positive(r[key]), (r["opt"], key, r[key])
    assert r["bw_compulsory"] is None and r["bw_model"] is None  # no peak on a CPU
  assert rows[0]["state"] == pytest.approx(8.0, abs=1e-3)  # Adam: two f32 moments (+ count)
  if lo == "MLPLOpt":
    assert rows[1]["state"] == rows[2]["state"] > 16.0  # the μLO: 4 f32 + factored rows/cols
  else:  # AdaptiveLOpt: Adam's two moments and a few scalars per tensor
    assert rows[1]["state"] == rows[2]["state"] == pytest.approx(8.0, abs=0.1)
  assert _positive(rows[2]["model"])


def _check_meta_rows(rows, backends, with_floor=True):
  seen = {(r["config"], r["backend"]) for r in rows}
  want = {(c, b) for c in ("mulo-m", "small") for b in backends}
  assert want | ({(c, None) for c in ("mulo-m", "small")} if with_floor else set()) == seen
  for r in rows:
    assert (r["width"], r["batch"]) == (16, 8)
    for key in ("steps_per_s", "seconds_per_outer", "first_s", "tflops"):
      assert _positive(r[key]), (r["config"], r["opt"], key, r[key])
    assert isinstance(r["compiles"], int) and r["compiles"] >= 1
    assert r["outer_steps"] == 1
    if r["backend"] is not None:
      assert _positive(r["vs_adam_floor"])
      assert r["vs_adam_floor"] == pytest.approx(r["adam_floor_steps_per_s"] / r["steps_per_s"])


@pytest.mark.slow
def test_dry_run_benchmark_rows(dry_run):
  report, _, _ = dry_run
  _check_update_rows(report["stages"]["bench_update"]["result"]["rows"])
  meta = report["stages"]["bench_meta"]["result"]
  assert (meta["pairs"], meta["truncation"]) == (2, 4)
  _check_meta_rows(meta["rows"], ("pallas", "xla"))


@pytest.mark.slow
def test_dry_run_benchmarks_the_shipped_config(dry_run):
  import lopt
  report, _, _ = dry_run
  shipped = report["stages"]["shipped_lo"]["result"]
  config = lopt.load_metadata("mulo-r")["config"]
  assert shipped["name"] == "mulo-r" and shipped["config"] == config
  reference = {k: v for k, v in vars(lopt.MLPLOpt()).items() if k != "backend"}
  differs = {k for k, v in config.items() if k != "backend" and reference.get(k) != v}
  assert set(shipped["differs"]) == differs
  assert shipped["equals_reference"] == (not differs)
  if differs:
    _check_update_rows(shipped["update_rows"])
    # The Adam floors are bench_meta's (same run, same inner problems).
    _check_meta_rows(shipped["meta_rows"], gpu_check.DRY.shipped_meta_backends, with_floor=False)


@pytest.mark.slow
def test_dry_run_benchmarks_the_shipped_adaptive_lo(dry_run):
  import lopt
  report, _, _ = dry_run
  adaptive = report["stages"]["shipped_adaptive"]["result"]
  assert adaptive["name"] == report["adaptive"] == "mulo-m"
  assert adaptive["architecture"] == "AdaptiveLOpt" and adaptive["kernel_rules"] is True
  assert adaptive["config"] == lopt.load_metadata("mulo-m")["config"]
  _check_update_rows(adaptive["update_rows"], lo="AdaptiveLOpt")


@pytest.mark.slow
def test_dry_run_markdown_has_every_stage_and_target(dry_run):
  report, md, stdout = dry_run
  assert md in stdout  # the table is also printed, so a device run's log carries it
  lines = md.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith("| stage |"))
  rows = [line.split(" | ") for line in lines[header + 2:]]
  assert all(len(r) == 8 for r in rows)
  stages = [r[0].lstrip("| ") for r in rows]
  for stage in gpu_check.STAGES:
    assert stage in stages, stage
  upd = [r for r in rows if r[0] == "| bench_update"]
  assert len(upd) == 3 and all(r[2].endswith(" ms") and float(r[2][:-3]) > 0 for r in upd)
  meta = [r for r in rows if r[0] == "| bench_meta"]
  assert len(meta) == 6
  assert all(float(r[2].split()[0]) > 0 and r[2].endswith("particle-steps/s") for r in meta)
  assert "4 passed, 0 failed" in next(r[2] for r in rows if r[0] == "| fused_tests")
  assert len([r for r in rows if r[0] == "| shipped_adaptive"]) == 1 + 3
  targets = [r for r in rows if r[0] == "| target"]
  # 3 per MLPLOpt form (reference, shipped mulo-r if it differs), 2 for mulo-m's update
  assert len(targets) == len(report["targets"]) == 3 * (1 + bool(
      report["stages"]["shipped_lo"]["result"]["differs"])) + 2
  assert [t["form"] for t in report["targets"][-2:]] == ["shipped mulo-m"] * 2
  assert all(r[-1] == "n/a (dry run) |" for r in targets)
  assert _positive(report["targets"][0]["value"])  # the Pallas update's ratio to Adam


def test_a_stage_past_its_limit_is_a_timeout_and_the_rest_still_report(tmp_path):
  proc = _run("--dry-run", "--only", "bench_update", "--limits", "bench_update=0.5",
              str(tmp_path), timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  report = _strict_json(tmp_path / "gpu_check.json")
  assert list(report["stages"]) == ["env", "bench_update"]  # env always runs
  assert report["stages"]["env"]["status"] == "ok"
  assert _positive(report["stages"]["env"]["seconds"])
  timed_out = report["stages"]["bench_update"]
  assert timed_out["status"] == "timeout" and timed_out["returncode"] is None
  assert 0.5 <= timed_out["seconds"] < 60
  md = (tmp_path / "gpu_check.md").read_text()
  assert "| bench_update | — |" in md and "TIMEOUT after" in md
  assert "| fused_tests | — |" in md and "not run" in md


def _device_report(peak, update_ratio, bw_model, meta_sps):
  rows = [dict(size="100m", backend="pallas", ratio=update_ratio, bw_model=bw_model)]
  meta = [dict(config="mulo-m", backend="pallas", steps_per_s=meta_sps)]
  return {"mode": "device", "sizes": {"update_sizes": ["1m", "100m"]}, "stages": {
      "env": {"result": {"peak_bytes_per_s": peak}},
      "bench_update": {"result": {"rows": rows}},
      "bench_meta": {"result": {"rows": meta}},
      "shipped_lo": {"result": {"differs": {}}}}}


def test_targets_pass_miss_and_scale_by_bandwidth():
  h100 = gpu_check.evaluate_targets(_device_report(3.35e12, 2.4, 0.75, 1600.0))
  assert [t["status"] for t in h100] == ["PASS", "PASS", "PASS"]
  assert h100[2]["bound"] == pytest.approx(1500.0)
  # On an H200 the meta-training bar scales with bandwidth: 1500 x 4.8/3.35 = 2149.
  h200 = gpu_check.evaluate_targets(_device_report(4.8e12, 2.6, 0.69, 1600.0))
  assert [t["status"] for t in h200] == ["MISS", "MISS", "MISS"]
  assert h200[2]["bound"] == pytest.approx(1500.0 * 4.8 / 3.35)
  unknown = gpu_check.evaluate_targets(_device_report(None, 2.0, None, 1600.0))
  assert unknown[0]["status"] == "PASS"
  assert [t["status"].split()[0] for t in unknown[1:]] == ["unmeasured", "unmeasured"]
  missing = _device_report(3.35e12, 2.0, 0.8, 1600.0)
  missing["stages"]["bench_meta"]["result"] = {}
  assert gpu_check.evaluate_targets(missing)[2]["status"] == "unmeasured (stage did not finish)"
  # The shipped adaptive LO: its update's two targets (no meta-training one).
  adaptive = _device_report(4.8e12, 2.0, 0.8, 1600.0)
  adaptive["stages"]["shipped_adaptive"] = {"result": {"name": "mulo-m", "update_rows": [
      dict(size="100m", backend="pallas", ratio=2.7, bw_model=0.72)]}}
  extra = gpu_check.evaluate_targets(adaptive)[3:]
  assert [(t["form"], t["status"]) for t in extra] == [("shipped mulo-m", "MISS"),
                                                       ("shipped mulo-m", "PASS")]
  adaptive["stages"]["shipped_adaptive"] = {"result": {}}  # timed out before any row
  assert [t["status"] for t in gpu_check.evaluate_targets(adaptive)[3:]] == [
      "unmeasured (stage did not finish)"] * 2


def test_gpu_meta_chunk_prepares_and_runs_with_the_device_imports_blocked(tmp_path):
  """scripts/gpu_meta_chunk.py: `prepare` writes the bundle the device lacks;
  `run` meta-trains with scikit-learn, tfds and wandb blocked (the digits come
  from the bundle) and tars the run directory, checkpoints and metrics, without
  the wandb folder."""
  import tarfile
  spec = importlib.util.spec_from_file_location("gpu_meta_chunk", "scripts/gpu_meta_chunk.py")
  chunk = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(chunk)
  bundle = str(tmp_path / "bundle")
  chunk.prepare(bundle)
  assert sorted(os.listdir(os.path.join(bundle, "site"))) == sorted(chunk.VENDORED)
  status = chunk.run("tiny", 600, str(tmp_path / "out"), bundle=bundle,
                     extra=["--outer_steps", "2"], runs_dir=str(tmp_path / "runs"))
  assert status == 0, open(tmp_path / "out" / "tiny.log").read()[-2000:]
  with tarfile.open(tmp_path / "out" / "tiny.tar") as t:
    names = t.getnames()
    assert "tiny/config.json" in names and "tiny/export/metadata.json" in names
    assert not any(n.startswith(("tiny/wandb", "tiny/checkpoints")) for n in names)
    records = [json.loads(l) for l in t.extractfile("tiny/metrics.jsonl").read().splitlines()]
    assert json.load(t.extractfile("tiny/export/metadata.json"))["training"]["outer_steps"] == 2
  assert records[-1]["step"] == 2 and math.isfinite(records[-1]["meta_loss"])
