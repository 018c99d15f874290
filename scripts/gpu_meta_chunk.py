#!/usr/bin/env python
"""A chunk of meta-training on a lent GPU, brought back as one tar file.

The device machine has jax, flax, optax and orbax, but no scikit-learn, no
tensorflow-datasets, no wandb, none of this repository's pure-Python
dependencies (simple_parsing, docstring_parser, tqdm), and another Python,
hence another pydocs corpus. ``prepare`` (here) writes what it lacks into
``runs/device-bundle``, which the device call carries; ``run`` (there)
continues a preset's run from its committed checkpoints for a fixed time, stops
it the way a user's Ctrl-C does (SIGTERM: a checkpoint, exit 75), exports the
newest checkpoint's θ̄ to the run's ``export``, and tars the run directory into
OUTDIR: metrics, config and export, without the wandb folder and, unless
``--keep_checkpoints``, without the checkpoints (at a GPU's pair counts the
persistent particles make them gigabytes: the next chunk or CPU run warm-starts
from the export, ``init_theta``, instead of resuming exactly).

    python scripts/gpu_meta_chunk.py prepare
    # device, after scripts/gpu_check.sh (carry: runs/device-bundle):
    python3 scripts/gpu_meta_chunk.py run PRESET SECONDS "$OUT"
    # here: tar -xf FILES_AT/PRESET.tar -C results/meta-runs, then commit its
    # metrics, config and export (the θ̄ the next run warm-starts from)

The test (tests/test_gpu_check.py) runs both on the CPU with the ``tiny`` preset.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUNDLE = os.path.join(ROOT, "runs", "device-bundle")
# Pure-Python packages the training CLI imports that the device lacks.
VENDORED = ("simple_parsing", "docstring_parser", "tqdm")
# What the device cannot import: the child fails here as it would there.
BLOCKED = ("sklearn", "tensorflow_datasets", "tensorflow", "wandb")
STOPPED = 75   # meta_train's exit status after SIGTERM and its checkpoint


def prepare(bundle: str = BUNDLE) -> None:
  """``bundle``/data.npz (make_data_bundle) and ``bundle``/site/<VENDORED>."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location(
      "make_data_bundle", os.path.join(ROOT, "scripts", "make_data_bundle.py"))
  make_data_bundle = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(make_data_bundle)
  os.makedirs(bundle, exist_ok=True)
  np.savez_compressed(os.path.join(bundle, "data.npz"), **make_data_bundle.bundle_arrays())
  site = os.path.join(bundle, "site")
  shutil.rmtree(site, ignore_errors=True)
  for name in VENDORED:
    src = os.path.dirname(importlib.util.find_spec(name).origin)
    shutil.copytree(src, os.path.join(site, name), ignore=shutil.ignore_patterns("__pycache__"))
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(bundle) for f in fs)
  print(f"wrote {bundle} ({size / 1e6:.1f} MB): carry it, e.g. run(command='python3 "
        f"scripts/gpu_meta_chunk.py run PRESET SECONDS \"$OUT\"', carry=['runs/device-bundle'])")


def _child_code(body: str) -> str:
  return f"import sys\nfor n in {BLOCKED!r}: sys.modules[n] = None\n{body}\n"


def _meta_train_code(argv: list[str]) -> str:
  return _child_code(f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path("
                     f"{os.path.join(ROOT, 'scripts', 'meta_train.py')!r}, run_name='__main__')")


def _export_code(workdir: str) -> str:
  return _child_code(f"from training import export\nprint('exported', export.export_workdir({workdir!r}))")


def run(preset: str, seconds: float, outdir: str, bundle: str = BUNDLE,
        extra: list[str] | None = None,
        runs_dir: str = os.path.join(ROOT, "results", "meta-runs"),
        keep_checkpoints: bool = False) -> int:
  """Continue ``preset`` (its run directory in ``runs_dir``) for ``seconds``,
  export its θ̄, then tar that directory into ``outdir``."""
  for need in ("data.npz", "site"):
    if not os.path.exists(os.path.join(bundle, need)):
      raise SystemExit(f"{bundle}/{need} is missing: run `python scripts/gpu_meta_chunk.py "
                       "prepare` here and carry runs/device-bundle.")
  workdir = os.path.join(runs_dir, preset)
  env = dict(os.environ, LOPT_DATA_BUNDLE=os.path.join(bundle, "data.npz"), WANDB_MODE="disabled",
             PYTHONUNBUFFERED="1",
             PYTHONPATH=os.pathsep.join([ROOT, os.path.join(bundle, "site")]
                                        + [p for p in [os.environ.get("PYTHONPATH")] if p]),
             JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR",
                                                      os.path.join(bundle, "xla-cache")))
  argv = ["meta_train.py", "--preset", preset, "--workdir", workdir, "--no_progress"] + (extra or [])
  os.makedirs(outdir, exist_ok=True)
  log = os.path.join(outdir, f"{preset}.log")
  t0 = time.time()
  with open(log, "w") as f:
    child = subprocess.Popen([sys.executable, "-c", _meta_train_code(argv)], env=env, stdout=f,
                             stderr=subprocess.STDOUT, cwd=ROOT)
    try:
      code = child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
      child.send_signal(signal.SIGTERM)   # checkpoint, then exit 75
      code = child.wait()
    print(f"meta_train exited {code} after {time.time() - t0:.0f} s", file=f, flush=True)
    exported = code in (0, STOPPED) and subprocess.run(
        [sys.executable, "-c", _export_code(workdir)], env=env, stdout=f,
        stderr=subprocess.STDOUT, cwd=ROOT).returncode == 0
  print(f"meta_train exited {code} after {time.time() - t0:.0f} s; θ̄ exported: {exported} "
        f"(log: {log})")
  if not os.path.isdir(workdir):
    return code or 1
  skip = {"wandb", ".lopt.lock"} | (set() if keep_checkpoints else {"checkpoints"})
  tar = os.path.join(outdir, f"{preset}.tar")
  with tarfile.open(tar, "w") as t:
    t.add(workdir, arcname=preset,
          filter=lambda i: None if i.name.split("/")[1:2] and i.name.split("/")[1] in skip else i)
  print(f"wrote {tar} ({os.path.getsize(tar) / 1e6:.1f} MB)")
  return 0 if code in (0, STOPPED) and exported else (code or 1)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True)
  sub.add_parser("prepare", help="write runs/device-bundle (here)")
  r = sub.add_parser("run", help="meta-train PRESET for SECONDS, tar it into OUTDIR (device)")
  r.add_argument("preset")
  r.add_argument("seconds", type=float)
  r.add_argument("outdir")
  r.add_argument("--keep_checkpoints", action="store_true",
                 help="also tar the checkpoints (exact resume; gigabytes at a GPU's pair counts)")
  r.add_argument("meta_train_flags", nargs=argparse.REMAINDER,
                 help="passed on to meta_train.py (e.g. --outer_steps N)")
  args = parser.parse_args()
  if args.command == "prepare":
    prepare()
    return 0
  return run(args.preset, args.seconds, args.outdir, extra=args.meta_train_flags,
             keep_checkpoints=args.keep_checkpoints)


if __name__ == "__main__":
  sys.exit(main())
