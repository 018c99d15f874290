"""keep_invariant_norms around mulo-m on nine BatchNorm models (decision rule in
docs/meta-training-runs.md, nineteenth session): the six of bn_family.py, the
two of bn_confirm.py and the CNN that found the problem (unseen_models.py).
Per model, seeds FIRST..FIRST+SEEDS-1: mulo-m, mulo-m with BatchNorm's
statistics recomputed on the training set, and "kept" (mulo-m wrapped);
test loss / test accuracy / eval-mode train loss / max spike, and the first
BatchNorm layer's running ÷ population variance at the end.

Run from the repo root: .venv/bin/python results/probes/bn_kept_norms.py [SEEDS] [FIRST]
(TASKS=a;b: only the models whose names contain one of these; ADAMW=1: instead,
AdamW's LR grid (unseen_models.ADAMW_LRS) on the same seeds, its best by test
loss, to set beside the rows of a run without it)."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bn_confirm  # noqa: E402
import bn_drift  # noqa: E402
import bn_family  # noqa: E402
import lopt  # noqa: E402
import unseen_models as um  # noqa: E402


def lo(keep):
  def make(task, params):
    return lopt.pretrained_optax("mulo-m", num_steps=task["steps"], mup=um.kinds(task, params),
                                 keep_invariant_norms=keep)
  return make


def first_bn_ratio(ratio):
  """The running ÷ population variance of the first BatchNorm layer (by name order)."""
  names = sorted(ratio, key=lambda k: int(k.rsplit("_", 1)[-1]))
  return float(np.mean(ratio[names[0]]["var"]))


def adamw_grid(models, only, seeds):
  print(f"# seeds {int(seeds[0])}..{int(seeds[-1])}: AdamW's LR grid, test loss / test acc / "
        "eval-mode train loss / max spike; its best by test loss marked *", flush=True)
  for task in models:
    if only and not any(t in task["name"] for t in only):
      continue
    print(f"\n{task['name']} ({task['steps']} steps, batch {task['batch']})", flush=True)
    rows = {lr: bn_family.evaluate_paired(task, um.adamw(lr), seeds)[0] for lr in um.ADAMW_LRS}
    best = min(rows, key=lambda lr: rows[lr]["test"] if not rows[lr]["diverged"] else np.inf)
    for lr, r in rows.items():
      print(f"  adamw {lr:g}{'*' if lr == best else ' '} {um.fmt(r)}", flush=True)


def models_and_args(default_seeds, default_first):
  """The nine BatchNorm models, the seeds from argv ([SEEDS] [FIRST]) and the
  TASKS filter from the environment."""
  n = int(sys.argv[1]) if len(sys.argv) > 1 else default_seeds
  first = int(sys.argv[2]) if len(sys.argv) > 2 else default_first
  only = [t for t in os.environ.get("TASKS", "").split(";") if t]
  models = (bn_family.tasks() + bn_confirm.tasks()
            + [t for t in um.make_tasks() if "BatchNorm" in t["name"]])
  return models, only, first, n


def main():
  models, only, first, n = models_and_args(4, 40)
  seeds = jnp.arange(first, first + n)
  if os.environ.get("ADAMW") == "1":
    return adamw_grid(models, only, seeds)
  print(f"# seeds {first}..{first + n - 1}: test loss / test acc / eval-mode train loss / max "
        "spike [BN_0 running/population var]; kept ÷ mulo-m per seed (mean ± s.e.)", flush=True)
  logs_m, logs_r, worst_spike, diverged = [], [], 0.0, 0
  for task in models:
    if only and not any(t in task["name"] for t in only):
      continue
    rows = {}
    for name, keep in (("mulo-m", False), ("kept", True)):
      out = jax.jit(jax.vmap(lambda s: bn_drift.run_recomputed(task, lo(keep), s)))(seeds)
      losses, train, test, acc, train_r, test_r, ratio = jax.tree_util.tree_map(np.asarray, out)
      rows[name] = dict(test=test, acc=acc.mean(), train=train.mean(), test_r=test_r,
                        spike=float(np.max(losses / losses[:, :1])), bn0=first_bn_ratio(ratio),
                        diverged=int(np.sum(~np.all(np.isfinite(losses), axis=1))))
    m, k = rows["mulo-m"], rows["kept"]
    per_seed = k["test"] / m["test"]
    ratio_m = k["test"].mean() / m["test"].mean()
    ratio_r = k["test"].mean() / m["test_r"].mean()
    logs_m.append(np.log(ratio_m)); logs_r.append(np.log(ratio_r))
    worst_spike = max(worst_spike, k["spike"] / max(2.0, m["spike"]))
    diverged += k["diverged"]
    fmt = lambda r: (f"{r['test'].mean():.4f} / {r['acc']:.3f} / {r['train']:.3g} / "
                     f"{r['spike']:.2f} [BN_0 {r['bn0']:.2f}]")
    print(f"\n{task['name']} ({task['steps']} steps, batch {task['batch']})\n"
          f"  mulo-m     {fmt(m)}\n  recomputed {m['test_r'].mean():.4f}\n"
          f"  kept       {fmt(k)}  [÷ mulo-m {ratio_m:.3f}; per seed {per_seed.mean():.3f} ± "
          f"{per_seed.std(ddof=1) / np.sqrt(len(per_seed)):.3f}; ÷ recomputed {ratio_r:.3f}]",
          flush=True)
  print(f"\nover {len(logs_m)} models: kept ÷ mulo-m geometric mean {np.exp(np.mean(logs_m)):.3f}, "
        f"worst {np.exp(np.max(logs_m)):.3f}; kept ÷ recomputed geometric mean "
        f"{np.exp(np.mean(logs_r)):.3f}; diverged runs {diverged}; max spike ÷ max(2, mulo-m's) "
        f"{worst_spike:.2f}", flush=True)


if __name__ == "__main__":
  main()
