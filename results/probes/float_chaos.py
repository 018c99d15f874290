"""How much of a screen score is noise? The same LO (mulo-m) on the screen's
digits MLP (1,000 steps, 4 seeds), run twice: θ a constant of the compiled
program (the evaluator before 2026-12-05) and θ an argument (after). The two
programs differ only in float rounding (XLA folds the constant θ).

    cd results/probes && ../../.venv/bin/python float_chaos.py > float_chaos.txt
"""
import numpy as np, lopt
from meta_tasks import suites
from training import sweep, evaluation
lo, theta = lopt.load_pretrained("mulo-m")
e = suites.get_suite("screen-user-cpu")[0]
opt = evaluation.Optimizer("m", checkpoint="m", lo=lo, theta=theta)
a = sweep.train_curves(opt.make_tx(e.task, e.num_steps), e.task, e.num_steps, [0, 1, 2, 3])
s = sweep.Sweep(lambda th: evaluation.lo_optax(lo, th, e.task, e.num_steps), e.task, e.num_steps)
b = s(theta, [0, 1, 2, 3])
rel = np.abs(a.train_loss - b.train_loss) / np.abs(a.train_loss)
print("max rel diff of the step losses at steps 1-5:", rel[:, :5].max())
for k in range(4):
  first = np.argmax(rel[k] > 1e-2) if np.any(rel[k] > 1e-2) else None
  print(f"seed {k}: first step with >1% difference: {first}; test loss const {a.test_loss[k]:.4f} arg {b.test_loss[k]:.4f}")
