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
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks import suites
from training import task_spec
from training.evaluation import lo_optax
from training.sweep import Sweep

NAME = sys.argv[1] if len(sys.argv) > 1 else "mulo-m"
lo, theta = lopt.load_pretrained(NAME)
alphas = jnp.array([float(a) for a in sys.argv[2].split(",")] if len(sys.argv) > 2
                   else [0.0, 0.1, 0.2, 0.35, 0.5])


def restrained(inner, alpha):
  rms = lambda g: jnp.sqrt(jnp.mean(jnp.square(g.astype(jnp.float32))) + 1e-30)

  def init(params):
    return (inner.init(params), jax.tree.map(lambda p: jnp.zeros((), jnp.float32), params),
            jnp.zeros((), jnp.int32))

  def update(grads, state, params=None, **extra):
    s, g0, count = state
    g0 = jax.tree.map(lambda g, z: jnp.where(count == 0, rms(g), z), grads, g0)
    u, s = inner.update(grads, s, params, **extra)
    u = jax.tree.map(lambda x, g, z: x * jnp.clip((rms(g) / z) ** alpha, 0.1, 1.0), u, grads, g0)
    return u, (s, g0, count + 1)
  return optax.GradientTransformationExtraArgs(init, update)


print(f"{NAME} x clip((|g|/|g0|)^alpha, 0.1, 1) on screen-user-cpu, 2 seeds; "
      f"alpha {[float(a) for a in alphas]}: test loss / train loss", flush=True)
for entry in suites.get_suite("screen-user-cpu"):
  task, steps = entry.task, entry.num_steps
  sweep = Sweep(lambda a: restrained(lo_optax(lo, theta, task, steps), a), task, steps, grid=True)
  r = sweep(alphas, [0, 1])
  test, train = np.mean(r.test_loss, axis=-1), np.mean(r.final_train_loss, axis=-1)
  print(f"{task.name}@{steps}: " + "  ".join(
      f"a{float(a):g} {l:.4f}/{t:.2g}" for a, l, t in zip(alphas, test, train)), flush=True)
