"""One-off probe: on the screen's small tables, does mulo-m's preferred step size
live in the input layer or the hidden matrices? One μP group's step times m
(input; hidden = hidden matrices and the readout), the rest as shipped; 3 seeds.
Screen tasks only (wine), never the held-out ones.
Run from the repository root: .venv/bin/python results/probes/table_group_steps.py
(2-core CPU); output: results/probes/table_group_steps.txt."""
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks.user_tasks import PlainMLPTask
from training import task_spec
from training.evaluation import lo_optax
from training.sweep import Sweep
from probe_tx import scale_group  # results/probes/probe_tx.py

lo, theta = lopt.load_pretrained("mulo-m")
mults = jnp.array([0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
GROUPS = {"input": ("input",), "hidden": ("hidden", "sp_output", "output")}


print(f"mulo-m on the screen's wine MLPs, 3 seeds: test loss with one group's step times "
      f"{[float(m) for m in mults]}", flush=True)
for task, steps in ((PlainMLPTask(dataset="wine", width=64, batch_size=32), 300),
                    (PlainMLPTask(dataset="wine", width=128, batch_size=16), 3000)):
  spec = task_spec.optimizer_spec(task)
  for group, kinds in GROUPS.items():
    sweep = Sweep(lambda m: optax.chain(lo_optax(lo, theta, task, steps),
                                        scale_group(spec, kinds, m)), task, steps, grid=True)
    loss = np.mean(sweep(mults, [0, 1, 2]).test_loss, axis=-1)
    print(f"{task.name} {steps} steps, {group:6s}: " + "  ".join(
        f"x{float(m):g} {l:.4f}" for m, l in zip(mults, loss)), flush=True)
