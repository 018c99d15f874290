"""Release candidates of 2026-12-06: the shipped mulo-m (θ and every other
rule unchanged) with its schedule rule ShapedCosine replaced by a rule for
scale-invariant tensors (a kernel in front of BatchNorm), found on BatchNorm
models that no suite has (results/probes/bn_cnn.py, bn_drift.py); decision
rules in docs/meta-training-runs.md (seventeenth and eighteenth sessions).

- ``invariant-decay`` (default): InvariantDecayCosine, the decoupled decay of
  such tensors anneals by the schedule's factor squared; writes
  results/candidates/mulo-m-invariant-decay.
- ``norm-keeping``: NormKeepingCosine, their step anneals by sqrt(s) and
  their decay by sqrt(s), so the norm stays put while the direction moves as
  under ShapedCosine; writes results/candidates/mulo-m-norm-keeping.

Run from the repo root:
.venv/bin/python results/candidates/make_invariant_decay.py [invariant-decay|norm-keeping]"""
import dataclasses
import sys

import lopt
from variant import save_variant
from lopt.adaptive import InvariantDecayCosine, NormKeepingCosine, ShapedCosine

WHICH = {
    "invariant-decay": (InvariantDecayCosine, "the decoupled decay of scale-invariant tensors "
                        "anneals by the schedule's factor squared"),
    "norm-keeping": (NormKeepingCosine, "scale-invariant tensors anneal their step and their "
                     "decay by the square root of the schedule's factor each, so their norm "
                     "stays put while their direction moves as before"),
}
name = sys.argv[1] if len(sys.argv) > 1 else "invariant-decay"
rule, what = WHICH[name]
lo, theta = lopt.load_pretrained("mulo-m")
form = dataclasses.replace(lo, step=tuple(rule() if type(r) is ShapedCosine else r
                                          for r in lo.step))
out = save_variant(f"results/candidates/mulo-m-{name}", form, theta,
                   f"mulo-m with {rule.__name__} in place of ShapedCosine: {what}; θ unchanged. "
                   f"A release candidate (results/candidates/make_invariant_decay.py {name}).")
