"""Where does meta-training's drift come from? a16-a20, warm-started from the
shipped mulo-m, all moved θ toward larger steps and less restraint (a20's
θ̄@3440: the learned log-steps +0.05 input / +0.02 hidden, the hidden
GradientRestraint exponent -0.03, log weight decay -0.01), and held out the
moved θ lost (docs/meta-training-runs.md). Hypothesis: short-horizon bias.
The recipes' episode lengths have density ∝ length^-2 over 50-2000 steps, so
short episodes carry most of the meta-gradient, and the LO cannot tell a
100-step run from a 2000-step one (its schedule reads the fraction done).

Test: on the meta-training distribution's own tasks (tiny-mix-lm-b8, with
their validation split held back as in meta-training), the test loss of
a20's start (the shipped mulo-m) and of a20's θ̄ at horizons 100, 300, 1000
and 3000, 4 seeds, untuned. If the hypothesis holds, the moved θ wins at 100
and loses at 1000-3000 on the same tasks.

    cd results/probes && ../../.venv/bin/python horizon_drift.py [LABEL=SOURCE ...] > horizon_drift.txt
"""
import math
import sys

import lopt
import probe_suites
from meta_tasks.base import SuiteEntry
from meta_tasks.families import DISTRIBUTIONS
from training import evaluation

SOURCES = probe_suites.sources([("mulo-m", "mulo-m"),
                                ("a20@3440", "../meta-runs/mulo-a20-cpu/export@3440")])
HORIZONS = (100, 300, 1000, 3000)
tasks = DISTRIBUTIONS["tiny-mix-lm-b8"](None).tasks
ev = evaluation.Evaluator(range(4), log=lambda line: None)
losses = {}
for label, source in SOURCES:
  lo, theta = lopt.load_pretrained(source)
  opt = evaluation.Optimizer(label, checkpoint=source, lo=lo, theta=theta)
  for h in HORIZONS:
    for t in tasks:
      losses[label, h, t.name] = ev.run(opt, SuiteEntry(t, h, None))["test_loss"]
    print(f"{label} done @{h}", file=sys.stderr, flush=True)

ref = SOURCES[0][0]
print(f"test loss (mean of 4 seeds) on tiny-mix-lm-b8's tasks; ratio = LO / {ref}")
for label, _ in SOURCES[1:]:
  print(f"| task | " + " | ".join(f"@{h}" for h in HORIZONS) + " |")
  print("|---" * (len(HORIZONS) + 1) + "|")
  for t in tasks:
    cells = [f"{losses[label, h, t.name]:.4g} / {losses[ref, h, t.name]:.4g} "
             f"({losses[label, h, t.name] / losses[ref, h, t.name]:.3f})" for h in HORIZONS]
    print(f"| {t.name} | " + " | ".join(cells) + " |")
  geo = [math.exp(sum(math.log(losses[label, h, t.name] / losses[ref, h, t.name])
                      for t in tasks) / len(tasks)) for h in HORIZONS]
  print(f"{label}/{ref} geometric mean by horizon: " +
        ", ".join(f"@{h} {g:.3f}" for h, g in zip(HORIZONS, geo)))
