#!/usr/bin/env bash
# The long CPU meta-training runs of the adaptive LO (issue 19), resumable from
# the checkpoints committed under results/meta-runs/PRESET: re-running this
# script from any clone continues the run exactly (SIGTERM checkpoints and
# exits 75). Usage: scripts/long_run.sh [PRESET] [meta_train flags]; PRESET is
# mulo-a-cpu (default), mulo-a2-cpu ... mulo-a32-cpu.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
preset=mulo-a-cpu
if [[ $# -gt 0 && $1 != -* ]]; then preset=$1; shift; fi
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PWD/.xla-cache-meta}"
export WANDB_MODE="${WANDB_MODE:-offline}"
exec .venv/bin/python scripts/meta_train.py --preset "$preset" \
    --workdir "results/meta-runs/$preset" "$@"
