"""mulo-m with its decoupled weight-decay coefficient raised (θ unchanged).
Why: with its step multiplier tuned on the broad screen's small tables,
mulo-m picks x5.6 and stops memorizing (diabetes: train loss 0.43, test
0.64 against 1.33 untuned); the multiplier scales the decay with the step.
Is the decay alone enough? Broad screen (screen-broad-cpu), 4 seeds,
untuned; test loss per task and the geometric mean of the ratio to mulo-m.

    cd results/probes && ../../.venv/bin/python decay_coef.py > decay_coef.txt
"""
import dataclasses
import math

import lopt
from lopt.step_rules import WeightDecay
from meta_tasks import suites
from training import evaluation

lo, theta = lopt.load_pretrained("mulo-m")
entries = suites.get_suite("screen-broad-cpu")
ev = evaluation.Evaluator(range(4), log=lambda line: None)
print("| decay coef | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries)
      + " | geo vs mulo-m |")
print("|---" * (len(entries) + 2) + "|")
ref = None
for coef in (0.1, 0.5):   # 0.1: mulo-m as shipped
  form = dataclasses.replace(lo, step=tuple(
      dataclasses.replace(r, coef=coef) if isinstance(r, WeightDecay) else r for r in lo.step))
  opt = evaluation.Optimizer(f"decay {coef:g}", checkpoint="mulo-m", lo=form, theta=theta)
  losses = [ev.run(opt, e)["test_loss"] for e in entries]
  ref = ref or losses
  geo = math.exp(sum(math.log(x / r) for x, r in zip(losses, ref)) / len(ref))
  print(f"| {coef:g} | " + " | ".join(f"{x:.3g}" for x in losses) + f" | {geo:.3f} |", flush=True)
