"""One-off check: the shipped mulo-m with its TensorAdaptive bound lowered from
10 to B (θ unchanged: the head's log-multipliers shrink by log B / log 10). On
the held-out breast-cancer MLP the head's step multiplier sits near its ×10
bound, so the input matrices step ~100x tuned AdamW's LR. One compile per B
and task, seeds 0..SEEDS-1.
Run from results/probes: ../../.venv/bin/python adapt_bound.py SUITE [BS [SEEDS]]
(2-core CPU); output: adapt_bound_screen8.txt (screen 10,5,3,2 8)."""
import dataclasses
import numpy as np, lopt
from lopt.adaptive import TensorAdaptive
import probe_suites
from training.evaluation import lo_optax
from training.sweep import Sweep

SUITE, bounds, seeds = probe_suites.parse_args("10,3")
lo, theta = lopt.load_pretrained("mulo-m")
forms = [dataclasses.replace(lo, step=tuple(dataclasses.replace(r, bound=b)
                                            if isinstance(r, TensorAdaptive) else r
                                            for r in lo.step)) for b in bounds]
print(f"{SUITE}, mulo-m with TensorAdaptive's bound B in {bounds} (10: mulo-m), {len(seeds)} seeds: "
      "test loss / test accuracy / max spike / train loss (means over seeds)", flush=True)
for e in probe_suites.entries(SUITE):
  task, steps = e.task, e.num_steps
  cells = []
  for b, form in zip(bounds, forms):
    r = Sweep(lambda _: lo_optax(form, theta, task, steps), task, steps)(None, seeds)
    acc = np.nan if r.test_accuracy is None else np.nanmean(r.test_accuracy)
    cells.append(f"B{b:g} {np.mean(r.test_loss):.4f} / {acc:.4f} / {np.max(r.max_spike):.2f} / "
                 f"{np.mean(r.final_train_loss):.2g}")
  print(f"{task.name}@{steps}: " + " | ".join(cells), flush=True)
