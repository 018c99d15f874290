"""Why does mulo-m underfit the BatchNorm CNN of unseen_models.py (train loss
0.12 against tuned AdamW's 0.003)? The same task and seeds with parts of the
LO changed: its step multiplier, the hidden group's GradientRestraint off,
θ = 0 (the hand-designed form), and the μP kinds it was given.

Run from the repo root: .venv/bin/python results/probes/bn_cnn.py [SEEDS]
"""
import os
import sys

import jax
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lopt  # noqa: E402
import probe_suites  # noqa: E402
import unseen_models as um  # noqa: E402
import dataclasses  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from lopt import step_rules  # noqa: E402
from lopt.adaptive import TENSOR_FEATURES, GradientRestraint, ShapedCosine  # noqa: E402


@dataclasses.dataclass(frozen=True)
class SquaredDecaySchedule(ShapedCosine):
  """The decoupled decay annealed by the schedule's factor squared (the step
  by the factor): a scale-invariant kernel (behind a normalization layer)
  settles at a norm ∝ sqrt(step / decay), which then stays put while the
  step anneals, instead of shrinking with it under BatchNorm's running
  statistics."""

  def __call__(self, theta, step, ctx):
    factor = step_rules.cosine_factor(ctx.count, ctx.num_steps)
    if factor is None:
      return step
    f = factor ** jnp.exp(theta["log_shape"])
    return step._replace(lr=step.lr * f, wd=None if step.wd is None else step.wd * f)


@dataclasses.dataclass(frozen=True)
class RelativeRestraint(GradientRestraint):
  """GradientRestraint on the gradient in units of the tensor's own scale,
  r = (rms g · rms p) / (rms g₁ · rms p₁): behind a normalization layer a
  kernel's gradient falls as 1/|p| while |p| grows, which r ignores."""

  def multipliers(self, theta, feats, group):
    log_r = (3.0 * feats[TENSOR_FEATURES.index("grad_trend")]
             + feats[TENSOR_FEATURES.index("param_trend")])
    alpha, beta = self.hand(group)
    expo = jnp.maximum(jnp.stack([alpha + theta["alpha"][group],
                                  beta + theta["beta"][group]]), 0.0)
    return jnp.exp(jnp.clip(expo * jnp.minimum(log_r, 0.0), -np.log(self.bound), 0.0))

LO, THETA = lopt.load_pretrained("mulo-m")
TASK = next(t for t in um.make_tasks() if "CNN" in t["name"])


def kinds_of(task, params):
  base = task["base"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2],
                           train=False)["params"]
  return lopt.mup.infer_kinds(params, base)


def variant(lo=LO, theta=THETA, mult=1.0):
  def make(task, params):
    tx = lo.as_optax(theta, num_steps=task["steps"], mup=kinds_of(task, params))
    return tx if mult == 1.0 else optax.chain(tx, optax.scale(mult))
  return make


def main():
  params = TASK["model"].init({"params": jax.random.PRNGKey(0)}, TASK["data"][0][:2],
                              train=False)["params"]
  print("kinds:", jax.tree_util.tree_map_with_path(
      lambda p, k: f"{jax.tree_util.keystr(p)}:{k}", kinds_of(TASK, params)), flush=True)
  no_restraint = probe_suites.replace_rule(LO, GradientRestraint, alpha=0.0, beta=0.0)
  only = os.environ.get("ONLY")  # ";"-separated variant names to run
  variants = {
      "mulo-m": variant(),
      "mulo-m x3": variant(mult=3.0),
      "mulo-m x10": variant(mult=10.0),
      "mulo-m, no restraint": variant(lo=no_restraint),
      "theta=0 (hand form)": variant(theta=LO.init(jax.random.PRNGKey(0))),
      "theta=0, no restraint": variant(lo=no_restraint, theta=LO.init(jax.random.PRNGKey(0))),
      "mulo-m, relative restr.": variant(lo=dataclasses.replace(LO, step=tuple(
          RelativeRestraint(**{f.name: getattr(r, f.name) for f in dataclasses.fields(r)})
          if isinstance(r, GradientRestraint) else r for r in LO.step))),
      "mulo-m, decay x schedule^2": variant(lo=dataclasses.replace(LO, step=tuple(
          SquaredDecaySchedule() if isinstance(r, ShapedCosine) else r for r in LO.step))),
      "adamw 1e-2": um.adamw(1e-2),
      "adamw 1e-2 cosine": lambda task, params: optax.adamw(
          optax.cosine_decay_schedule(1e-2, task["steps"])),
  }
  print(f"{TASK['name']}, {um.SEEDS} seeds: test loss / test accuracy / final train loss / "
        "max spike", flush=True)
  for name, make in variants.items():
    if only and name not in only.split(";"):
      continue
    print(f"  {name:22s} {um.fmt(um.evaluate(TASK, make))}", flush=True)


if __name__ == "__main__":
  main()
