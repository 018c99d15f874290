"""Which learned part of mulo-m's θ loses to θ₀ on the broad screen's batch-8
digits MLP and memorizes the diabetes table? Each variant zeroes one part of θ
(zero = that part does nothing: multiplier 1, no residual, the hand restraint,
the base scales, the plain cosine); θ₀ zeroes all. Untuned, 8 seeds, screen
tasks only (screen-broad-cpu).

    cd results/probes && ../../.venv/bin/python part_ablation.py > part_ablation.txt
    ../../.venv/bin/python part_ablation.py user-mlp_digits_w512_d2_b32 > part_ablation_w512.txt

Task names as arguments replace the default four (screen-broad-cpu tasks only).
"""
import sys

import jax
import numpy as np

import lopt
from meta_tasks import suites
from training import evaluation

TASKS = tuple(sys.argv[1:]) or ("user-mlp_digits_w128_d3_b8", "user-mlp_diabetes_w64_d3_b32",
                               "user-mlp_wine_w128_d3_b16", "user-mlp_digits_w64_d3_b64")
lo, theta = lopt.load_pretrained("mulo-m")
zero = lambda part: {**theta, part: jax.tree.map(np.zeros_like, theta[part])}
variants = {"mulo-m": theta, **{f"no {p}": zero(p) for p in theta},
            "theta0": jax.tree.map(np.zeros_like, theta)}
entries = [e for e in suites.get_suite("screen-broad-cpu") if e.task.name in TASKS]
ev = evaluation.Evaluator(range(8), log=lambda line: None)
print("test loss (mean of 8 seeds) / final train loss / max spike; untuned")
print("| variant | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries) + " |")
print("|---" * (len(entries) + 1) + "|")
for name, th in variants.items():
  opt = evaluation.Optimizer(name, checkpoint=name, lo=lo, theta=th)
  rs = [ev.run(opt, e) for e in entries]
  print(f"| {name} | " + " | ".join(
      f"{r['test_loss']:.3g} / {r['final_train_loss']:.3g} / {r['max_loss_spike']:.2g}"
      for r in rs) + " |", flush=True)
