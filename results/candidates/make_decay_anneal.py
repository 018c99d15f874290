"""Release candidate of 2026-12-06: the shipped mulo-m (θ and every other rule
unchanged) with its decoupled decay annealed by the schedule's factor squared,
ShapedCosine(decay_exponent=2). Found on a BatchNorm CNN that no suite has
(results/probes/bn_cnn.py: test loss 0.471 -> 0.206, tuned AdamW 0.206);
decision rule in docs/meta-training-runs.md (seventeenth session). Writes
results/candidates/mulo-m-decay-anneal. Run from the repo root:
.venv/bin/python results/candidates/make_decay_anneal.py"""
import dataclasses

import lopt
from variant import save_variant
from lopt.adaptive import ShapedCosine

lo, theta = lopt.load_pretrained("mulo-m")
form = dataclasses.replace(lo, step=tuple(
    ShapedCosine(decay_exponent=2.0) if isinstance(r, ShapedCosine) else r for r in lo.step))
out = save_variant("results/candidates/mulo-m-decay-anneal", form, theta,
                   "mulo-m with its decoupled weight decay annealed by the schedule's factor "
                   "squared (ShapedCosine(decay_exponent=2)); θ unchanged. A release candidate "
                   "(results/candidates/make_decay_anneal.py).")
