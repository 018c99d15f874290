"""One-off probe: test loss vs step multiplier of mulo-a and a5@4000, and AdamW vs LR,
on the meta-training tables synth-d/e and synth-b (default init), 3 seeds.
Run from the repository root: .venv/bin/python results/probes/step_mult_tables.py
(2-core CPU, about 6 minutes); output: results/probes/step_mult_tables.txt."""
import sys, numpy as np, optax, lopt
from meta_tasks.user_tasks import PlainMLPTask as Plain
from training.sweep import train_curves
from training.task_spec import optimizer_spec
grid = [0.1, 0.3, 1.0, 3.0, 10.0]
lrs = [1e-4, 3e-4, 1e-3, 3e-3]
los = {"mulo-a": lopt.load_pretrained("mulo-a"),
       "a5": lopt.load_pretrained("results/meta-runs/mulo-a5-cpu/export_best")}
for ds, w, d, b in (("synth-d", 64, 3, 16), ("synth-e", 64, 3, 32), ("synth-b", 64, 3, 16)):
  task = Plain(dataset=ds, width=w, depth=d, batch_size=b)
  spec = optimizer_spec(task)
  for n in (300, 1000):
    for name, (lo, th) in los.items():
      c = train_curves(lambda m: optax.chain(lo.as_optax(th, num_steps=n, mup=spec),
                                             optax.scale(m)), task, n, [0, 1, 2], lrs=grid)
      print(ds, n, name, " ".join(f"x{g}:{v:.4f}" for g, v in zip(grid, c.test_loss.mean(-1))),
            flush=True)
    c = train_curves(lambda lr: optax.adamw(lr), task, n, [0, 1, 2], lrs=lrs)
    print(ds, n, "adamw", " ".join(f"{g}:{v:.4f}" for g, v in zip(lrs, c.test_loss.mean(-1))),
          flush=True)
