"""One-off check of flooding (Ishida et al. 2020) in front of the shipped
mulo-m: the minibatch gradient is multiplied by sign(loss - b), so once the
training loss falls below the flood level b the optimizer ascends, and the
loss hovers at b instead of going to 0. Only tasks whose training loss goes
below b are touched (not the LM or the teacher, whose losses stay near 2 and
0.5). b on a grid (0: off), one compiled grid per task, seeds 0..SEEDS-1.
SUITE: "screen" (screen-user-cpu) or "heldout" (heldout-user-cpu and the
width-512 task, with tuned AdamW's numbers from the shipped held-out report).
Run from results/probes: ../../.venv/bin/python flooding.py SUITE [BS [SEEDS]]
(2-core CPU); outputs: flooding_screen8.txt (screen 0,0.003,0.01,0.03 8)."""
import jax, jax.numpy as jnp, numpy as np, optax, lopt
import probe_suites
from training.evaluation import lo_optax
from training.sweep import Sweep

SUITE, bs, seeds = probe_suites.parse_args("0,0.01")
lo, theta = lopt.load_pretrained("mulo-m")
adamw = probe_suites.adamw_heldout()


def flood(b):
  def update(updates, state, params=None, loss=None, **extra):
    s = jnp.where(jnp.asarray(loss, jnp.float32) >= b, 1.0, -1.0)
    return jax.tree.map(lambda g: g * s.astype(g.dtype), updates), state
  return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


entries = probe_suites.entries(SUITE)
print(f"{SUITE}, flooding at b in {bs} before mulo-m, {len(seeds)} seeds: test loss / test "
      "accuracy / max spike / train loss (means over seeds)", flush=True)
for e in entries:
  task, steps = e.task, e.num_steps
  make = lambda b: optax.chain(flood(b), lo_optax(lo, theta, task, steps))
  r = Sweep(make, task, steps, grid=True)(jnp.asarray(bs, jnp.float32), seeds)
  acc = r.test_accuracy if r.test_accuracy is not None else np.full(r.test_loss.shape, np.nan)
  row = lambda i: (f"b{bs[i]:g} {np.mean(r.test_loss[i]):.4f} / {np.nanmean(acc[i]):.4f} / "
                   f"{np.max(r.max_spike[i]):.2f} / {np.mean(r.final_train_loss[i]):.2g}")
  line = f"{task.name}@{steps}: " + " | ".join(row(i) for i in range(len(bs)))
  a = adamw.get(f"{task.name}@{steps}")
  if a:
    line += (f" | tuned AdamW {a['adamw_test_loss']:.4f}; ratio "
             + " ".join(f"{np.mean(r.test_loss[i]) / a['adamw_test_loss']:.3f}" for i in range(len(bs))))
  print(line, flush=True)
