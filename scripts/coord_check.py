"""μP coordinate check: do activations and updates stay O(1) as width grows?

Trains each μP model with μAdam (Adam whose per-tensor step is multiplied by
1/fan_in for hidden matrices) and each SP model with plain Adam, at several
widths and the same learning rate, for a few steps on the same batches. Then
reports, per layer and width:

* ``act``:   RMS of the layer's output after training;
* ``dact``:  RMS of its change since init (the quantity μP keeps width-independent);
* ``dw``:    RMS of the last parameter update of that layer's weight.

Under μP the curves are flat in width; under SP with Adam they grow ~linearly.

  python scripts/coord_check.py                       # MLP on digits, widths 64..2048
  python scripts/coord_check.py --model transformer --widths 32,64,128,256
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import meta_tasks
from lopt import baselines

MODELS = ("mlp", "cnn", "transformer")


def make_task(model: str, width: int, parameterization: str, depth: int, batch_size: int):
  if model in ("mlp", "cnn"):
    cls = meta_tasks.ImageMLPTask if model == "mlp" else meta_tasks.ImageCNNTask
    return cls(dataset="digits", width=width, depth=depth, batch_size=batch_size,
               parameterization=parameterization)
  if model == "transformer":
    return meta_tasks.TransformerLMTask(width=width, depth=max(depth - 1, 1), seq_len=32,
                                        batch_size=batch_size, parameterization=parameterization,
                                        max_bytes=500_000)
  raise ValueError(f"Unknown model {model!r}; valid models: {', '.join(MODELS)}.")


def _rms(x) -> float:
  return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))))


def layer_outputs(task, params, inputs) -> dict[str, jax.Array]:
  """Output of every named submodule (flax capture_intermediates), keyed by path."""
  _, inter = task.apply(params, inputs, capture_intermediates=True)
  out = {"/".join(p.key for p in path if hasattr(p, "key") and p.key != "__call__"): value
         for path, value in jax.tree_util.tree_flatten_with_path(inter)[0]}
  out.pop("", None)  # the unnamed top-level entry repeats the readout's output
  return out


def weight_paths(params) -> dict[str, tuple]:
  """Rank >= 2 leaves (the weights) by a readable module path."""
  return {"/".join(str(p.key) for p in path[:-1]): path
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0] if leaf.ndim >= 2}


def run_width(model: str, width: int, parameterization: str, steps: int, lr: float,
              depth: int, batch_size: int, seed: int = 0) -> dict[str, dict[str, float]]:
  """Train one width; return {"act"|"dact"|"dw": {layer: rms}}."""
  task = make_task(model, width, parameterization, depth, batch_size)
  opt = baselines.muadam(lr, mup=task.mup) if parameterization == "mup" else optax.adam(lr)

  @jax.jit
  def run(key):  # one program per width: init, train, and probe
    params = task.init(key)
    probe = task.sample_eval_batch(jax.random.key(10_000), "train")["inputs"]

    def step(carry, t):
      params, state, _ = carry
      k = jax.random.fold_in(jax.random.key(1), t)   # the same batches at every width
      grads = jax.grad(task.loss)(params, task.sample_batch(k), k)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state, updates), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (trained, _, last), _ = jax.lax.scan(step, (params, opt.init(params), zeros),
                                         jnp.arange(steps))
    return layer_outputs(task, params, probe), layer_outputs(task, trained, probe), last

  before, after, last = jax.device_get(run(jax.random.key(seed)))
  leaves = dict(jax.tree_util.tree_flatten_with_path(last)[0])
  return {"act": {k: _rms(v) for k, v in after.items()},
          "dact": {k: _rms(after[k] - before[k]) for k in after},
          "dw": {name: _rms(leaves[path]) for name, path in weight_paths(last).items()}}


def coord_check(model: str = "mlp", widths=(64, 256, 1024), steps: int = 3, lr: float = 0.01,
                depth: int = 3, batch_size: int = 64, seed: int = 0):
  """{parameterization: {width: run_width(...)}} for μP+μAdam and SP+Adam."""
  return {p: {w: run_width(model, w, p, steps, lr, depth, batch_size, seed) for w in widths}
          for p in ("mup", "sp")}


def growth(results, metric: str, layer: str) -> float:
  """RMS at the largest width / RMS at the smallest (1 = width-independent)."""
  by_width = sorted(results.items())
  return by_width[-1][1][metric][layer] / max(by_width[0][1][metric][layer], 1e-30)


def plot(all_results, path: Path, title: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  metrics = [("act", "activation RMS"), ("dact", "RMS of activation change"),
             ("dw", "RMS of last weight update")]
  fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.2 * len(metrics)), squeeze=False)
  for col, (param, label) in enumerate((("mup", "μP + μAdam"), ("sp", "SP + Adam"))):
    results = all_results[param]
    widths = sorted(results)
    for row, (metric, ylabel) in enumerate(metrics):
      ax = axes[row][col]
      for layer in results[widths[0]][metric]:
        ax.plot(widths, [results[w][metric][layer] for w in widths], marker="o", label=layer)
      ax.set_xscale("log", base=2); ax.set_yscale("log")
      ax.set_xlabel("width"); ax.set_ylabel(ylabel); ax.set_title(f"{label}: {ylabel}")
      ax.grid(True, which="both", alpha=0.3)
      if row == 0:
        ax.legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="mlp", choices=MODELS)
  parser.add_argument("--widths", default="64,128,256,512,1024,2048",
                      help="comma-separated widths")
  # Few steps: the coordinate check is about the first updates. Much later, SP
  # nets at large width partly "recover" (dead ReLUs, shrinking Adam steps).
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--lr", type=float, default=0.01)
  parser.add_argument("--depth", type=int, default=3)
  parser.add_argument("--batch-size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join("results", "coord_check"))
  args = parser.parse_args(argv)
  try:
    widths = sorted(int(w) for w in args.widths.split(","))
  except ValueError:
    parser.error(f"--widths must be comma-separated integers, got {args.widths!r}")

  results = coord_check(args.model, widths, args.steps, args.lr, args.depth, args.batch_size,
                        args.seed)
  for param, res in results.items():
    print(f"\n== {param} ({'μAdam' if param == 'mup' else 'Adam'}), lr={args.lr}, "
          f"{args.steps} steps ==")
    for metric in ("act", "dact", "dw"):
      layers = list(res[widths[0]][metric])
      print(f"{metric:>5} {'layer':<28}" + "".join(f"{w:>10}" for w in widths) + "   growth")
      for layer in layers:
        row = "".join(f"{res[w][metric][layer]:>10.3g}" for w in widths)
        print(f"{'':>5} {layer:<28}{row}   x{growth(res, metric, layer):.2f}")
  out = Path(args.out) / "coord_check.png"
  plot(results, out, f"coordinate check: {args.model}, widths {widths[0]}..{widths[-1]}, "
       f"{args.steps} steps, lr {args.lr}")
  print(f"\nwrote {out}")


if __name__ == "__main__":
  main()
