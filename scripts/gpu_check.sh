#!/usr/bin/env bash
# The prepared GPU check (issue 12): fused-kernel tests, update and meta-training
# benchmarks, as one JSON and one markdown table in OUTDIR. Logic: gpu_check.py.
#
#   bash scripts/gpu_check.sh OUTDIR             # on an H100/H200: <= 8 minutes
#   bash scripts/gpu_check.sh --dry-run OUTDIR   # CPU smoke test (tiny sizes, interpret mode)
#
# Uses .venv's python where there is one (this repo's dev setup), else python3
# (the device machine's, which has jax, optax, flax and pytest but not lopt
# installed: the repo root goes on PYTHONPATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
else
  PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
