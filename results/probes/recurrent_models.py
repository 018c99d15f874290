"""Three recurrent models no probe has run (twentieth session), for the
pre-registered test in docs/meta-training-runs.md ("Recurrent models"): does
giving recurrent kernels the step x 1/sqrt(T) (T: the sequence length) beat
mulo-m as is? Plain linen, public API only (lopt.pretrained_optax,
lopt.mup.infer_kinds from a narrower copy, loss= passed). Models:
- lstm: nn.RNN(nn.LSTMCell(64)) over the digits' 8 columns, batch 64, 1,500 steps;
- gru-sum: nn.RNN(nn.GRUCell(64)) over 32 noisy +-1 tokens, label: is their
  (noisy) sum positive; 2,000 / 500 rows, batch 32, 1,500 steps;
- gru-lm: a char-level GRU LM (Embed 64, GRUCell 64, Dense over 128 bytes),
  32-byte windows of Python's own source (textwrap, argparse, string:
  the first 90% for training, the last 10% for test), batch 32, 1,000 steps.
Variants: mulo-m; mulo-m with the recurrent kernels (flax cells' hi/hf/hg/ho,
hr/hz/hn) Kind("hidden", fan_in, 1/sqrt(T)) (the results were made with a
probe-local copy of what lopt.mup.infer_kinds(recurrent_steps=T) now does,
which gives the same kinds); the same with 1/T; AdamW's LR grid
picked on test loss (an oracle, as the suites tune it).

Run from the repo root: .venv/bin/python results/probes/recurrent_models.py [SEEDS]
(RUN="task|variant": one row). results/probes/recurrent_models.sh runs every
row in its own process."""
import argparse as _argparse
import os
import string as _string
import sys
import textwrap as _textwrap

sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import datasets as skd  # noqa: E402

import lopt  # noqa: E402
import unseen_models as um  # noqa: E402

class LSTM(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.RNN(nn.LSTMCell(self.width))(jnp.swapaxes(x[..., 0], 1, 2))  # columns as steps
    return nn.Dense(10)(h[:, -1])


class GRUSum(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    return nn.Dense(2)(nn.RNN(nn.GRUCell(self.width))(x)[:, -1])


class GRULM(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    h = nn.RNN(nn.GRUCell(self.width))(nn.Embed(128, self.width)(x.astype(jnp.int32)))
    return nn.Dense(128)(h)


def sum_data(rows=2500, steps=32):
  rng = np.random.RandomState(5)
  x = (rng.choice([-1.0, 1.0], (rows, steps)) + 0.5 * rng.randn(rows, steps))[..., None]
  y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
  return x[:2000].astype(np.float32), y[:2000], x[2000:].astype(np.float32), y[2000:]


def text_data(steps=32, train_windows=16000, test_windows=500):
  src = "".join(open(m.__file__, encoding="utf-8").read()
                for m in (_textwrap, _argparse, _string))
  codes = np.frombuffer(src.encode("ascii", "replace"), np.uint8).astype(np.int64) % 128
  cut = int(0.9 * len(codes))
  rng = np.random.RandomState(6)

  def windows(lo, hi, n):
    starts = rng.randint(lo, hi - steps - 1, n)
    return np.stack([codes[s:s + steps + 1] for s in starts])
  tr, te = windows(0, cut, train_windows), windows(cut, len(codes), test_windows)
  return tr[:, :-1], tr[:, 1:], te[:, :-1], te[:, 1:]


def make_tasks():
  d = skd.load_digits()
  img = (d.images / 16.0)[..., None]
  digits = (img[:1437], d.target[:1437], img[1437:], d.target[1437:])
  return [
      dict(name="lstm", model=LSTM(64), base=LSTM(16), data=digits, steps=1500, batch=64,
           kind="xent", seq=8),
      dict(name="gru-sum", model=GRUSum(64), base=GRUSum(16), data=sum_data(), steps=1500,
           batch=32, kind="xent", seq=32),
      dict(name="gru-lm", model=GRULM(64), base=GRULM(16), data=text_data(), steps=1000,
           batch=32, kind="xent", seq=32),
  ]


def lo(steps_of_t=None):
  """mulo-m; with ``steps_of_t``, infer_kinds(recurrent_steps=steps_of_t(T)):
  T gives the recurrent kernels 1/sqrt(T), T² gives 1/T."""
  def make(task, params):
    steps = None if steps_of_t is None else steps_of_t(task["seq"])
    kinds = um.kinds(task, params, recurrent_steps=steps)
    return lopt.pretrained_optax("mulo-m", num_steps=task["steps"], mup=kinds)
  return make


LRS = um.ADAMW_LRS + (3e-2,)

VARIANTS = {"mulo-m": lo(), "recurrent 1/sqrt(T)": lo(lambda t: t),
            "recurrent 1/T": lo(lambda t: t * t),
            **{f"adamw {lr}": um.adamw(lr) for lr in LRS}}

if __name__ == "__main__":
  # RUN="task|variant": one row (recurrent_models.sh runs each row in its own
  # process, with a timeout). Models are initialized outside the jitted vmap:
  # the cells' orthogonal init is a QR, and jax 0.10's batched CPU QR inside
  # it deadlocked (gdb: lapack_sgeqrf_ffi waiting in ParallelBatchMap).
  only = os.environ.get("RUN")
  tasks = {t["name"]: t for t in make_tasks()}
  rows = ([only.split("|")] if only else [(t, v) for t in tasks for v in VARIANTS])
  for t, v in rows:
    print(f"  {t:8s} {v:20s} {um.fmt(um.evaluate(tasks[t], VARIANTS[v], init_outside=True))}",
          flush=True)
