#!/bin/bash
# Every row of recurrent_models.py in its own process, retried once after a
# 10-minute timeout (see the hang noted there). Run from the repo root:
#   bash results/probes/recurrent_models.sh > results/probes/recurrent_models.txt
echo "recurrent models, 4 seeds: test loss / test accuracy / final train loss / max spike;" \
     "AdamW: optax.adamw, wd 1e-4, constant LR"
for task in lstm gru-sum gru-lm; do
  for v in "mulo-m" "recurrent 1/sqrt(T)" "recurrent 1/T" \
           "adamw 0.0001" "adamw 0.0003" "adamw 0.001" "adamw 0.003" "adamw 0.01" "adamw 0.03"; do
    for try in 1 2; do
      RUN="$task|$v" timeout 600 .venv/bin/python results/probes/recurrent_models.py 4 && break
      echo "  ($task | $v: try $try timed out or failed)"
    done
  done
done
