"""The release candidate of 2026-12-04: the shipped mulo-m (its meta-trained θ,
unchanged) plus the hand rule GradientRestraint(alpha=(0, 0.5), beta=(0, 0.5)):
the hidden group's step and decay × clip((rms g / rms g₁)^0.5, 0.1, 1), the
input group untouched. Chosen on the screen only
(results/probes/restraint_groups_screen8.txt: geometric mean 0.95x mulo-m;
restraining the input group too cost the wine tables). Writes
results/candidates/mulo-m-hidden-restraint. Run from the repo root:
.venv/bin/python results/candidates/make_hidden_restraint.py"""
import dataclasses
import jax.numpy as jnp
import lopt
from lopt.adaptive import GradientRestraint

lo, theta = lopt.load_pretrained("mulo-m")
rule = GradientRestraint(alpha=(0.0, 0.5), beta=(0.0, 0.5))
form = dataclasses.replace(lo, step=lo.step + (rule,))
theta = {**theta, rule.theta_key: rule.init(None)}
meta = lopt.load_metadata("mulo-m")
out = lopt.save_pretrained("results/candidates/mulo-m-hidden-restraint", form, theta, {
    "description": "mulo-m's meta-trained θ plus the hand rule GradientRestraint(alpha=(0, 0.5), "
                   "beta=(0, 0.5)) (its own θ zero): a release candidate chosen on the screen "
                   "suite (results/probes/restraint_groups_screen8.txt).",
    **{k: meta[k] for k in ("parameterization", "training", "meta_validation") if k in meta}})
print(out)
