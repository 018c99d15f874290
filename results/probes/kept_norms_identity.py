"""Clause (1) of keep_invariant_norms' decision rule (docs/meta-training-runs.md,
nineteenth session): on every task of the screen suite and of the held-out
suite, mulo-m wrapped in keep_invariant_norms trains exactly as mulo-m (the
per-step training loss and the final test loss equal bit for bit), i.e. no
tensor of those models is ever held.

Run from the repo root: .venv/bin/python results/probes/kept_norms_identity.py [SEED]

That literal check fails on conv and attention models for any wrapper (the
docs' addendum): the compiled program changes, and with it XLA's rounding.
``... kept_norms_identity.py ratios [SEED]`` runs the checks that replace it:
(1a) per task, the wrapped run's log ratio of every tensor at every update
(all 0: every update is the inner one in exact arithmetic) and the smallest
averaged alignment z met; (1b) a control that is the identity in exact
arithmetic too (the gradient times a traced 1.0 before mulo-m), against
plain mulo-m, beside the wrapper's own difference.
``... kept_norms_identity.py off [SEED]``: check (A) of the second test, on
the conv and attention tasks: the wrapper with holding switched off (its
band moved to z < 2e-30) against the wrapper as shipped, bit for bit."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lopt  # noqa: E402
import probe_suites  # noqa: E402
from lopt.invariant_norms import keep_invariant_norms  # noqa: E402
from training.evaluation import lo_optax  # noqa: E402
from training.sweep import train_curves  # noqa: E402


def traced_one():
  """The gradient times 1.0 computed from the update count (not constant-folded)."""
  return optax.scale_by_schedule(lambda count: 1.0 + 0.0 * count.astype(jnp.float32))


def held_ratios(tx, task, n, seed):
  """(max |log ratio| over tensors and updates, min averaged log z over matrices)."""
  key = jax.random.PRNGKey(seed)
  data = task.data()

  def step(carry, t):
    p, s = carry
    k = jax.random.fold_in(key, t)
    loss, g = jax.value_and_grad(task.loss)(p, task.sample_batch(k, data), k)
    u, s = tx.update(g, s, p, loss=loss)
    worst = jnp.max(jnp.stack([jnp.abs(r) for r in jax.tree.leaves(s.log_ratio)]))
    lowest = jnp.min(jnp.stack(jax.tree.leaves(s.log_z)))
    return (optax.apply_updates(p, u), s), (worst, lowest)

  p0 = task.init(key)
  _, (worst, lowest) = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(n)))(p0)
  return float(jnp.max(worst)), float(jnp.min(lowest))


def ratios(seed):
  lo, theta = lopt.load_pretrained("mulo-m")
  print(f"# seed {seed}: (1a) max |log ratio| over tensors and updates, smallest averaged z "
        f"(the band: 0.002-0.01); (1b) test loss of mulo-m, of the traced-1.0 control and of "
        "the wrapped LO", flush=True)
  all_zero = True
  for suite in ("screen", "heldout"):
    for entry in probe_suites.entries(suite):
      task, n = entry.task, entry.num_steps
      make = lambda: lo_optax(lo, theta, task, n)
      worst, lowest = held_ratios(keep_invariant_norms(make()), task, n, seed)
      all_zero &= worst == 0.0
      tests = [float(train_curves(f, task, n, [seed]).test_loss[0]) for f in (
          lambda _: make(), lambda _: optax.chain(traced_one(), make()),
          lambda _: keep_invariant_norms(make()))]
      print(f"{suite:7s} {task.name[:40]:40s} {n:5d} steps: (1a) {worst:.3g}, z >= "
            f"{np.exp(lowest):.3g}; (1b) test {tests[0]:.6g} / control {tests[1]:.6g} "
            f"({tests[1] / tests[0] - 1:+.2%}) / wrapped {tests[2]:.6g} "
            f"({tests[2] / tests[0] - 1:+.2%})", flush=True)
  print(f"\n(1a) every log ratio 0 at every update on every task: {all_zero}", flush=True)


def suite_tasks(only=None):
  """(suite, task, steps) of the screen and held-out suites; ``only``: name parts."""
  for suite in ("screen", "heldout"):
    for entry in probe_suites.entries(suite):
      if only is None or any(k in entry.task.name for k in only):
        yield suite, entry.task, entry.num_steps


def compare(title, make_a, make_b, seed, only=None) -> bool:
  """Train every task once with ``make_a(task, n)`` and once with ``make_b``;
  print both test losses and whether the runs are identical bit for bit."""
  print(f"# seed {seed}: {title}", flush=True)
  same_all = True
  for suite, task, n in suite_tasks(only):
    a, b = (train_curves(lambda _: make(task, n), task, n, [seed]) for make in (make_a, make_b))
    same = np.array_equal(a.train_loss, b.train_loss) and np.array_equal(a.test_loss, b.test_loss)
    same_all &= same
    print(f"{suite:7s} {task.name[:40]:40s} {n:5d} steps: test {float(a.test_loss[0]):.6g} / "
          f"{float(b.test_loss[0]):.6g}; max |Δ train loss| "
          f"{float(np.max(np.abs(a.train_loss - b.train_loss))):.3g}; "
          f"{'identical' if same else 'DIFFERENT'}", flush=True)
  print(f"\nall identical: {same_all}", flush=True)
  return same_all


def main():
  mode = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in ("off", "ratios") else None
  seed = int(sys.argv[-1]) if len(sys.argv) > (2 if mode else 1) else 0
  if mode == "ratios":
    return ratios(seed)
  lo, theta = lopt.load_pretrained("mulo-m")
  plain = lambda task, n: lo_optax(lo, theta, task, n)
  kept = lambda task, n: keep_invariant_norms(plain(task, n))
  if mode == "off":  # check (A): the wrapper as shipped against holding switched off
    return compare("the wrapper as shipped / with holding switched off", kept,
                   lambda task, n: keep_invariant_norms(plain(task, n), z_hi=2e-30, z_lo=1e-30),
                   seed, only=("cnn", "lm"))
  return compare("mulo-m / mulo-m wrapped in keep_invariant_norms, full length", plain, kept,
                 seed)


if __name__ == "__main__":
  main()
