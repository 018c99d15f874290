"""A second, broader test of InvariantDecayCosine on BatchNorm models that no
earlier probe used (decision rule in docs/meta-training-runs.md, eighteenth
session): six plain linen models, each with BatchNorm (running averages in
evaluation, flax's default momentum 0.99), over two datasets, four horizons
and three batch sizes; mulo-m against the candidate on the same seeds, and
AdamW's LR grid as unseen_models.py has it.

Run from the repo root: .venv/bin/python results/probes/bn_family.py [SEEDS] [FIRST_SEED]
(NO_ADAMW=1: mulo-m and the candidate only; TASKS=a;b: only the models whose
names contain one of these).
"""
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from sklearn import datasets as skd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bn_confirm  # noqa: E402
import unseen_models as um  # noqa: E402

# CANDIDATE=PATH: another candidate (default: InvariantDecayCosine's).
CANDIDATE = os.environ.get("CANDIDATE", "results/candidates/mulo-m-invariant-decay")


def bn(x, train):
  return nn.BatchNorm(use_running_average=not train)(x)


class PoolCNN(nn.Module):
  """Conv-BN-ReLU ×2 with a max-pool between, dense readout."""
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(bn(nn.Conv(self.width, (3, 3))(x), train))
    x = nn.max_pool(x, (2, 2), (2, 2))
    x = nn.relu(bn(nn.Conv(2 * self.width, (3, 3))(x), train))
    return nn.Dense(self.out)(x.reshape(x.shape[0], -1))


class ResCNN(nn.Module):
  """A stem conv, then two residual blocks (conv-BN-ReLU-conv-BN, + input)."""
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(bn(nn.Conv(self.width, (3, 3))(x), train))
    for _ in range(2):
      h = nn.relu(bn(nn.Conv(self.width, (3, 3))(x), train))
      x = nn.relu(x + bn(nn.Conv(self.width, (3, 3))(h), train))
    return nn.Dense(self.out)(x.mean(axis=(1, 2)))


class DeepCNN(nn.Module):
  """Four conv-BN-ReLU layers, no bias before BatchNorm, mean-pooled."""
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(4):
      x = nn.Conv(self.width * (1 + i // 2), (3, 3), strides=1 + (i == 1), use_bias=False)(x)
      x = nn.relu(bn(x, train))
    return nn.Dense(self.out)(x.mean(axis=(1, 2)))


class BNMLP3(nn.Module):
  """Dense-BN-ReLU ×3 on a table."""
  width: int
  out: int

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(3):
      x = nn.relu(bn(nn.Dense(self.width)(x), train))
    return nn.Dense(self.out)(x)


def tasks():
  d = skd.load_digits()
  img = (d.images / 16.0)[..., None]
  perm = np.random.RandomState(7).permutation(len(img))  # another split than the earlier probes
  img, lab = img[perm], d.target[perm]
  digits = (img[:1400], lab[:1400], img[1400:], lab[1400:])
  x, y = skd.make_classification(1200, 16, n_informative=8, n_classes=3, flip_y=0.03,
                                 random_state=5)
  table = (*um.standardize(x[:900], x[900:]),)
  table = (table[0], y[:900], table[1], y[900:])
  x2, y2 = skd.make_classification(600, 40, n_informative=6, flip_y=0.05, random_state=11)
  small = (*um.standardize(x2[:450], x2[450:]),)
  small = (small[0], y2[:450], small[1], y2[450:])
  return [
      dict(name="pool CNN w24, digits", model=PoolCNN(24), base=PoolCNN(6), data=digits,
           steps=800, batch=128, kind="xent"),
      dict(name="residual CNN w16, digits", model=ResCNN(16), base=ResCNN(4), data=digits,
           steps=1200, batch=64, kind="xent"),
      dict(name="deep CNN w16 no bias, digits", model=DeepCNN(16), base=DeepCNN(4), data=digits,
           steps=600, batch=32, kind="xent"),
      dict(name="pool CNN w16, digits, long", model=PoolCNN(16), base=PoolCNN(4), data=digits,
           steps=2000, batch=32, kind="xent"),
      dict(name="BN MLP w128 d3, 3-class table", model=BNMLP3(128, 3), base=BNMLP3(32, 3),
           data=table, steps=1500, batch=64, kind="xent"),
      dict(name="BN MLP w256 d3, small table", model=BNMLP3(256, 2), base=BNMLP3(32, 2),
           data=small, steps=1000, batch=32, kind="xent"),
  ]


def evaluate_paired(task, make_tx, seeds):
  """unseen_models.evaluate, also returning the per-seed test losses."""
  losses, train, test, acc = jax.jit(jax.vmap(lambda s: um.run(task, make_tx, s)))(seeds)
  losses, test = np.asarray(losses), np.asarray(test)
  return dict(test=float(np.mean(test)), acc=float(np.mean(acc)), train=float(np.mean(train)),
              spike=float(np.max(losses / losses[:, :1])),
              diverged=not bool(np.all(np.isfinite(losses)))), test


def main():
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
  first = int(sys.argv[2]) if len(sys.argv) > 2 else 10
  seeds = jnp.arange(first, first + n)
  print(f"# candidate: {CANDIDATE}")
  print(f"BatchNorm family, seeds {first}..{first + n - 1}: test loss / test accuracy / final "
        "train loss (eval mode) / max spike; candidate ÷ mulo-m per seed (mean ± s.e.)",
        flush=True)
  log_ratios = []
  only = [t for t in os.environ.get("TASKS", "").split(";") if t]
  for task in tasks():
    if only and not any(t in task["name"] for t in only):
      continue
    m, m_seeds = evaluate_paired(task, bn_confirm.pretrained("mulo-m"), seeds)
    c, c_seeds = evaluate_paired(task, bn_confirm.pretrained(CANDIDATE), seeds)
    r = c_seeds / m_seeds
    log_ratios.append(np.log(c["test"] / m["test"]))
    print(f"\n{task['name']} ({task['steps']} steps, batch {task['batch']})\n"
          f"  mulo-m    {um.fmt(m)}\n  candidate {um.fmt(c)}  [÷ mulo-m {c['test'] / m['test']:.3f};"
          f" per seed {r.mean():.3f} ± {r.std(ddof=1) / np.sqrt(len(r)):.3f}]", flush=True)
    if os.environ.get("NO_ADAMW") != "1":
      ad = {lr: evaluate_paired(task, um.adamw(lr), seeds)[0] for lr in um.ADAMW_LRS}
      best = min(ad, key=lambda lr: ad[lr]["test"] if not ad[lr]["diverged"] else np.inf)
      print(f"  tuned AdamW (lr {best:g}) {um.fmt(ad[best])}; mulo-m "
            f"{m['test'] / ad[best]['test']:.2f}x, candidate {c['test'] / ad[best]['test']:.2f}x",
            flush=True)
  print(f"\ngeometric mean, candidate ÷ mulo-m over {len(log_ratios)} models: "
        f"{np.exp(np.mean(log_ratios)):.3f}; worst {np.exp(np.max(log_ratios)):.3f}", flush=True)


if __name__ == "__main__":
  main()
