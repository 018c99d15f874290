"""One-off probe: is mulo-a's adaptive head saturated? Each multiplier is
``bound ** tanh(out)``, so ``|tanh(out)| = |log m| / log(bound)``; at
|tanh| = 0.9 / 0.99 the head's output passes on 19% / 2% of a perturbation
(1 - tanh²), so ES sees almost no meta-gradient through a saturated head.
For every screen and held-out user task (full horizon, seed 0, no loss=, as
linen's TrainState calls it) it reports the share of (tensor, step) pairs whose
step / weight-decay multiplier has |tanh| above 0.9 and 0.99, and the mean
1 - tanh². Run from the repository root:
.venv/bin/python results/probes/head_saturation.py [LO]   (default mulo-a)
output: results/probes/head_saturation.txt (2-core CPU, about 5 minutes)."""
import sys
import numpy as np
import lopt
import meta_tasks
from training.adaptation import multiplier_curves

source = sys.argv[1] if len(sys.argv) > 1 else "mulo-a"
lo, theta = lopt.load_pretrained(source)
bound = next(r.bound for r in lo.step if type(r).__name__ == "TensorAdaptive")
print(f"{source}: share of (tensor, step) with |tanh(out)| > 0.9 / > 0.99, mean 1 - tanh²,"
      f" median multiplier; bound {bound}")
print("task | steps | step: >0.9 >0.99 1-tanh² median | wd: >0.9 >0.99 1-tanh² median")
for suite in ("screen-user-cpu", "heldout-user-cpu"):
  for e in meta_tasks.get_suite(suite):
    mults, _ = multiplier_curves(lo, theta, e.task, e.num_steps)
    th = np.abs(np.log(mults) / np.log(bound))  # [steps, tensors, 2]
    cols = [f"{(th[..., i] > 0.9).mean():.2f} {(th[..., i] > 0.99).mean():.2f} "
            f"{(1 - th[..., i] ** 2).mean():.3f} {np.median(mults[..., i]):.2f}" for i in (0, 1)]
    print(f"{e.task.name} | {e.num_steps} | {cols[0]} | {cols[1]}", flush=True)
