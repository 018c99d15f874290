#!/usr/bin/env bash
# The long CPU meta-training run of the adaptive LO (issue 19), resumable from
# the checkpoints committed under results/meta-runs/mulo-a-cpu: re-running this
# script from any clone continues it exactly (SIGTERM checkpoints and exits 75).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PWD/.xla-cache-meta}"
export WANDB_MODE="${WANDB_MODE:-offline}"
exec .venv/bin/python scripts/meta_train.py --preset mulo-a-cpu \
    --workdir results/meta-runs/mulo-a-cpu "$@"
