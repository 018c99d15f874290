"""mulo-m with its input-group base step lowered (θ unchanged): on the wide
plain MLP its input-matrix steps are 5-15x AdamW's (layer_steps.txt). Broad
screen (screen-broad-cpu), 4 seeds, untuned; test loss per task and the
geometric mean of the test-loss ratio to mulo-m.

    cd results/probes && ../../.venv/bin/python input_base.py > input_base.txt
"""
import dataclasses
import math

import lopt
from lopt.step_rules import GroupBase
from meta_tasks import suites
from training import evaluation

lo, theta = lopt.load_pretrained("mulo-m")
entries = suites.get_suite("screen-broad-cpu")
ev = evaluation.Evaluator(range(4), log=lambda line: None)
print("| input base | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries)
      + " | geo vs mulo-m |")
print("|---" * (len(entries) + 2) + "|")
ref = None
for base in (1e-3, 3e-4, 1e-4):   # 1e-3: mulo-m as shipped
  form = dataclasses.replace(lo, step=tuple(
      dataclasses.replace(r, input=base) if isinstance(r, GroupBase) else r for r in lo.step))
  opt = evaluation.Optimizer(f"input {base:g}", checkpoint="mulo-m", lo=form, theta=theta)
  losses = [ev.run(opt, e)["test_loss"] for e in entries]
  ref = ref or losses
  geo = math.exp(sum(math.log(x / r) for x, r in zip(losses, ref)) / len(ref))
  print(f"| {base:g} | " + " | ".join(f"{x:.3g}" for x in losses) + f" | {geo:.3f} |", flush=True)
