"""Does sharpness-aware training tell the small tables from the image tasks
where no signal the LO sees does?

Every restraint probed so far (decay, flooding, an epoch cap, a validation
brake) trades the small tables against the digits and the CNN at a steep
rate (docs/meta-training-runs.md, "One frontier"). The one thing that has
helped the tables is a tuned step multiplier ×5.6, through 12-38× loss
spikes: large steps keep the training loss off 0 by refusing sharp minima.
SAM (Foret et al. 2021) asks for flat minima directly, and is known not to
hurt image models. This probe uses the overhead-free variant, momentum-SAM
(Becker et al. 2024): the gradient is taken at the true weights w plus an
ascent offset along the running mean of past gradients, so one gradient per
step as before. Per tensor the offset is ρ · ‖w‖ · m / ‖m‖ (relative to the
tensor's own norm, so it does not depend on width or init scale; zero-norm
tensors such as fresh biases are not perturbed), and it is removed at the
last step so the final params are the true ones. The LO sees the true
weights.

    .venv/bin/python results/probes/momentum_sam.py SET [RHOS [SEEDS]]
SET: "kin" (clean_table_kin.py's kin-a..d, seeds 500.., with that probe's
tuned AdamW) or "screen" (screen-user-cpu, seeds 600..). RHOS default
0,0.01,0.03,0.1. Run from the repository root (2-core CPU). One compiled
ρ × seed sweep per task.
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
from training.evaluation import lo_optax
from training.sweep import Sweep

sys.path.insert(0, "results/probes")
import probe_suites  # noqa: E402

KIN_ADAMW = probe_suites.KIN_ADAMW


def momentum_sam(inner, rho, num_steps, beta=0.9):
  """``inner`` (an LO's optax transformation) with its gradients taken at the
  true weights + ρ‖w‖ m/‖m‖ per tensor; the offset is dropped at the last step."""
  norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32))))

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return inner.init(params), zeros, zeros, jnp.zeros((), jnp.int32)

  def update(grads, state, params=None, **extra):
    inner_state, offset, m, count = state
    true = jax.tree.map(jnp.subtract, params, offset)
    u, inner_state = inner.update(grads, inner_state, true, **extra)
    m = jax.tree.map(lambda a, g: beta * a + (1 - beta) * g, m, grads)
    last = count + 1 >= num_steps
    new_true = jax.tree.map(jnp.add, true, u)
    new_offset = jax.tree.map(
        lambda w, a: jnp.where(last, 0.0, rho * norm(w) / (norm(a) + 1e-30)) * a, new_true, m)
    updates = jax.tree.map(lambda x, o_old, o_new: x - o_old + o_new, u, offset, new_offset)
    return updates, (inner_state, new_offset, m, count + 1)

  return optax.GradientTransformationExtraArgs(init, update)


if __name__ == "__main__":
  which = sys.argv[1]
  rhos = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0,0.01,0.03,0.1").split(",")]
  nseeds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
  entries, first = probe_suites.kin_or_screen(which, 600)
  lo, theta = lopt.load_pretrained("mulo-m")
  seeds = list(range(first, first + nseeds))
  print(f"{which}: mulo-m with momentum-SAM at rho in {rhos} (0: off), seeds {seeds[0]}..{seeds[-1]}: "
        "test loss / test accuracy / max spike / final train loss (means over seeds)", flush=True)
  for e in entries:
    task, steps = e.task, e.num_steps
    make = lambda r: momentum_sam(lo_optax(lo, theta, task, steps), r, steps)
    res = Sweep(make, task, steps, grid=True)(jnp.asarray(rhos, jnp.float32), seeds)
    acc = res.test_accuracy if res.test_accuracy is not None else np.full(res.test_loss.shape, np.nan)
    tl = [float(np.mean(res.test_loss[i])) for i in range(len(rhos))]
    cells = [f"rho {r:g} {tl[i]:.4f} / {np.nanmean(acc[i]):.3f} / {np.max(res.max_spike[i]):.2f} / "
             f"{np.mean(res.final_train_loss[i]):.2g} ({tl[i] / tl[0]:.3f}x)" for i, r in enumerate(rhos)]
    ref = KIN_ADAMW.get(getattr(task, "dataset", None)) if which == "kin" else None
    tail = f" | tuned AdamW {ref:.4f}: " + " ".join(f"{x / ref:.2f}x" for x in tl) if ref else ""
    print(f"{task.name}@{steps}: " + " | ".join(cells) + tail, flush=True)
