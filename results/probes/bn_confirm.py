"""A check of ShapedCosine(decay_exponent=2) on BatchNorm models not used to
find it (rule (3) of its decision, docs/meta-training-runs.md, seventeenth
session): a BatchNorm MLP on a synthetic table and a wider, deeper BatchNorm
CNN with another batch and horizon; mulo-m and the candidate against AdamW's
LR grid, as unseen_models.py; "decay2" anneals every matrix's decay so
(ShapedCosine(decay_exponent=2)), "invdecay" only the scale-invariant ones'
(InvariantDecayCosine). Run from the repo root:
[FOUND=1] .venv/bin/python results/probes/bn_confirm.py [SEEDS]"""
import os
import sys

import flax.linen as nn
import numpy as np
from sklearn import datasets as skd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lopt  # noqa: E402
import unseen_models as um  # noqa: E402

CANDIDATES = {"decay2": "results/candidates/mulo-m-decay-anneal",
              "invdecay": "results/candidates/mulo-m-invariant-decay",
              "normkeep": "results/candidates/mulo-m-norm-keeping"}


class BNMLP(nn.Module):
  width: int
  out: int = 2

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(2):
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(self.width)(x)))
    return nn.Dense(self.out)(x)


class WideBNCNN(nn.Module):
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    for features, stride in ((self.width, 1), (2 * self.width, 2), (2 * self.width, 1)):
      x = nn.Conv(features, (3, 3), strides=stride)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(self.out)(x.mean(axis=(1, 2)))


def tasks():
  """The two check models, then (with FOUND=1) the BatchNorm CNN that found it."""
  x, y = skd.make_classification(1000, 30, n_informative=10, flip_y=0.02, random_state=1)
  xt, xe = um.standardize(x[:800], x[800:])
  d = skd.load_digits()
  img = (d.images / 16.0)[..., None]
  return [dict(name="BatchNorm MLP, synthetic table", model=BNMLP(256), base=BNMLP(32),
               data=(xt, y[:800], xe, y[800:]), steps=2000, batch=64, kind="xent"),
          dict(name="wider BatchNorm CNN, digits", model=WideBNCNN(32), base=WideBNCNN(8),
               data=(img[:1437], d.target[:1437], img[1437:], d.target[1437:]), steps=1500,
               batch=32, kind="xent")] + (
          [t for t in um.make_tasks() if "BatchNorm" in t["name"]]
          if os.environ.get("FOUND") == "1" else [])


def pretrained(source):
  def make(task, params):
    return lopt.pretrained_optax(source, num_steps=task["steps"], mup=um.kinds(task, params))
  return make


def main():
  print(f"BatchNorm models, {um.SEEDS} seeds: test loss / test accuracy / final train loss / "
        "max spike; AdamW's best LR on test marked *", flush=True)
  # TASKS=a;b: only the tasks whose names contain one of these; CANDS=invdecay: only
  # those candidates; NO_ADAMW=1: no AdamW grid (mulo-m against the candidates only).
  only_tasks = [t for t in os.environ.get("TASKS", "").split(";") if t]
  cands = {k: v for k, v in CANDIDATES.items()
           if k in os.environ.get("CANDS", ",".join(CANDIDATES)).split(",")}
  for task in tasks():
    if only_tasks and not any(t in task["name"] for t in only_tasks):
      continue
    print(f"\n{task['name']} ({task['steps']} steps, batch {task['batch']})", flush=True)
    rows = {"mulo-m": um.evaluate(task, pretrained("mulo-m")),
            **{name: um.evaluate(task, pretrained(path)) for name, path in cands.items()}}
    ad = ({} if os.environ.get("NO_ADAMW") == "1" else
          {lr: um.evaluate(task, um.adamw(lr)) for lr in um.ADAMW_LRS})
    best = min(ad, key=lambda lr: ad[lr]["test"] if not ad[lr]["diverged"] else np.inf,
               default=None)
    for name, r in rows.items():
      versus = f"  [{r['test'] / ad[best]['test']:.2f}x tuned AdamW]" if ad else ""
      print(f"  {name:8s} {um.fmt(r)}{versus}", flush=True)
    for lr, r in ad.items():
      print(f"  adamw {lr:g}{'*' if lr == best else ' '} {um.fmt(r)}", flush=True)


if __name__ == "__main__":
  main()
