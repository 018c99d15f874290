"""One-off probe: screen-suite score (geo-mean test-loss ratio to mulo-a, 3 seeds; the
meta-validation rule) of mulo-a with its learned log step scales shifted by log(m).
Run from the repository root: .venv/bin/python results/probes/step_mult_screen.py
(2-core CPU, about 5 minutes); output: results/probes/step_mult_screen.txt."""
import math, numpy as np, jax, lopt
from training import config as config_lib
from training.meta_validation import MetaValidator, task_ratio
lo, theta = lopt.load_pretrained("mulo-a")
config = config_lib.get_preset("mulo-a5-cpu")
v = MetaValidator(config, "results/meta-runs/mulo-a5-cpu")
ref = v.reference()
for m in (1.0, 2.0, 3.0, 0.5):
  th = jax.tree.map(lambda x: x, theta)
  th["scales"] = dict(th["scales"], log_lr=th["scales"]["log_lr"] + math.log(m))
  losses = v.test_losses(th)
  ratios = {k: task_ratio(losses[k], ref[k]) for k in v.names}
  score = float(np.exp(np.mean(np.log(list(ratios.values())))))
  print(f"x{m}: score {score:.3f}", {k[:22]: round(r, 3) for k, r in ratios.items()}, flush=True)
