"""The held-out check of input_fan_in.py: scripts/evaluate.py with the LOs run
under input_fan_in.py's optimizer spec (dense input matrices' step ×
(REF / fan_in); embeddings, vectors, hidden and readout as shipped). AdamW is
unaffected (it reads ``baseline_spec``). Every argument after REF goes to
evaluate.py. From the repo root:

    .venv/bin/python results/probes/input_fan_in_heldout.py 19.2 --optimizers \\
        fan-in-19=results/candidates/mulo-m-hidden-restraint,adamw \\
        --suite heldout-user-cpu,heldout-width-cpu \\
        --tasks 'user-|w512' --seeds 8 --baseline_cache runs/baseline-cache \\
        --no_step_mult_tuning --workdir runs/heldout-fan-in-19
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import input_fan_in  # noqa: E402
from training.cli import evaluate  # noqa: E402

input_fan_in.patch(float(sys.argv[1]), 1.0)
sys.exit(evaluate.main(sys.argv[2:]))
