"""Release candidate of 2026-12-05: the shipped mulo-m (its meta-trained θ and
hand rules, unchanged) with μP's 1/fan_in applied to the data dimension:
``AdaptiveLOpt(input_fan_in=19.2)``, so dense input matrices step ×19.2/fan_in
(×0.3 at 64 inputs) and embeddings as before. Chosen on the broad screen
(results/probes/input_fan_in.txt), checked held out
(results/heldout-adaptive-cpu/fan-in-19) and confirmed by a pre-registered
check on six unseen tasks (results/probes/input_fan_in_confirm.txt). Writes
results/candidates/mulo-m-fan-in. Run from the repo root:
.venv/bin/python results/candidates/make_fan_in.py"""
import dataclasses

import lopt
from variant import save_variant

lo, theta = lopt.load_pretrained("mulo-m")
form = dataclasses.replace(lo, input_fan_in=19.2)
out = save_variant("results/candidates/mulo-m-fan-in", form, theta,
                   "mulo-m with input_fan_in=19.2 (dense input matrices' step x 19.2/fan_in; "
                   "embeddings unchanged); θ unchanged. A release candidate: "
                   "results/probes/input_fan_in*.txt.")
