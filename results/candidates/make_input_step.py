"""Release candidate of 2026-12-05: the shipped mulo-m (its meta-trained θ and
hand rules, unchanged) with its input-like matrices' base step ×0.3, the
vectors' unchanged: GroupBase(input=3e-4, hidden=0.25, vector=1e-3). Chosen on
the broad screen only (results/probes/input_matrix.txt: 0.943x mulo-m's test
loss over 14 tasks, 4 seeds; ×0.1 0.953x; the vectors ×0.1 1.076x). Writes
results/candidates/mulo-m-input-step. Run from the repo root:
.venv/bin/python results/candidates/make_input_step.py"""
import dataclasses

import lopt
from variant import save_variant
from lopt.step_rules import GroupBase

FACTOR = 0.3
lo, theta = lopt.load_pretrained("mulo-m")
base = next(r for r in lo.step if isinstance(r, GroupBase))
new = dataclasses.replace(base, input=base.input * FACTOR, vector=base.input)
form = dataclasses.replace(lo, step=tuple(new if r is base else r for r in lo.step))
out = save_variant("results/candidates/mulo-m-input-step", form, theta,
                   f"mulo-m with its input-like matrices' base step x{FACTOR:g} ({new}); θ "
                   "unchanged. A release candidate chosen on the broad screen suite "
                   "(results/probes/input_matrix.txt).")
