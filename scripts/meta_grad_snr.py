#!/usr/bin/env python
"""Does ES see a signal? The meta-gradient's signal and noise over a run.

    python scripts/meta_grad_snr.py WORKDIR [--window 200]

Every outer step estimates ``grad_signal_sq`` (‖ĝ‖² minus the noise: an
unbiased estimate of the squared norm of the gradient being estimated) and
``grad_noise_sq`` (E‖ĝ − g‖², from the spread of the per-pair estimates;
training/estimators.py); each metrics record holds their means over the
outer steps since the previous record. Averaged over windows of outer steps they say how
much of each θ update is signal: a per-step SNR of 0.01 means ~100 outer
steps before the drift beats the random walk, and a signal² whose ±2 s.e.
includes 0 means the run sees none at all. Then more pairs per step (or a
larger σ, or fewer learned parameters) is the lever, not more steps.
Records are not independent: an online estimator's particles (and ES-Single's
ε) persist for an episode, up to max_horizon / truncation_length outer steps,
so a row's s.e. (from the spread of its records) is a lower bound. The last
line pools the rows, with the s.e. from the spread of the row means: use
windows at least that long. Exit status 2 (one line) if the run's metrics
predate these fields.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from training import stats, tracking  # noqa: E402


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir")
  parser.add_argument("--window", type=int, default=200, help="outer steps per row")
  args = parser.parse_args()
  if args.window < 1:
    parser.error(f"--window must be >= 1, got {args.window}")
  rows = stats.signal_noise_windows(tracking.read_metrics(args.workdir), args.window)
  if not rows:
    print(f"{args.workdir}: no grad_signal_sq/grad_noise_sq records (logged since 2026-12-05; "
          "resume the run with the current code to log them).", file=sys.stderr)
    return 2
  print("| outer steps | steps averaged | signal² (± s.e., a lower bound) | noise² | per-step SNR |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['first_step']}–{r['last_step']} | {r['steps']} | {r['signal_sq']:.3g} "
          f"± {r['signal_sq_se']:.2g} | {r['noise_sq']:.3g} | {r['snr']:.3g} |")
  if len(rows) > 1:   # the rows as records of their means: weighted by steps, s.e. from their spread
    pooled = stats.signal_noise_windows(
        [{"step": r["last_step"], "grad_signal_sq_mean": r["signal_sq"],
          "grad_noise_sq_mean": r["noise_sq"], "grad_split_steps": r["steps"]} for r in rows],
        window=rows[-1]["last_step"])[0]
    print(f"| all {len(rows)} rows | {pooled['steps']} | {pooled['signal_sq']:.3g} ± "
          f"{pooled['signal_sq_se']:.2g} (rows' spread) | {pooled['noise_sq']:.3g} | "
          f"{pooled['snr']:.3g} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
