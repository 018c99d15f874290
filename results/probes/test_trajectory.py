"""One-off check: the test loss along training (every EVERY steps, the
evaluation's 4 fixed test batches) of the shipped mulo-m and of tuned AdamW
(the screen report's LRs) on the screen tasks. If an optimizer's best test
loss along its trajectory is far below its final one, it memorizes past the
point a validation split would stop at.
Run from results/probes: ../../.venv/bin/python test_trajectory.py [SEEDS]
(2-core CPU); output: test_trajectory_screen.txt (4 seeds)."""
import sys
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks import suites
from training.evaluation import lo_optax
from training.sweep import _final_metrics

seeds = jnp.arange(int(sys.argv[1]) if len(sys.argv) > 1 else 4, dtype=jnp.uint32)
lo, theta = lopt.load_pretrained("mulo-m")
ADAMW_LR = {"user-mlp_digits_w64_d3_b64": 0.01, "user-mlp_wine_w64_d3_b32": 3e-4,
            "user-cnn_digitsaug_w16_d2_b128": 0.01, "user-lm_pydocs_t32_w32_d1_h2_b16": 0.01,
            "user-mlp_teacher_w64_d3_b64": 1e-3, "user-mlp_wine_w128_d3_b16": 1e-4}


def trajectory(task, steps, tx, every):
  data = task.data()
  def run(seed):
    k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init(k_init)
    state = tx.init(params)
    def step(carry, t):
      params, state = carry
      k_batch, k_loss = jax.random.split(jax.random.fold_in(k_data, t))
      loss, grads = jax.value_and_grad(task.loss)(params, task.sample_batch(k_batch, data=data), k_loss)
      updates, state = tx.update(grads, state, params, loss=loss)
      params = optax.apply_updates(params, updates)
      test = jax.lax.cond((t + 1) % every == 0,
                          lambda p: _final_metrics(task, p, data, "test", 4)["loss"],
                          lambda p: jnp.float32(jnp.nan), params)
      return (params, state), test
    return jax.lax.scan(step, (params, state), jnp.arange(steps))[1]
  out = np.asarray(jax.jit(jax.vmap(run))(seeds))
  return out[:, every - 1::every]


print(f"screen, test loss along training, mean over {len(seeds)} seeds: final | best (at step)")
for e in suites.get_suite("screen-user-cpu"):
  task, steps = e.task, e.num_steps
  every = max(steps // 100, 1)
  line = f"{task.name}@{steps}:"
  for name, tx in (("mulo-m", lo_optax(lo, theta, task, steps)),
                   (f"adamw({ADAMW_LR[task.name]:g})", optax.adamw(ADAMW_LR[task.name]))):
    curve = trajectory(task, steps, tx, every).mean(0)
    i = int(np.nanargmin(curve))
    line += f" {name} {curve[-1]:.4f} | {curve[i]:.4f} ({(i + 1) * every});"
  print(line, flush=True)
