"""One-off probe, after lm_width_step.py: which tensors make mulo-m's best step on a
plain-flax LM shrink with width? The step of one μP group at a time (input =
the embeddings; hidden = the block and readout matrices; vector = LayerNorm and
biases) times m, the rest as shipped; pydocs t32 d1 h2 b16, 500 steps, seeds 0,1.
Run from the repository root: .venv/bin/python results/probes/lm_width_groups.py
(2-core CPU); output: results/probes/lm_width_groups.txt."""
import sys
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks.user_tasks import PlainTransformerLMTask
from training import task_spec
from training.evaluation import lo_optax
from training.sweep import Sweep
from probe_tx import scale_group  # results/probes/probe_tx.py

name = sys.argv[1] if len(sys.argv) > 1 else "mulo-m"
steps, widths = 500, (32, 128)
lo, theta = lopt.load_pretrained(name)
mults = jnp.array([0.25, 0.5, 1.0])
GROUPS = {"input": ("input",), "hidden": ("hidden", "sp_output", "output"), "vector": ("vector",)}


print(f"{name}: pydocs LM t32 d1 h2 b16, {steps} steps, seeds 0,1; test loss with one group's "
      f"step times {[float(m) for m in mults]}", flush=True)
for width in widths:
  task = PlainTransformerLMTask(seq_len=32, width=width, depth=1, num_heads=2, batch_size=16)
  spec = task_spec.optimizer_spec(task)
  for group, kinds in GROUPS.items():
    sweep = Sweep(lambda m: optax.chain(lo_optax(lo, theta, task, steps),
                                        scale_group(spec, kinds, m)), task, steps, grid=True)
    loss = np.mean(sweep(mults, [0, 1]).test_loss, axis=-1)
    print(f"width {width:4d} {group:6s}: " + "  ".join(
        f"x{float(m):g} {l:.4f}" for m, l in zip(mults, loss)), flush=True)
