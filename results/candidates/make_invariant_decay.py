"""Release candidate of 2026-12-06: the shipped mulo-m (θ and every other rule
unchanged) with its schedule rule ShapedCosine replaced by InvariantDecayCosine:
on scale-invariant tensors (a kernel in front of BatchNorm) the decoupled decay
anneals by the schedule's factor squared, elsewhere as before. Found on a
BatchNorm CNN that no suite has (results/probes/bn_cnn.py); decision rule in
docs/meta-training-runs.md (seventeenth session). Writes
results/candidates/mulo-m-invariant-decay. Run from the repo root:
.venv/bin/python results/candidates/make_invariant_decay.py"""
import dataclasses

import lopt
from variant import save_variant
from lopt.adaptive import InvariantDecayCosine, ShapedCosine

lo, theta = lopt.load_pretrained("mulo-m")
form = dataclasses.replace(lo, step=tuple(
    InvariantDecayCosine() if type(r) is ShapedCosine else r for r in lo.step))
out = save_variant("results/candidates/mulo-m-invariant-decay", form, theta,
                   "mulo-m with InvariantDecayCosine in place of ShapedCosine: the decoupled "
                   "decay of scale-invariant tensors anneals by the schedule's factor squared; "
                   "θ unchanged. A release candidate "
                   "(results/candidates/make_invariant_decay.py).")
