"""A third audit on models no suite has (twentieth session): what a user gets
from the shipped mulo-m on four more plain linen models, public API only,
against AdamW's LR grid picked on the test split (an oracle, as the suites
tune it). Tasks:
- tied-lm: a char-level transformer LM whose readout is its embedding table
  (nn.Embed.attend, as GPT-2 ties them), width 64, 2 pre-LN blocks, 4 heads,
  learned positions, 32-byte windows of Python's own source
  (recurrent_models.text_data), batch 32, 1,000 steps;
- gn-resnet: a residual CNN with GroupNorm on sklearn's digits (stem conv,
  two residual blocks of GN-ReLU-conv x2, mean pool, Dense 10), width 32,
  batch 64, 1,000 steps;
- autoencoder: an MLP autoencoder of the digits (64-128-16-128-64, ReLU,
  MSE on the pixels), batch 64, 2,000 steps;
- resmlp: a pre-LN residual MLP, 6 blocks of width 128, on make_classification
  (20,000 rows, 40 features, 10 classes, 16,000 / 4,000), batch 128, 2,000 steps.
Seeds vary the init and the batches; the data are fixed. The final train loss
of tied-lm and resmlp is on their first 2,048 training rows.

Run from the repo root: .venv/bin/python results/probes/unseen_models3.py [SEEDS]
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
from recurrent_models import text_data  # noqa: E402


class TiedLM(nn.Module):
  width: int
  vocab: int = 128
  steps: int = 32

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    embed = nn.Embed(self.vocab, self.width)
    h = embed(x.astype(jnp.int32))
    h = h + self.param("pos", nn.initializers.normal(0.02), (self.steps, self.width))
    mask = nn.make_causal_mask(x)
    for _ in range(2):
      h = h + nn.MultiHeadDotProductAttention(num_heads=4)(nn.LayerNorm()(h), mask=mask)
      h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(h))))
    return embed.attend(nn.LayerNorm()(h))


class GNResNet(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.Conv(self.width, (3, 3))(x)
    for _ in range(2):
      r = nn.Conv(self.width, (3, 3))(nn.relu(nn.GroupNorm(num_groups=4)(h)))
      h = h + nn.Conv(self.width, (3, 3))(nn.relu(nn.GroupNorm(num_groups=4)(r)))
    return nn.Dense(10)(nn.relu(nn.GroupNorm(num_groups=4)(h)).mean(axis=(1, 2)))


class AutoEncoder(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.relu(nn.Dense(self.width)(x))
    h = nn.relu(nn.Dense(self.width)(nn.Dense(16)(h)))
    return nn.Dense(64)(h)


class ResMLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.Dense(self.width)(x)
    for _ in range(6):
      h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(self.width)(nn.LayerNorm()(h))))
    return nn.Dense(10)(nn.LayerNorm()(h))


def make_tasks():
  d = skd.load_digits()
  img = (d.images / 16.0)[..., None]
  digits = (img[:1437], d.target[:1437], img[1437:], d.target[1437:])
  flat = (d.data / 16.0).astype(np.float32)
  x, y = skd.make_classification(20000, 40, n_informative=20, n_classes=10,
                                 n_clusters_per_class=2, random_state=7)
  xt, xe = um.standardize(x[:16000], x[16000:])
  return [
      dict(name="tied-lm", model=TiedLM(64), base=TiedLM(16), data=text_data(), steps=1000,
           batch=32, kind="xent", train_eval_rows=2048),
      dict(name="gn-resnet", model=GNResNet(32), base=GNResNet(8), data=digits, steps=1000,
           batch=64, kind="xent"),
      dict(name="autoencoder", model=AutoEncoder(128), base=AutoEncoder(32),
           data=(flat[:1437], flat[:1437], flat[1437:], flat[1437:]), steps=2000, batch=64,
           kind="mse"),
      dict(name="resmlp", model=ResMLP(128), base=ResMLP(32),
           data=(xt.astype(np.float32), y[:16000], xe.astype(np.float32), y[16000:]),
           steps=2000, batch=128, kind="xent", train_eval_rows=2048),
  ]


def main():
  only = [t for t in os.environ.get("TASKS", "").split(";") if t]
  um.audit([t for t in make_tasks() if not only or any(o in t["name"] for o in only)],
           "unseen plain-flax models (third audit)")


if __name__ == "__main__":
  main()
