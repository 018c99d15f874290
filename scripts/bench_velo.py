"""Time one VeLO-style update step against optax.adam, in the same run.

    python scripts/bench_velo.py                  # 1M params (CPU default)
    python scripts/bench_velo.py --sizes 1m,100m  # 100M = 24 x (2048x2048 + 2048)

Each size is a stack of dense layers: 1m = 4 x (512x512 + 512), 100m =
24 x (2048x2048 + 2048). Each update is jitted, and the median of --repeats
timed calls after --warmup calls is reported (the timer of bench_update.py).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import optax

from bench_update import time_call  # scripts/ is on sys.path when run as a script
from lopt.velo import VeLOpt

SIZES = {"1m": (4, 512), "10m": (10, 1024), "100m": (24, 2048)}  # (layers, width)


def make_params(layers: int, width: int) -> dict:
  key = jax.random.PRNGKey(0)
  params = {}
  for i in range(layers):
    key, sub = jax.random.split(key)
    params[f"layer_{i}"] = {
        "kernel": jax.random.normal(sub, (width, width), jnp.float32) / width ** 0.5,
        "bias": jnp.zeros((width,), jnp.float32)}
  return params


def time_update(tx: optax.GradientTransformationExtraArgs, params, grads, warmup: int,
                repeats: int) -> float:
  """Median seconds of one jitted ``tx.update`` with ``loss=`` passed (bench_update's timer)."""
  update = jax.jit(lambda g, s, p, loss: tx.update(g, s, p, loss=loss))
  return time_call(update, grads, tx.init(params), params, jnp.asarray(1.0, jnp.float32),
                   warmup=warmup, iters=repeats)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="1m", help=f"comma-separated from {sorted(SIZES)}")
  parser.add_argument("--mup", action="store_true", help="μVeLO (all kernels hidden)")
  parser.add_argument("--lstm-hidden", type=int, default=64)
  parser.add_argument("--num-mlps", type=int, default=16)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()

  lo = VeLOpt(mup=args.mup, lstm_hidden=args.lstm_hidden, num_mlps=args.num_mlps)
  theta = lo.init(jax.random.PRNGKey(0))
  print(f"backend={jax.default_backend()} devices={jax.devices()} {lo}")
  for name in args.sizes.split(","):
    layers, width = SIZES[name]
    params = make_params(layers, width)
    grads = jax.tree_util.tree_map(lambda p: 0.01 * jnp.ones_like(p), params)
    num_params = sum(p.size for p in jax.tree_util.tree_leaves(params))
    kinds = jax.tree_util.tree_map(lambda p: "hidden" if p.ndim == 2 else "vector", params)
    velo_s = time_update(lo.as_optax(theta, num_steps=1000, mup=kinds if args.mup else None),
                         params, grads, args.warmup, args.repeats)
    adam = optax.with_extra_args_support(optax.adam(1e-3))  # accepts (and ignores) loss=
    adam_s = time_update(adam, params, grads, args.warmup, args.repeats)
    print(json.dumps({"size": name, "params": num_params, "velo_ms": round(velo_s * 1e3, 2),
                      "adam_ms": round(adam_s * 1e3, 2), "ratio": round(velo_s / adam_s, 2)}))


if __name__ == "__main__":
  main()
