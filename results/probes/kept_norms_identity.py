"""Clause (1) of keep_invariant_norms' decision rule (docs/meta-training-runs.md,
nineteenth session): on every task of the screen suite and of the held-out
suite, mulo-m wrapped in keep_invariant_norms trains exactly as mulo-m (the
per-step training loss and the final test loss equal bit for bit), i.e. no
tensor of those models is ever held.

Run from the repo root: .venv/bin/python results/probes/kept_norms_identity.py [SEED]"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lopt  # noqa: E402
import probe_suites  # noqa: E402
from lopt.invariant_norms import keep_invariant_norms  # noqa: E402
from training.evaluation import lo_optax  # noqa: E402
from training.sweep import train_curves  # noqa: E402


def main():
  seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
  lo, theta = lopt.load_pretrained("mulo-m")
  print(f"# seed {seed}: mulo-m against mulo-m wrapped in keep_invariant_norms, full length",
        flush=True)
  same_all = True
  for suite in ("screen", "heldout"):
    for entry in probe_suites.entries(suite):
      task, n = entry.task, entry.num_steps
      plain = train_curves(lambda _: lo_optax(lo, theta, task, n), task, n, [seed])
      kept = train_curves(lambda _: keep_invariant_norms(lo_optax(lo, theta, task, n)), task, n,
                          [seed])
      same = (np.array_equal(plain.train_loss, kept.train_loss)
              and np.array_equal(plain.test_loss, kept.test_loss))
      same_all &= same
      print(f"{suite:7s} {task.name[:40]:40s} {n:5d} steps: test {float(plain.test_loss[0]):.6g} / "
            f"{float(kept.test_loss[0]):.6g}; max |Δ train loss| "
            f"{float(np.max(np.abs(plain.train_loss - kept.train_loss))):.3g}; "
            f"{'identical' if same else 'DIFFERENT'}", flush=True)
  print(f"\nall identical: {same_all}", flush=True)


if __name__ == "__main__":
  main()
