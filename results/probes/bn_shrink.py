"""How far, and how fast, mulo-m shrinks the scale-invariant kernels of the nine
BatchNorm models of bn_kept_norms.py (twenty-first session). Runs mulo-m wrapped
in keep_invariant_norms (full holding) and reads the wrapper's log_ratio (log of
the norm mulo-m would have given over the held one): per model, over kept
tensors, the shrink it prevented (-log_ratio): its largest value at the end, its
largest rise over the last 100 updates (the shrink inside BatchNorm's
momentum-0.99 window, which sets the running statistics' lag), and the
largest one-update change anywhere and after the first 5% of training.

Run from the repo root: .venv/bin/python results/probes/bn_shrink.py [SEEDS] [FIRST]"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bn_kept_norms  # noqa: E402
from lopt.invariant_norms import kept_norm_ratios  # noqa: E402
import unseen_models as um  # noqa: E402


def ratio_trace(task, seed):
  """Per update, the kept tensors' log_ratio (stacked: [steps, tensors])."""
  model, kind = task["model"], task["kind"]
  xt, yt = jnp.asarray(task["data"][0]), jnp.asarray(task["data"][1]).astype(jnp.int32)
  key = jax.random.PRNGKey(seed)
  variables = model.init({"params": key}, xt[:2], train=False)
  params = variables["params"]
  extra = {k: v for k, v in variables.items() if k != "params"}
  tx = bn_kept_norms.lo(True)(task, params)

  def step(carry, t):
    p, extra, s = carry
    idx = jax.random.choice(jax.random.fold_in(key, t), xt.shape[0], (task["batch"],),
                            replace=False)

    def f(p):
      out, new = model.apply({"params": p, **extra}, xt[idx], train=True, mutable=list(extra))
      return um.loss_fn(kind, out, yt[idx]), new
    (loss, new_extra), g = jax.value_and_grad(f, has_aux=True)(p)
    u, s = tx.update(g, s, p, loss=loss)
    ratios = jnp.stack([r for r in jax.tree_util.tree_leaves(kept_norm_ratios(s))])
    return (optax.apply_updates(p, u), new_extra, s), ratios

  _, trace = jax.lax.scan(step, (params, extra, tx.init(params)), jnp.arange(task["steps"]))
  return trace


def main():
  models, only, first, n = bn_kept_norms.models_and_args(2, 60)
  seeds = jnp.arange(first, first + n)
  print(f"# seeds {first}..{first + n - 1}; log_ratio of the kept tensors (max over tensors, "
        "mean over seeds): at the end | rise over the last 100 updates | largest one-update "
        "|change|, anywhere / after 5% of training | held tensors", flush=True)
  for task in models:
    if only and not any(t in task["name"] for t in only):
      continue
    # shrink = -log_ratio: the virtual (unwrapped) norm is below the held one.
    tr = -np.asarray(jax.jit(jax.vmap(lambda s: ratio_trace(task, s)))(seeds))  # [seed, T, n]
    end = tr[:, -1].max(-1)
    window = (tr[:, -1] - tr[:, -101]).max(-1)
    rise = np.abs(np.diff(tr, axis=1))
    skip = max(1, task["steps"] // 20)
    held = int(np.sum(np.abs(tr[0, -1]) > 1e-6))
    print(f"{task['name'][:32]:32s} {task['steps']:5d} steps: end {end.mean():.3f} | last100 "
          f"{window.mean():.3f} | step {rise.max(axis=(1, 2)).mean():.2e} / "
          f"{rise[:, skip:].max(axis=(1, 2)).mean():.2e} | {held}/{tr.shape[-1]}", flush=True)


if __name__ == "__main__":
  main()
