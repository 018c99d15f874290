"""Time a user's whole jitted training step with AdamW and the shipped LOs mulo-m and mulo-r.

    python scripts/bench_user_step.py              # the five models of issue 22
    python scripts/bench_user_step.py --quick      # tiny sizes, a smoke run (seconds)
    python scripts/bench_user_step.py --models mlp-1024,lm --repeats 9

The models are written as a user writes them in plain flax (``nn.Dense``,
``nn.Conv``, flax attention; the LM is ``meta_tasks.user_tasks.PlainTransformerLM``).
The step is what a training loop jits: sample a batch on device from a dataset
held in device memory, forward and backward, the optimizer's update, and
``optax.apply_updates``; params and optimizer state are donated. Each optimizer
is compiled and warmed up first. Then, ``--repeats`` times, every optimizer in
turn runs ``--steps`` steps (``block_until_ready`` on the last); the table
gives the median ms/step over the repeats and its ratio to AdamW. Interleaving
the optimizers makes the ratios robust to other load on the machine.

Optimizers: ``optax.adamw(1e-3)``; ``mulo-m``, the shipped default LO (an
``AdaptiveLOpt``), and ``mulo-r``, the shipped robust-form ``MLPLOpt`` (mulo-m
until 2026-12-04), both from ``lopt.pretrained_optax``; ``mulo-m-kept`` is
mulo-m with ``keep_invariant_norms=True`` (what holding the norms costs). The LOs get the μP spec
a user gets: ``lopt.mup.infer_kinds`` against a 4x narrower copy of the model.
"""

# No `from __future__ import annotations`: flax modules defined in a file loaded by
# importlib (tests/cli_helpers.load_script) then need no sys.modules entry.
import argparse
import math
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
from training.report import markdown_table

NUM_STEPS = 10_000  # the planned horizon the LOs are told (their cosine is then ~1)
OPTIMIZERS = ("adamw", "mulo-m", "mulo-r", "mulo-m-kept")
DEFAULT_OPTIMIZERS = OPTIMIZERS[:3]


class CNN(nn.Module):
  channels: tuple[int, ...]
  num_outputs: int

  @nn.compact
  def __call__(self, x):
    for i, c in enumerate(self.channels):
      x = nn.relu(nn.Conv(c, (3, 3), strides=2 if i == 0 else 1)(x))
    return nn.Dense(self.num_outputs)(x.mean(axis=(1, 2)))


class Model(NamedTuple):
  name: str
  make: Callable[[int], nn.Module]   # width divisor (1: the model, 4: its narrow copy)
  batch: int
  x_shape: tuple[int, ...]           # one example
  num_outputs: int                   # classes, or the vocabulary of an LM
  lm: bool = False


def models(quick: bool) -> list[Model]:
  """The benchmarked models (``quick``: the same kinds, tiny)."""
  from meta_tasks.user_tasks import PlainMLP, PlainTransformerLM
  q = 8 if quick else 1
  mlp = lambda width, hidden, d_in, out, batch: (  # `hidden` ReLU layers of `width`
      f"MLP {d_in}→{width}×{hidden}→{out}",
      lambda div: PlainMLP(width // div, hidden + 1, out), batch // q, (d_in,), out)
  d, seq, vocab = 128 // q, 64 // q, 256 // q
  return [
      Model(*mlp(1024 // q, 3, 64, 10, 128)),
      Model(*mlp(256 // q, 2, 64, 10, 128)),
      Model(*mlp(256 // q, 2, 30, 2, 64)),
      Model(f"char LM d{d} (flax attention)",
            lambda div: PlainTransformerLM(d // div, 2, 4, seq, vocab), 32 // q, (seq,),
            vocab, lm=True),
      Model(f"CNN {32 // q}/{64 // q} channels", lambda div: CNN((32 // q // div, 64 // q // div),
            10), 128 // q, (32 // q, 32 // q, 3), 10),
  ]


MODEL_KEYS = ("mlp-1024", "mlp-256", "mlp-tabular", "lm", "cnn")


def make_data(model: Model, key: jax.Array, size: int = 4096):
  """A dataset in device memory: (inputs, labels) or a token stream for the LM."""
  kx, ky = jax.random.split(key)
  if model.lm:
    return jax.random.randint(kx, (size * model.x_shape[0],), 0, model.num_outputs)
  x = jax.random.normal(kx, (size, *model.x_shape), jnp.float32)
  return x, jax.random.randint(ky, (size,), 0, model.num_outputs)


def make_loss(model: Model, net: nn.Module):
  """loss(params, data, key): a batch sampled on device, then the mean cross-entropy."""
  def loss(params, data, key):
    if model.lm:
      seq = model.x_shape[0]
      start = jax.random.randint(key, (model.batch, 1), 0, data.shape[0] - seq - 1)
      idx = start + jnp.arange(seq + 1)[None]
      tokens = data[idx]
      inputs, targets = tokens[:, :-1], tokens[:, 1:]
    else:
      idx = jax.random.randint(key, (model.batch,), 0, data[0].shape[0])
      inputs, targets = data[0][idx], data[1][idx]
    logits = net.apply({"params": params}, inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  return loss


def optimizer(name: str, params: Any, narrow_params: Any):
  """The optax transformation ``name`` (one of ``OPTIMIZERS``) for these params."""
  if name == "adamw":
    return optax.adamw(1e-3)
  kinds = lopt.mup.infer_kinds(params, narrow_params)
  if name in ("mulo-m", "mulo-r"):
    return lopt.pretrained_optax(name, num_steps=NUM_STEPS, mup=kinds)
  if name == "mulo-m-kept":  # mulo-m inside lopt.invariant_norms.keep_invariant_norms
    return lopt.pretrained_optax("mulo-m", num_steps=NUM_STEPS, mup=kinds,
                                 keep_invariant_norms=True)
  raise ValueError(f"unknown optimizer {name!r}")


def make_step(loss, tx, pass_loss: bool):
  """The user's jitted training step: (params, opt_state, data, key) -> same, loss.
  ``pass_loss``: give the loss to the update (the LOs take ``loss=``)."""
  def step(params, opt_state, data, key):
    key, sub = jax.random.split(key)
    value, grads = jax.value_and_grad(loss)(params, data, sub)
    extra = {"loss": value} if pass_loss else {}
    updates, opt_state = tx.update(grads, opt_state, params, **extra)
    return optax.apply_updates(params, updates), opt_state, key, value
  return jax.jit(step, donate_argnums=(0, 1))


class Runner:
  """One optimizer on one model: its params, state and compiled step."""

  def __init__(self, model: Model, tx, data, params, pass_loss: bool):
    self.step = make_step(make_loss(model, model.make(1)), tx, pass_loss)
    self.data = data
    self.params = jax.tree_util.tree_map(jnp.array, params)   # own copy (donated)
    # Own buffers for every leaf: an init may alias zeros across leaves (donated).
    self.state = jax.tree_util.tree_map(jnp.array, tx.init(self.params))
    self.key = jax.random.PRNGKey(1)

  def run(self, steps: int) -> float:
    """Seconds per step over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
      self.params, self.state, self.key, value = self.step(self.params, self.state,
                                                           self.data, self.key)
    jax.block_until_ready((self.params, value))
    return (time.perf_counter() - start) / steps


def bench_model(model: Model, names: tuple[str, ...], steps: int, repeats: int,
                warmup: int) -> dict:
  """{optimizer: median seconds per step}, plus "params": the parameter count."""
  net, narrow = model.make(1), model.make(4)
  x = jnp.zeros((1, *model.x_shape), jnp.int32 if model.lm else jnp.float32)
  params = net.init(jax.random.PRNGKey(0), x)["params"]
  narrow_params = narrow.init(jax.random.PRNGKey(0), x)["params"]
  data = make_data(model, jax.random.PRNGKey(2))
  runners = {name: Runner(model, optimizer(name, params, narrow_params), data, params,
                          name != "adamw") for name in names}
  for runner in runners.values():
    runner.run(warmup)   # compile and warm up
  times = {label: [] for label in runners}
  for _ in range(repeats):
    for label, runner in runners.items():
      times[label].append(runner.run(steps))
  out = {label: statistics.median(t) for label, t in times.items()}
  out["params"] = sum(p.size for p in jax.tree_util.tree_leaves(params))
  return out


def table(rows: list[tuple[Model, dict]], labels: list[str]) -> str:
  """The markdown table: ms/step per optimizer and the ratio to AdamW."""
  others = [label for label in labels if label != "adamw"]
  head = ["model", "params", "batch", "AdamW ms/step"] + [
      f"{label} {what}" for label in others for what in ("ms/step", "×AdamW")]
  cells = []
  for model, result in rows:
    n = result["params"]
    size = f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"
    batch = f"{model.batch}×{model.x_shape[0]} tokens" if model.lm else str(model.batch)
    cells.append([model.name, size, batch, f"{1e3 * result['adamw']:.3f}"] + [
        x for label in others
        for x in (f"{1e3 * result[label]:.3f}", f"{result[label] / result['adamw']:.2f}")])
  return "\n".join(markdown_table(head, cells))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (a smoke run)")
  parser.add_argument("--models", default=",".join(MODEL_KEYS),
                      help="comma-separated: " + ", ".join(MODEL_KEYS))
  parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                      help="comma-separated: " + ", ".join(OPTIMIZERS) + " (adamw is always run)")
  parser.add_argument("--steps", type=int, default=None, help="steps per timed repeat")
  parser.add_argument("--repeats", type=int, default=None)
  parser.add_argument("--warmup", type=int, default=3)
  args = parser.parse_args(argv)
  keys = [k for k in args.models.split(",") if k]
  names = ["adamw"] + [o for o in args.optimizers.split(",") if o and o != "adamw"]
  for kind, given, valid in (("model", keys, MODEL_KEYS), ("optimizer", names, OPTIMIZERS)):
    for k in given:
      if k not in valid:
        parser.error(f"unknown {kind} {k!r}; choose from {', '.join(valid)}")
  steps = args.steps or (2 if args.quick else 20)
  repeats = args.repeats or (1 if args.quick else 7)
  warmup = 1 if args.quick else args.warmup
  chosen = dict(zip(MODEL_KEYS, models(args.quick)))

  device = jax.devices()[0]
  print(f"device: {device.device_kind} ({jax.default_backend()}, {jax.local_device_count()} "
        f"device(s), {_cpus()} CPUs), jax {jax.__version__}")
  print(f"whole jitted step, median of {repeats} repeats x {steps} steps"
        f"{' (quick: tiny sizes)' if args.quick else ''}")
  rows, labels = [], None
  for k in keys:
    result = bench_model(chosen[k], tuple(names), steps, repeats, warmup)
    labels = [label for label in result if label != "params"]
    rows.append((chosen[k], result))
    print(f"  {chosen[k].name}: " + ", ".join(
        f"{label} {1e3 * result[label]:.3f} ms" for label in labels), file=sys.stderr)
  print(table(rows, labels))
  return 0


def _cpus() -> int:
  try:
    import os
    return len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    return math.nan


if __name__ == "__main__":
  sys.exit(main())
