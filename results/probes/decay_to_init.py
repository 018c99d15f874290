"""Does weight decay toward the initial weights hold back the small tables
without ruining the image tasks, as decay toward 0 does?

Decay from step 1 is the one restraint that has won the small tables: mulo-m
with its WeightDecay coefficient 0.1 -> 0.3 reads 0.84-0.99x tuned AdamW on the
kin tables, but the same decay ruins the CNN (0.189 -> 0.914), the digits MLP
and the LM (docs/meta-training-runs.md, a28's probes). Decay toward 0 shrinks
the random init itself: under μP a hidden layer's features live in its init,
so the image tasks lose their features. Tuned AdamW on breast cancer picks the
smallest LR of its grid and stays near its init: its regularization is the
distance from init, not from 0. This probe pulls toward a·p0 instead of 0 (p0
the params at the first update; a = 0 is mulo-m as shipped, a = 1 decay
toward init; "L2-SP" in transfer learning), at the LO's own decay size
(wd · lr per tensor, with its learned and adaptive multipliers), its
coefficient scaled by C.

    .venv/bin/python results/probes/decay_to_init.py SET [ANCHORS [SEEDS [COEFS]]]
SET: "kin" (clean_table_kin.py's kin-a..d, seeds 500..) or "screen"
(screen-user-cpu, seeds 700..). ANCHORS: the grid of a (default 0,1), one
compiled sweep per task and coefficient; COEFS the WeightDecay coefficients
(default 0.1,0.3,1). Run from the repository root (2-core CPU).

How: ``lopt.step_rules.apply`` is patched for the probe to subtract
wd · lr · (p - a·p0); a wrapper transformation keeps p0 and hands it, tensor
by tensor in flatten order, to the patched function (the adaptive LO calls it
once per tensor in that order while tracing).
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
from lopt import step_rules
from lopt.step_rules import WeightDecay
from training.evaluation import lo_optax
from training.sweep import Sweep

sys.path.insert(0, "results/probes")
import probe_suites  # noqa: E402

KIN_ADAMW = probe_suites.KIN_ADAMW

_PENDING = []        # [(p0 leaf, a)] for the tensors of the update being traced
_original_apply = step_rules.apply


def _anchored_apply(rules, theta, step, ctx):
  if not _PENDING:
    return _original_apply(rules, theta, step, ctx)
  p0, a = _PENDING.pop(0)
  step = step_rules.run(rules, theta, step, ctx)
  u = step.direction * step.lr
  p = jnp.asarray(ctx.p, jnp.float32)
  if step_rules.decays(step.wd, jnp.ndim(ctx.p)):
    u = u - (step.wd * step.lr) * (p - a * jnp.asarray(p0, jnp.float32))
  return u.astype(jnp.result_type(ctx.p))


step_rules.apply = _anchored_apply


def anchored(inner, a):
  """``inner`` (an adaptive LO's optax transformation) decaying toward a·p0."""
  def init(params):
    return inner.init(params), jax.tree.map(jnp.copy, params)

  def update(grads, state, params=None, **extra):
    inner_state, p0 = state
    assert not _PENDING
    _PENDING.extend((leaf, a) for leaf in jax.tree.leaves(p0))
    u, inner_state = inner.update(grads, inner_state, params, **extra)
    assert not _PENDING, "the LO did not apply one step per tensor"
    return u, (inner_state, p0)

  return optax.GradientTransformationExtraArgs(init, update)


if __name__ == "__main__":
  which = sys.argv[1]
  anchors = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0,1").split(",")]
  nseeds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
  coefs = [float(x) for x in (sys.argv[4] if len(sys.argv) > 4 else "0.1,0.3,1").split(",")]
  entries, first = probe_suites.kin_or_screen(which, 700)
  lo0, theta = lopt.load_pretrained("mulo-m")
  seeds = list(range(first, first + nseeds))
  print(f"{which}: mulo-m decaying toward a*p0, a in {anchors}, WeightDecay coef in {coefs} "
        f"(shipped: a 0, coef 0.1), seeds {seeds[0]}..{seeds[-1]}: test loss / test accuracy / "
        "max spike / final train loss (means over seeds); ratio to shipped", flush=True)
  for e in entries:
    task, steps = e.task, e.num_steps
    cells, ref = [], None
    for c in coefs:
      lo = probe_suites.replace_rule(lo0, WeightDecay, coef=c)
      make = lambda a, lo=lo: anchored(lo_optax(lo, theta, task, steps), a)
      res = Sweep(make, task, steps, grid=True)(jnp.asarray(anchors, jnp.float32), seeds)
      acc = (res.test_accuracy if res.test_accuracy is not None
             else np.full(res.test_loss.shape, np.nan))
      for i, a in enumerate(anchors):
        tl = float(np.mean(res.test_loss[i]))
        ref = ref if ref is not None else tl
        cells.append(f"c {c:g} a {a:g} {tl:.4f} / {np.nanmean(acc[i]):.3f} / "
                     f"{np.max(res.max_spike[i]):.2f} / {np.mean(res.final_train_loss[i]):.2g} "
                     f"({tl / ref:.3f}x)")
    adamw = KIN_ADAMW.get(getattr(task, "dataset", None)) if which == "kin" else None
    tail = f" | tuned AdamW {adamw:.4f}" if adamw else ""
    print(f"{task.name}@{steps}: " + " | ".join(cells) + tail, flush=True)
