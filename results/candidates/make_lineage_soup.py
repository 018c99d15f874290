"""Release candidate of 2026-12-06: the uniform average of θ over every θ̄ of
mulo-m's lineage that was screened against mulo-m on fresh seeds.

Since a27's θ̄@2000 (the shipped mulo-m) the CPU runs have moved θ by ES
steps whose noise swamps the signal (docs/meta-training-runs.md: a29's and
a31's logged meta-gradients, signal² ≈ 0 against noise² ≈ 8), and each
θ̄ screened against mulo-m on fresh seeds read within ±3% of it, with the
per-task ratios flipping from one seed set to the next. If these θ are the
same point plus independent walk noise, their average keeps the point and
cuts the noise (a model soup; the runs share one form and start, so θ is
comparable entry by entry). Members, each fixed before this candidate was
screened: mulo-m (a27@2000), a27@3000 (screened on 400-407 and 700-707),
a28@2640 and a31@2000 (700-707), a31@3000 (900-907).

Writes results/candidates/mulo-lineage-soup. Run from the repo root:
.venv/bin/python results/candidates/make_lineage_soup.py"""
import os

import jax
import numpy as np

import lopt
from variant import save_variant
from training.export import export_source

A28 = "results/meta-runs/mulo-a28-cpu@2640"
MEMBERS = {
    "mulo-m": "mulo-m",
    "a27@3000": "results/candidates/mulo-a27-3000",
    # committed as a checkpoint only: exported (θ̄) on first use.
    "a28@2640": "results/meta-runs/mulo-a28-cpu/export@2640",
    "a31@2000": "results/candidates/mulo-a31-2000",
    "a31@3000": "results/candidates/mulo-a31-3000",
}
OUT = "results/candidates/mulo-lineage-soup"

if not os.path.isdir(MEMBERS["a28@2640"]):
  export_source(A28)
loaded = {name: lopt.load_pretrained(path) for name, path in MEMBERS.items()}
form = loaded["mulo-m"][0]
for name, (lo, _) in loaded.items():
  if lo != form:
    raise ValueError(f"{name}'s form differs from mulo-m's: a soup needs one form.")
thetas = [theta for _, theta in loaded.values()]
soup = jax.tree_util.tree_map(lambda *xs: np.mean(np.stack(xs), axis=0).astype(xs[0].dtype),
                              *thetas)
out = save_variant(OUT, form, soup,
                   "The uniform average of θ over mulo-m's lineage: " + ", ".join(MEMBERS)
                   + ". A release candidate (results/candidates/make_lineage_soup.py).",
                   keys=("parameterization", "training"))
spread = {name: float(np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(
    jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(soup)))))
          for name, (_, theta) in loaded.items()}
print("‖θ − soup‖ per member:", {k: round(v, 4) for k, v in spread.items()})
