"""The release candidate of 2026-12-04: mulo-m as shipped before it (its meta-trained θ,
unchanged) plus the hand rule GradientRestraint(alpha=(0, 0.5), beta=(0, 0.5)):
the hidden group's step and decay × clip((rms g / rms g₁)^0.5, 0.1, 1), the
input group untouched. Chosen on the screen only
(results/probes/restraint_groups_screen8.txt: geometric mean 0.95x mulo-m;
restraining the input group too cost the wine tables). Writes
results/candidates/mulo-m-hidden-restraint. Run from the repo root:
.venv/bin/python results/candidates/make_hidden_restraint.py"""
import dataclasses
import lopt
from variant import save_variant
from lopt.adaptive import GradientRestraint
from training.trainer import with_added_rules

SOURCE = "results/meta-runs/mulo-a4-cpu/export_5000"  # the meta-trained LO, without the rule
lo, theta = lopt.load_pretrained(SOURCE)
rule = GradientRestraint(alpha=(0.0, 0.5), beta=(0.0, 0.5))
form = dataclasses.replace(lo, step=lo.step + (rule,))
theta = with_added_rules(lo, theta, form, seed=0)  # the rule's zero θ added, as a warm start does
out = save_variant("results/candidates/mulo-m-hidden-restraint", form, theta,
                   "mulo-m's meta-trained θ plus the hand rule GradientRestraint(alpha=(0, 0.5), "
                   "beta=(0, 0.5)) (its own θ zero): a release candidate chosen on the screen "
                   "suite (results/probes/restraint_groups_screen8.txt).", source=SOURCE)
