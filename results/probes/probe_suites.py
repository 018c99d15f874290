"""What the one-off probes here share: the tasks a probe runs on, and tuned
AdamW's held-out numbers from the shipped mulo-m's report.

Most probes load the shipped ``mulo-m``, which has changed twice: the hand
rule GradientRestraint was added on 2026-12-04, and ``input_fan_in=19.2`` on
2026-12-05. A probe's ``.txt`` output is of the ``mulo-m`` of its date.
``BEFORE_FAN_IN`` is the ``mulo-m`` of 2026-12-04 to 2026-12-05, which the
input-step probes of 2026-12-05 measured and build on."""
import os

import lopt

BEFORE_FAN_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "candidates",
                             "mulo-m-hidden-restraint")
from meta_tasks import suites


def entries(suite: str) -> list:
  """"screen": screen-user-cpu; "heldout": heldout-user-cpu and the width-512
  task of heldout-width-cpu (the held-out tasks of the shipped report)."""
  if suite == "screen":
    return suites.get_suite("screen-user-cpu")
  if suite == "heldout":
    return suites.get_suite("heldout-user-cpu") + suites.get_suite("heldout-width-cpu")[:1]
  raise ValueError(f"suite must be 'screen' or 'heldout', got {suite!r}.")


# clean_table_kin.py's tables and their tuned AdamW test loss (clean_table_kin.txt, seeds 500..507).
KIN_ADAMW = {"kin-a": 0.2046, "kin-b": 0.3242, "kin-c": 0.5643, "kin-d": 0.3836}


def kin_or_screen(which: str, screen_first: int) -> tuple[list, int]:
  """(entries, first seed): "kin", clean_table_kin.py's kin-a..d from seed 500;
  "screen", screen-user-cpu from ``screen_first``."""
  if which == "kin":
    from clean_table_kin import ENTRIES  # registers the kin tables
    return [e for e in ENTRIES if e.task.dataset in KIN_ADAMW], 500
  if which == "screen":
    return entries("screen"), screen_first
  raise SystemExit("SET must be 'kin' or 'screen'")


def adamw_heldout() -> dict:
  """``task@steps`` -> that task's row of the shipped mulo-m's held-out report
  (checkpoints/mulo-m/metadata.json: adamw_test_loss, adamw_test_accuracy, ...)."""
  report = lopt.load_metadata("mulo-m")["evaluation"]["suites"]
  return {t: r for s in report.values() for t, r in s["tasks"].items()}


def parse_args(default_grid: str) -> tuple[str, list, list]:
  """``SUITE [GRID [SEEDS]]`` from the command line: the suite, a comma-separated
  grid of floats (default ``default_grid``) and seeds 0..SEEDS-1 (default 3)."""
  import sys
  if len(sys.argv) < 2:
    raise SystemExit(f"usage: {sys.argv[0]} screen|heldout [GRID (default {default_grid}) [SEEDS]]")
  grid = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else default_grid).split(",")]
  return sys.argv[1], grid, list(range(int(sys.argv[3]) if len(sys.argv) > 3 else 3))


def sources(defaults: list, args: list | None = None) -> list:
  """[(label, source)] from ``LABEL=SOURCE`` arguments (default: the command
  line's; a checkpoint directory or a shipped name), else ``defaults``."""
  import sys
  return [tuple(a.split("=", 1)) for a in (sys.argv[1:] if args is None else args)] or defaults


def train_step(task, tx, data, k_data, with_grads=False, record=None):
  """The ``lax.scan`` body of one training step of ``task`` under ``tx`` (the
  minibatch loss passed as ``loss=``): carry (params, opt state), xs the step
  index, out the minibatch loss (with ``with_grads``: (loss, gradients); with
  ``record``: (loss, record(updates, params, grads, state, loss)), ``state``
  the optimizer state the update started from)."""
  import jax, optax

  def step(carry, t):
    params, state = carry
    k_batch, k_loss = jax.random.split(jax.random.fold_in(k_data, t))
    batch = task.sample_batch(k_batch, data=data)
    loss, grads = jax.value_and_grad(task.loss)(params, batch, k_loss)
    updates, new_state = tx.update(grads, state, params, loss=loss)
    out = ((loss, grads) if with_grads else
           (loss, record(updates, params, grads, state, loss)) if record else loss)
    return (optax.apply_updates(params, updates), new_state), out

  return step


def replace_rule(lo, rule_class, **changes):
  """``lo`` with the fields ``changes`` of its step rule of class ``rule_class``."""
  import dataclasses
  return dataclasses.replace(lo, step=tuple(
      dataclasses.replace(r, **changes) if isinstance(r, rule_class) else r for r in lo.step))


def broad_screen_variants(header, variants, seeds=4):
  """Prints a table of test losses on screen-broad-cpu (untuned) for
  ``variants`` [(label, LO form, θ)], the first being mulo-m as shipped, with
  each one's geometric mean of the test-loss ratio to it."""
  import math
  from training import evaluation
  entries = suites.get_suite("screen-broad-cpu")
  ev = evaluation.Evaluator(range(seeds), log=lambda line: None)
  print(f"| {header} | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries)
        + " | geo vs mulo-m |")
  print("|---" * (len(entries) + 2) + "|")
  ref = None
  for label, form, theta in variants:
    opt = evaluation.Optimizer(label, checkpoint="mulo-m", lo=form, theta=theta)
    losses = [ev.run(opt, e)["test_loss"] for e in entries]
    ref = ref or losses
    geo = math.exp(sum(math.log(x / r) for x, r in zip(losses, ref)) / len(ref))
    print(f"| {label} | " + " | ".join(f"{x:.3g}" for x in losses) + f" | {geo:.3f} |",
          flush=True)
