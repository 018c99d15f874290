"""Why does only one BatchNorm model fail under mulo-m (docs/meta-training-runs.md,
seventeenth/eighteenth sessions)? Crosses the failing digits CNN of
unseen_models.py (Conv16-BN-Conv32/2-BN, 1,000 steps, batch 64) with the wider
check CNN of bn_confirm.py (three convs, width 32, 1,500 steps, batch 32):
each architecture under each (steps, batch). Per cell: test loss / test
accuracy / eval-mode train loss / max spike, and the eval-mode train loss
with BatchNorm's statistics recomputed on the training set (what the fit
would give without the running averages' lag).

FAMILY=1: instead, each model of bn_family.py under its own settings
(seeds 10..), with LO=PATH the optimizer (default mulo-m).

Run from the repo root: [FAMILY=1] [LO=...] .venv/bin/python results/probes/bn_drift.py [SEEDS]
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bn_confirm  # noqa: E402
import bn_family  # noqa: E402
import unseen_models as um  # noqa: E402


def run_recomputed(task, make_tx, seed):
  """unseen_models.run, plus the final train/test loss with the batch
  statistics recomputed on the whole training set (one pass in train mode)."""
  model, kind = task["model"], task["kind"]
  xt, yt, xe, ye = (jnp.asarray(a) for a in task["data"])
  yt, ye = yt.astype(jnp.int32), ye.astype(jnp.int32)
  key = jax.random.PRNGKey(seed)
  variables = model.init({"params": key}, xt[:2], train=False)
  params = variables["params"]
  extra = {k: v for k, v in variables.items() if k != "params"}
  tx = make_tx(task, params)

  def step(carry, t):
    p, extra, s = carry
    k = jax.random.fold_in(key, t)
    idx = jax.random.choice(k, xt.shape[0], (task["batch"],), replace=False)

    def f(p):
      out, new = model.apply({"params": p, **extra}, xt[idx], train=True, mutable=list(extra))
      return um.loss_fn(kind, out, yt[idx]), new
    (loss, new_extra), g = jax.value_and_grad(f, has_aux=True)(p)
    u, s = tx.update(g, s, p, loss=loss)
    return (optax.apply_updates(p, u), new_extra, s), loss

  (p, extra, _), losses = jax.lax.scan(step, (params, extra, tx.init(params)),
                                       jnp.arange(task["steps"]))
  ev = lambda ex, x: model.apply({"params": p, **ex}, x, train=False)
  # Population statistics: BatchNorm in train mode on the whole training set
  # with momentum 0 is not exposed by linen, so average per-layer moments
  # from one full-batch train-mode pass (momentum 0.99 applied to running=0
  # gives 0.01·batch; rescale).
  _, new = model.apply({"params": p, **extra}, xt, train=True, mutable=["batch_stats"])
  pop = jax.tree_util.tree_map(lambda old, nw: (nw - 0.99 * old) / 0.01,
                               extra["batch_stats"], new["batch_stats"])
  ratio = jax.tree_util.tree_map(lambda r, q: jnp.mean(r / q), extra["batch_stats"], pop)
  out_e, out_er = ev(extra, xe), ev({"batch_stats": pop}, xe)
  out_t, out_tr = ev(extra, xt), ev({"batch_stats": pop}, xt)
  acc = jnp.mean(jnp.argmax(out_e, -1) == ye)
  return (losses, um.loss_fn(kind, out_t, yt), um.loss_fn(kind, out_e, ye), acc,
          um.loss_fn(kind, out_tr, yt), um.loss_fn(kind, out_er, ye), ratio)


def main():
  seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
  found = next(t for t in um.make_tasks() if "BatchNorm" in t["name"])
  wide = next(t for t in bn_confirm.tasks() if "CNN" in t["name"])
  make = bn_confirm.pretrained(os.environ.get("LO", "mulo-m"))
  print(f"# {seeds} seeds, LO {os.environ.get('LO', 'mulo-m')}: test loss / test acc / eval-mode "
        "train loss / max spike || recomputed-stats train / test loss || mean running/population "
        "var per BatchNorm layer", flush=True)
  cells = ([(t, t) for t in bn_family.tasks()] if os.environ.get("FAMILY") == "1" else
           [(arch, sched) for arch in (found, wide) for sched in (found, wide)])
  first = 10 if os.environ.get("FAMILY") == "1" else 0
  for arch, sched in cells:
    task = {**arch, "steps": sched["steps"], "batch": sched["batch"]}
    out = jax.jit(jax.vmap(lambda s: run_recomputed(task, make, s)))(
        jnp.arange(first, first + seeds))
    losses, train, test, acc, train_r, test_r, ratio = jax.tree_util.tree_map(np.asarray, out)
    var = {k: float(np.mean(v["var"])) for k, v in ratio.items()}
    spike = float(np.max(losses / losses[:, :1]))
    print(f"{arch['name'][:22]:22s} steps {task['steps']:5d} batch {task['batch']:3d}: "
          f"{test.mean():.4f} / {acc.mean():.3f} / {train.mean():.3g} / {spike:.2f} || "
          f"{train_r.mean():.3g} / {test_r.mean():.4f} || "
          + " ".join(f"{k}:{v:.2f}" for k, v in var.items()), flush=True)


if __name__ == "__main__":
  main()
