"""One-off probe, after lm_width_groups.py (the hidden group drives it): which hidden
tensors? One tensor family's step times m (q/k kernels; v/out kernels; the MLP
block's kernels; the readout), the rest as shipped; and tuned AdamW on the same
LM for scale. pydocs t32 d1 h2 b16, 500 steps, seeds 0,1.
Run from the repository root: .venv/bin/python results/probes/lm_width_tensors.py
(2-core CPU); output: results/probes/lm_width_tensors.txt."""
import sys
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from meta_tasks.user_tasks import PlainTransformerLMTask
from training.evaluation import lo_optax
from training.sweep import Sweep

name = sys.argv[1] if len(sys.argv) > 1 else "mulo-m"
steps = 500
lo, theta = lopt.load_pretrained(name)
mults = jnp.array([0.25, 0.5])
FAMILIES = {"q,k": ("query']['kernel", "key']['kernel"),
            "v,out": ("value']['kernel", "out']['kernel"),
            "mlp": ("PlainBlock_0']['Dense_0']['kernel", "PlainBlock_0']['Dense_1']['kernel"),
            "readout": ("^['Dense_0']['kernel']",)}   # ^: the path starts with it


def matches(path, needles):
  return any(path.startswith(n[1:]) if n[0] == "^" else n in path for n in needles)


def scale_paths(params, needles, m):
  """optax transformation: updates of tensors whose path contains a needle, times m."""
  paths = jax.tree_util.tree_map_with_path(lambda p, _: jax.tree_util.keystr(p), params)
  mask = jax.tree.map(lambda s: matches(s, needles), paths)
  def update(u, state, params=None):
    return jax.tree.map(lambda x, on: x * m if on else x, u, mask), state
  return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


print(f"{name}: pydocs LM t32 d1 h2 b16, {steps} steps, seeds 0,1", flush=True)
for width in (32, 128):
  task = PlainTransformerLMTask(seq_len=32, width=width, depth=1, num_heads=2, batch_size=16)
  shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))
  base = float(np.mean(Sweep(lambda _: lo_optax(lo, theta, task, steps), task, steps)(
      None, [0, 1]).test_loss))
  line = f"width {width:4d}: shipped {base:.4f}"
  for fam, needles in FAMILIES.items():
    hit = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]
           if matches(jax.tree_util.keystr(p), needles)]
    assert hit, (fam, needles)
    sweep = Sweep(lambda m: optax.chain(lo_optax(lo, theta, task, steps),
                                        scale_paths(shapes, needles, m)), task, steps, grid=True)
    loss = np.mean(sweep(mults, [0, 1]).test_loss, axis=-1)
    line += f" | {fam} " + " ".join(f"x{float(m):g} {l:.4f}" for m, l in zip(mults, loss))
    print(line, flush=True)
  lrs = jnp.array([1e-3, 3e-3, 1e-2])
  aw = np.mean(Sweep(lambda lr: optax.adamw(lr), task, steps, grid=True)(lrs, [0, 1]).test_loss, -1)
  line += " | adamw " + " ".join(f"{float(l):g} {a:.4f}" for l, a in zip(lrs, aw))
  print(line, flush=True)
