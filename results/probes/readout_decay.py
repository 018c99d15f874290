"""One-off check: does decoupled decay on the readout alone (the one tensor
whose scale sets the logits' confidence) restrain the memorizing tables
without costing the digits? Shipped mulo-m, chained with ``p -= c * cos(t) * p``
on the readout kernel only (kind output/sp_output), c on a grid, one compiled
grid per task, seeds 0..SEEDS-1.
Run from results/probes: ../../.venv/bin/python readout_decay.py [CS [SEEDS]]
(2-core CPU); output: readout_decay_screen4.txt (0,0.003,0.01,0.03 4)."""
import sys
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks import suites
from training import task_spec
from training.evaluation import lo_optax
from training.sweep import Sweep

cs = [float(c) for c in (sys.argv[1] if len(sys.argv) > 1 else "0,0.003,0.01,0.03").split(",")]
seeds = list(range(int(sys.argv[2]) if len(sys.argv) > 2 else 3))
lo, theta = lopt.load_pretrained("mulo-m")


def readout_decay(c, mask, num_steps):
  def init(params):
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))
  def update(updates, state, params=None, **extra):
    f = 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(state.count, num_steps) / num_steps))
    updates = jax.tree.map(lambda u, p, m: u - c * f * p if m else u, updates, params, mask)
    return updates, optax.ScaleByScheduleState(count=state.count + 1)
  return optax.GradientTransformationExtraArgs(init, update)


def readout_mask(task):
  kinds = task_spec.optimizer_spec(task)
  shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))
  kind = lambda k: getattr(k, "kind", k)
  return jax.tree.map(lambda k, s: kind(k) in ("output", "sp_output") and len(s.shape) >= 2,
                      kinds, shapes, is_leaf=lambda k: isinstance(k, (str, lopt.mup.Kind)))


print(f"screen, mulo-m + readout decay c in {cs}, {len(seeds)} seeds: test loss / test "
      "accuracy / max spike / train loss", flush=True)
for e in suites.get_suite("screen-user-cpu"):
  task, steps = e.task, e.num_steps
  mask = readout_mask(task)
  assert sum(jax.tree.leaves(mask)) == 1, mask
  make = lambda c: optax.chain(lo_optax(lo, theta, task, steps), readout_decay(c, mask, steps))
  r = Sweep(make, task, steps, grid=True)(jnp.asarray(cs, jnp.float32), seeds)
  acc = r.test_accuracy if r.test_accuracy is not None else np.full(r.test_loss.shape, np.nan)
  row = lambda i: (f"c{cs[i]:g} {np.mean(r.test_loss[i]):.4f} / {np.nanmean(acc[i]):.4f} / "
                   f"{np.max(r.max_spike[i]):.2f} / {np.mean(r.final_train_loss[i]):.2g}")
  print(f"{task.name}@{steps}: " + " | ".join(row(i) for i in range(len(cs))), flush=True)
