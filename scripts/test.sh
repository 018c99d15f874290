#!/usr/bin/env bash
# Set up .venv and run the whole test suite (CPU, a few minutes on 2 cores).
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# JAX compiles are single-threaded, so two workers use both cores.
exec python -m pytest -n 2 --dist loadfile -q "$@"
