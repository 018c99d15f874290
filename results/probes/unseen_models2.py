"""A second audit on models no suite has (eighteenth session): what a user
gets from the shipped mulo-m on four more plain linen models, written with
the public API only, against AdamW's LR grid picked on the test split (an
oracle, as the suites tune it). Tasks:
- vit: a tiny vision transformer on sklearn's digits (2×2 patches, 16
  tokens, learned positions, 2 pre-LN blocks of flax attention, 4 heads,
  width 64), batch 64, 1,500 steps;
- gru: a GRU (nn.RNN over nn.GRUCell, 64 units) reading the digits' 8 rows
  as a sequence, batch 64, 1,500 steps;
- bag: an embedding-bag text classifier (nn.Embed 64, mean over 24 tokens,
  Dense 64) on synthetic token sequences whose label is which of two token
  sets occurs more often, 10% labels flipped; 2,000 rows, batch 32, 2,000
  steps;
- diabetes: an MLP 128×2 regressing sklearn's diabetes progression (442
  rows, 10 features; standardized target), batch 32, 2,000 steps.
Seeds vary the init and the batches; the data are fixed.

Run from the repo root: .venv/bin/python results/probes/unseen_models2.py [SEEDS]
(TASKS=a;b: only the tasks whose names contain one of these).
"""
import os
import sys

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from sklearn import datasets as skd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unseen_models as um  # noqa: E402


class ViT(nn.Module):
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    b = x.shape[0]
    x = x.reshape(b, 4, 2, 4, 2).transpose(0, 1, 3, 2, 4).reshape(b, 16, 4)  # 2×2 patches
    x = nn.Dense(self.width)(x)
    x = x + self.param("pos", nn.initializers.normal(0.02), (16, self.width))
    for _ in range(2):
      x = x + nn.MultiHeadDotProductAttention(num_heads=4)(nn.LayerNorm()(x))
      h = nn.LayerNorm()(x)
      x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(h)))
    return nn.Dense(self.out)(nn.LayerNorm()(x.mean(axis=1)))


class GRU(nn.Module):
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.RNN(nn.GRUCell(self.width))(x[..., 0])  # rows as a sequence of 8 steps
    return nn.Dense(self.out)(h[:, -1])


class Bag(nn.Module):
  width: int
  out: int = 2
  vocab: int = 200

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    e = nn.Embed(self.vocab, self.width)(x.astype(jnp.int32)).mean(axis=1)
    return nn.Dense(self.out)(nn.relu(nn.Dense(self.width)(e)))


class RegMLP2(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    for _ in range(2):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(1)(x)[:, 0]


def bag_data(rows=2000, length=24, vocab=200, flip=0.1):
  rng = np.random.RandomState(3)
  tokens = rng.randint(0, vocab, (rows, length))
  score = (tokens < 20).sum(1) - ((tokens >= 20) & (tokens < 40)).sum(1)
  y = (score + 0.5 * rng.randn(rows) > 0).astype(np.int64)
  y = np.where(rng.rand(rows) < flip, 1 - y, y)
  return tokens[:1600], y[:1600], tokens[1600:], y[1600:]


def make_tasks():
  d = skd.load_digits()
  img = (d.images / 16.0)[..., None]
  digits = (img[:1437], d.target[:1437], img[1437:], d.target[1437:])
  x, y = skd.load_diabetes(return_X_y=True)
  perm = np.random.RandomState(0).permutation(len(x))
  x, y = x[perm], y[perm]
  xt, xe = um.standardize(x[:354], x[354:])
  mu, sd = y[:354].mean(), y[:354].std()
  return [
      dict(name="vit", model=ViT(64), base=ViT(16), data=digits, steps=1500, batch=64,
           kind="xent"),
      dict(name="gru", model=GRU(64), base=GRU(16), data=digits, steps=1500, batch=64,
           kind="xent"),
      dict(name="bag", model=Bag(64), base=Bag(16), data=bag_data(), steps=2000, batch=32,
           kind="xent"),
      dict(name="diabetes", model=RegMLP2(128), base=RegMLP2(32),
           data=(xt, (y[:354] - mu) / sd, xe, (y[354:] - mu) / sd), steps=2000, batch=32,
           kind="mse"),
  ]


def main():
  only = [t for t in os.environ.get("TASKS", "").split(";") if t]
  um.audit([t for t in make_tasks() if not only or any(o in t["name"] for o in only)],
           "unseen plain-flax models (second audit)")


if __name__ == "__main__":
  main()
