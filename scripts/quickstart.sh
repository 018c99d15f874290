#!/usr/bin/env bash
# Set up .venv, then two things a newcomer wants to see (CPU, about 10 minutes):
# 1. the shipped `mulo-m` learned optimizer against LR-tuned AdamW on plain flax
#    models it never saw in meta-training (held-out user tasks: a tabular MLP on
#    the breast-cancer data and a teacher-student MLP with fresh data every step);
# 2. meta-training a learned optimizer of your own on the embedded digits data,
#    evaluated against tuned Adam and μAdam on the smoke suite.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
WORKDIR="${1:-runs/quickstart}"
python scripts/evaluate.py --suite heldout-user-cpu --tasks 'breast_cancer|teacher' \
  --workdir "$WORKDIR/eval-pretrained" --optimizers "adamw,mulo-m=checkpoints/mulo-m"
python scripts/meta_train.py --preset tiny --workdir "$WORKDIR/meta_train"
python scripts/evaluate.py --suite smoke --workdir "$WORKDIR/eval" \
  --optimizers "adam,muadam,$WORKDIR/meta_train"
echo "Reports: $WORKDIR/eval-pretrained/report.md (shipped mulo-m vs tuned AdamW)"
echo "         $WORKDIR/eval/report.md (your tiny LO vs tuned Adam and μAdam)"
