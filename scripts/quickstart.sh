#!/usr/bin/env bash
# Set up .venv, meta-train a learned optimizer on the embedded digits data (CPU,
# a few minutes), then evaluate it against tuned baselines on the smoke suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
WORKDIR="${1:-runs/quickstart}"
python scripts/meta_train.py --preset tiny --workdir "$WORKDIR/meta_train"
python scripts/evaluate.py --suite smoke --workdir "$WORKDIR/eval" \
  --optimizers "adam,muadam,$WORKDIR/meta_train"
echo "Report: $WORKDIR/eval/report.md"
