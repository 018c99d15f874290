"""One-off probe: does restraint once the gradients have shrunk help mulo-m on
the screen? Every update of tensor i is multiplied by
clip((rms g_i / rms g_i at update 1) ** alpha, 1/10, 1): alpha = 0 is mulo-m;
alpha > 0 slows a tensor whose gradient has fallen (a memorized training set:
Adam's scale-free direction otherwise keeps moving at full step). Screen tasks
only, never the held-out ones; 2 seeds.
Run from results/probes: ../../.venv/bin/python grad_restraint.py [NAME [ALPHAS]]
(2-core CPU); outputs: grad_restraint.txt (alpha 0-0.5), grad_restraint_large.txt
(mulo-m 0.5,0.75,1)."""
import sys
import jax.numpy as jnp, numpy as np, lopt
from meta_tasks import suites
from training.evaluation import lo_optax
from training.sweep import Sweep
from probe_tx import restrained  # results/probes/probe_tx.py

NAME = sys.argv[1] if len(sys.argv) > 1 else "mulo-m"
lo, theta = lopt.load_pretrained(NAME)
alphas = jnp.array([float(a) for a in sys.argv[2].split(",")] if len(sys.argv) > 2
                   else [0.0, 0.1, 0.2, 0.35, 0.5])


print(f"{NAME} x clip((|g|/|g0|)^alpha, 0.1, 1) on screen-user-cpu, 2 seeds; "
      f"alpha {[float(a) for a in alphas]}: test loss / train loss", flush=True)
for entry in suites.get_suite("screen-user-cpu"):
  task, steps = entry.task, entry.num_steps
  sweep = Sweep(lambda a: restrained(lo_optax(lo, theta, task, steps), a), task, steps, grid=True)
  r = sweep(alphas, [0, 1])
  test, train = np.mean(r.test_loss, axis=-1), np.mean(r.final_train_loss, axis=-1)
  print(f"{task.name}@{steps}: " + "  ".join(
      f"a{float(a):g} {l:.4f}/{t:.2g}" for a, l, t in zip(alphas, test, train)), flush=True)
