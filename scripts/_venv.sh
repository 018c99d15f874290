# Sourced by quickstart.sh and test.sh: create .venv (once) and install lopt with its dev tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PYTHON" -m venv "$ROOT/.venv"
fi
# (Re)install whenever pyproject.toml changed since the last install: its
# dependencies and the console scripts (lopt-meta-train, ...) come from there.
STAMP="$ROOT/.venv/.lopt-pyproject"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$(cksum < "$ROOT/pyproject.toml")" ]; then
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[dev]"
  cksum < "$ROOT/pyproject.toml" > "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
# Tests and the quickstart never need a wandb account: log offline unless told otherwise.
export WANDB_MODE="${WANDB_MODE:-offline}"
export WANDB_SILENT=true
cd "$ROOT"
