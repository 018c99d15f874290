"""One-off held-out check of GradientRestraint (chosen on the screen:
grad_restraint*.txt): mulo-m against mulo-m's form + GradientRestraint(alpha=0.5)
with mulo-m's θ (the restraint's θ at -0.5 is alpha 0, exactly mulo-m), on the
held-out suites' tasks (heldout-user-cpu and the width-512 task), seeds 0-2,
the held-out protocol (training.sweep), both as one compiled grid. Tuned
AdamW's numbers are the shipped held-out report's (checkpoints/mulo-m/metadata.json).
Run from results/probes: ../../.venv/bin/python heldout_restraint.py
(2-core CPU); output: heldout_restraint.txt."""
import dataclasses
import jax, jax.numpy as jnp, numpy as np, lopt
from lopt.adaptive import GradientRestraint
from meta_tasks import suites
from training.evaluation import lo_optax
from training.sweep import Sweep

lo, theta = lopt.load_pretrained("mulo-m")
report = lopt.load_metadata("mulo-m")["evaluation"]["suites"]
adamw = {t: r for s in report.values() for t, r in s["tasks"].items()}
form = dataclasses.replace(lo, step=lo.step + (GradientRestraint(alpha=0.5),))
offsets = jnp.asarray([[-0.5, -0.5], [0.0, 0.0]], jnp.float32)   # alpha 0 (mulo-m), 0.5
thetas = {**jax.tree.map(lambda x: jnp.stack([x, x]), theta), "restraint": {"alpha": offsets}}
entries = suites.get_suite("heldout-user-cpu") + suites.get_suite("heldout-width-cpu")[:1]
print("held out, 3 seeds: test loss / test accuracy / max spike / train loss", flush=True)
for e in entries:
  task, steps = e.task, e.num_steps
  r = Sweep(lambda th: lo_optax(form, th, task, steps), task, steps, grid=True)(thetas, [0, 1, 2])
  a = adamw[f"{task.name}@{steps}"]
  row = lambda i: (f"{np.mean(r.test_loss[i]):.4f} / {np.mean(r.test_accuracy[i]):.4f} / "
                   f"{np.max(r.max_spike[i]):.2f} / {np.mean(r.final_train_loss[i]):.2g}")
  print(f"{task.name}@{steps}: mulo-m {row(0)} | +restraint {row(1)} | tuned AdamW "
        f"{a['adamw_test_loss']:.4f} / {a['adamw_test_accuracy']:.4f} | ratio to AdamW "
        f"{np.mean(r.test_loss[0]) / a['adamw_test_loss']:.3f} -> "
        f"{np.mean(r.test_loss[1]) / a['adamw_test_loss']:.3f}", flush=True)
