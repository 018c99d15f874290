"""One-off probe: does mulo-m's step transfer in width on a plain-flax transformer
LM? For each width, the test loss of mulo-m with every update times m (the
step-multiplier knob, lopt.pretrained_optax's step_mult), 2 seeds. If the best m
drifts with width, a μP rule of the LM's tensors is off. Not a held-out task:
pydocs t32 d1 h2 b16 (the screen LM's shape) at widths 16-128, 500 steps.
Run from the repository root: .venv/bin/python results/probes/lm_width_step.py
(2-core CPU); output: results/probes/lm_width_step.txt."""
import sys
import numpy as np, jax.numpy as jnp, optax, lopt
from meta_tasks.user_tasks import PlainTransformerLMTask
from training.evaluation import lo_optax
from training.sweep import Sweep

name = sys.argv[1] if len(sys.argv) > 1 else "mulo-m"
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 500
lo, theta = lopt.load_pretrained(name)
mults = jnp.array([0.25, 0.5, 1.0, 2.0, 4.0])
print(f"{name}: pydocs LM t32 d1 h2 b16, {steps} steps, seeds 0,1; test loss per step mult "
      f"{[float(m) for m in mults]}", flush=True)
for width in (16, 32, 64, 128):
  task = PlainTransformerLMTask(seq_len=32, width=width, depth=1, num_heads=2, batch_size=16)
  sweep = Sweep(lambda m: optax.chain(lo_optax(lo, theta, task, steps), optax.scale(m)),
                task, steps, grid=True)
  c = sweep(mults, [0, 1])
  loss = np.mean(c.test_loss, axis=-1)
  best = float(mults[int(np.argmin(loss))])
  print(f"width {width:4d}: " + "  ".join(f"x{float(m):g} {l:.4f}" for m, l in zip(mults, loss))
        + f"  best x{best:g}  ({c.seconds:.0f} s)", flush=True)
