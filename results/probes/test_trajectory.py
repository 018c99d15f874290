"""One-off check: the test loss along training (every EVERY steps, the
evaluation's 4 fixed test batches) of the shipped mulo-m and of tuned AdamW
(the screen report's LRs) on the screen tasks. If an optimizer's best test
loss along its trajectory is far below its final one, it memorizes past the
point a validation split would stop at.
Run from results/probes: ../../.venv/bin/python test_trajectory.py [SEEDS]
(2-core CPU); output: test_trajectory_screen.txt (4 seeds)."""
import sys
import numpy as np, optax, lopt
from meta_tasks import suites
from training.evaluation import lo_optax
from training.sweep import Sweep

seeds = list(range(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
lo, theta = lopt.load_pretrained("mulo-m")
ADAMW_LR = {"user-mlp_digits_w64_d3_b64": 0.01, "user-mlp_wine_w64_d3_b32": 3e-4,
            "user-cnn_digitsaug_w16_d2_b128": 0.01, "user-lm_pydocs_t32_w32_d1_h2_b16": 0.01,
            "user-mlp_teacher_w64_d3_b64": 1e-3, "user-mlp_wine_w128_d3_b16": 1e-4}


def trajectory(task, steps, tx, every):
  """[seed, steps // every] test loss after every ``every``-th update."""
  return Sweep(lambda _: tx, task, steps, test_every=every)(None, seeds).test_curve


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
