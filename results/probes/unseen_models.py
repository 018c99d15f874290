"""An audit on models no suite has: what a user gets from the shipped mulo-m
on plain flax linen models with LayerNorm, dropout and BatchNorm, on small
data trained long, against AdamW at its default LR and at the LR that is best
on the test split (an oracle, as the suites tune it).

Written the way a user would write it: the public API only
(``lopt.pretrained_optax``, ``lopt.mup.infer_kinds`` from a narrower copy of
the model, ``loss=`` passed), nothing from meta_tasks or training. Tasks:
- table: sklearn's make_classification (500 rows, 20 features, 5% flipped
  labels; 400 train / 100 test), MLP 128-LN-GELU-dropout 0.1 ×2, batch 32,
  3,000 steps (memorized within a few hundred);
- friedman: sklearn's make_friedman1 regression (300 rows, noise 1.0;
  240 / 60), MLP 256 ×3 ReLU, MSE, batch 32, 3,000 steps;
- bn-cnn: sklearn's digits (8×8; 1437 / 360), Conv 16 - BN - ReLU - Conv 32
  stride 2 - BN - ReLU - mean pool - Dense 10, batch 64, 1,000 steps.
Seeds vary the init, the batches and dropout; the data are fixed.

Run from the repo root: .venv/bin/python results/probes/unseen_models.py [SEEDS]
"""
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import datasets as skd

import lopt

SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 4
ADAMW_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


class TableMLP(nn.Module):
  width: int
  out: int

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(2):
      x = nn.Dense(self.width)(x)
      x = nn.gelu(nn.LayerNorm()(x))
      x = nn.Dropout(0.1, deterministic=not train)(x)
    return nn.Dense(self.out)(x)


class RegMLP(nn.Module):
  width: int
  out: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    for _ in range(3):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.out)(x)[:, 0]


class BNCNN(nn.Module):
  width: int
  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.width, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    x = nn.Conv(2 * self.width, (3, 3), strides=2)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(self.out)(x.mean(axis=(1, 2)))


def standardize(tr, te):
  mu, sd = tr.mean(0), tr.std(0) + 1e-8
  return (tr - mu) / sd, (te - mu) / sd


def make_tasks():
  x, y = skd.make_classification(500, 20, n_informative=8, flip_y=0.05, random_state=0)
  xt, xe = standardize(x[:400], x[400:])
  table = dict(name="table (LN, dropout)", model=TableMLP(128, 2), base=TableMLP(32, 2),
               data=(xt, y[:400], xe, y[400:]), steps=3000, batch=32, kind="xent")
  x, y = skd.make_friedman1(300, noise=1.0, random_state=0)
  xt, xe = standardize(x[:240], x[240:])
  mu, sd = y[:240].mean(), y[:240].std()
  friedman = dict(name="friedman regression", model=RegMLP(256), base=RegMLP(32),
                  data=(xt, (y[:240] - mu) / sd, xe, (y[240:] - mu) / sd), steps=3000, batch=32,
                  kind="mse")
  d = skd.load_digits()
  x = (d.images / 16.0)[..., None]
  cnn = dict(name="digits CNN (BatchNorm)", model=BNCNN(16), base=BNCNN(4),
             data=(x[:1437], d.target[:1437], x[1437:], d.target[1437:]), steps=1000, batch=64,
             kind="xent")
  return [table, friedman, cnn]


def loss_fn(kind, out, y):
  if kind == "mse":
    return jnp.mean(jnp.square(out - y))
  return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


def init(task, seed):
  key = jax.random.PRNGKey(seed)
  return task["model"].init({"params": key, "dropout": key}, jnp.asarray(task["data"][0][:2]),
                            train=False)


def run(task, make_tx, seed, variables=None):
  """(per-step minibatch losses, final train loss, test loss, test accuracy).
  ``variables``: the model's, made outside (``init``); None: made here."""
  model, kind = task["model"], task["kind"]
  xt, yt, xe, ye = (jnp.asarray(a) for a in task["data"])
  yt = yt.astype(jnp.float32 if kind == "mse" else jnp.int32)
  ye = ye.astype(yt.dtype)
  key = jax.random.PRNGKey(seed)
  if variables is None:
    variables = init(task, seed)
  params = variables["params"]
  extra = {k: v for k, v in variables.items() if k != "params"}
  tx = make_tx(task, params)
  opt_state = tx.init(params)

  def apply(p, extra, x, train, rng):
    out, new = model.apply({"params": p, **extra}, x, train=train, rngs={"dropout": rng},
                           mutable=list(extra) if train else [])
    return out, (new if train else extra)

  def step(carry, t):
    p, extra, s = carry
    k = jax.random.fold_in(key, t)
    idx = jax.random.choice(k, xt.shape[0], (task["batch"],), replace=False)

    def f(p):
      out, new = apply(p, extra, xt[idx], True, jax.random.fold_in(k, 1))
      return loss_fn(kind, out, yt[idx]), new
    (loss, new_extra), g = jax.value_and_grad(f, has_aux=True)(p)
    u, s = tx.update(g, s, p, loss=loss)
    return (optax.apply_updates(p, u), new_extra, s), loss

  (p, extra, _), losses = jax.lax.scan(step, (params, extra, opt_state),
                                       jnp.arange(task["steps"]))
  rows = task.get("train_eval_rows")  # the final train loss on the first rows only
  out_t, _ = apply(p, extra, xt[:rows], False, key)
  out_e, _ = apply(p, extra, xe, False, key)
  acc = (jnp.nan if kind == "mse" else jnp.mean(jnp.argmax(out_e, -1) == ye))
  return losses, loss_fn(kind, out_t, yt[:rows]), loss_fn(kind, out_e, ye), acc


def kinds(task, params, **infer_kw):
  """The μP spec of ``params``, inferred from the task's narrow copy
  (``infer_kw``: more arguments of infer_kinds, e.g. recurrent_steps)."""
  base = task["base"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2],
                           train=False)["params"]
  return lopt.mup.infer_kinds(params, base, **infer_kw)


def mulo_m(task, params):
  return lopt.pretrained_optax("mulo-m", num_steps=task["steps"], mup=kinds(task, params))


def mulo_m_step(mult):
  """mulo_m with its one knob, ``step_mult``, at ``mult``."""
  return lambda task, params: lopt.pretrained_optax(
      "mulo-m", num_steps=task["steps"], step_mult=mult, mup=kinds(task, params))


def lo_optax(lo, theta):
  """The learned optimizer ``lo`` at ``theta`` (e.g. mulo-m's θ with a part zeroed)."""
  return lambda task, params: lo.as_optax(theta, num_steps=task["steps"],
                                          mup=kinds(task, params))


def scale_where(make_tx, pick, mult):
  """``make_tx``'s transformation with its update × ``mult`` on the params whose
  path (a list of names) ``pick`` accepts."""
  def make(task, params):
    mults = jax.tree_util.tree_map_with_path(
        lambda p, _: mult if pick([str(getattr(k, "key", k)) for k in p]) else 1.0, params)
    return optax.chain(make_tx(task, params), optax.GradientTransformation(
        lambda p: optax.EmptyState(),
        lambda u, s, p=None: (jax.tree_util.tree_map(lambda a, m: a * m, u, mults), s)))
  return make


def adamw(lr):
  return lambda task, params: optax.adamw(lr)


def evaluate(task, make_tx, init_outside=False):
  """``init_outside``: init each seed's model eagerly, outside the vmapped jit.
  flax's RNN cells init their recurrent kernels orthogonally (a QR), and jax
  0.10's batched CPU QR inside the jitted vmap deadlocked on this 2-core
  machine (recurrent_models.py)."""
  seeds = jnp.arange(SEEDS)
  if init_outside:
    variables = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                       *[init(task, int(s)) for s in seeds])
    fn = jax.jit(jax.vmap(lambda s, v: run(task, make_tx, s, v)))
    losses, train, test, acc = fn(seeds, variables)
  else:
    losses, train, test, acc = jax.jit(jax.vmap(lambda s: run(task, make_tx, s)))(seeds)
  losses = np.asarray(losses)
  spike = float(np.max(losses / losses[:, :1]))
  ok = np.all(np.isfinite(losses))
  return dict(test=float(np.mean(test)), acc=float(np.mean(acc)), train=float(np.mean(train)),
              spike=spike, diverged=not ok)


def fmt(r):
  acc = "" if np.isnan(r["acc"]) else f" / {r['acc']:.3f}"
  div = " DIVERGED" if r["diverged"] else ""
  return f"{r['test']:.4f}{acc} / {r['train']:.2g} / {r['spike']:.2f}{div}"


def audit(tasks, title="unseen plain-flax models"):
  """mulo-m on each task against AdamW's LR grid, one block per task."""
  print(f"{title}, {SEEDS} seeds: test loss / test accuracy / final train loss "
        "/ max spike (max minibatch loss ÷ first); AdamW (optax.adamw, wd 1e-4, constant LR) at "
        f"LRs {ADAMW_LRS}, its best by test loss marked *", flush=True)
  for task in tasks:
    lo = evaluate(task, mulo_m, init_outside=True)
    print(f"  ({task['name']}: mulo-m {fmt(lo)}; AdamW's grid next)", flush=True)
    ad = {lr: evaluate(task, adamw(lr), init_outside=True) for lr in ADAMW_LRS}
    best = min(ad, key=lambda lr: ad[lr]["test"] if not ad[lr]["diverged"] else np.inf)
    print(f"\n{task['name']} ({task['steps']} steps): mulo-m {fmt(lo)}  "
          f"[{lo['test'] / ad[best]['test']:.2f}x tuned AdamW, "
          f"{lo['test'] / ad[1e-3]['test']:.2f}x AdamW 1e-3]", flush=True)
    for lr, r in ad.items():
      print(f"  adamw {lr:g}{'*' if lr == best else ' '} {fmt(r)}", flush=True)


if __name__ == "__main__":
  audit(make_tasks())
