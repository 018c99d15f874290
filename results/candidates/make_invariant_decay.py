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
from lopt.adaptive import InvariantDecayCosine, ShapedCosine

lo, theta = lopt.load_pretrained("mulo-m")
form = dataclasses.replace(lo, step=tuple(
    InvariantDecayCosine() if type(r) is ShapedCosine else r for r in lo.step))
meta = lopt.load_metadata("mulo-m")
out = lopt.save_pretrained("results/candidates/mulo-m-invariant-decay", form, theta, {
    "description": "mulo-m with InvariantDecayCosine in place of ShapedCosine: the decoupled "
                   "decay of scale-invariant tensors anneals by the schedule's factor squared; "
                   "θ unchanged. A release candidate "
                   "(results/candidates/make_invariant_decay.py).",
    **{k: meta[k] for k in ("parameterization", "training", "meta_validation") if k in meta}})
print(out)
