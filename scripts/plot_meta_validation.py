#!/usr/bin/env python
"""Plot a meta-training run's meta-validation score against outer step.

    python scripts/plot_meta_validation.py results/meta-runs/mulo-a-cpu [--out curve.png]

Reads WORKDIR/metrics.jsonl (the ``meta_valid/score`` records written every
``validate_every`` outer steps, training/meta_validation.py). The score is the
geometric mean over the validation suite's tasks of test loss ÷ θ₀'s test loss:
θ₀, the run's start (the untrained LO, or the warm start ``init_theta`` that
WORKDIR/config.json names), is the dashed line at 1.0 (and the point at outer
step 0); below it, meta-training is helping. Where a record has
``meta_valid/score_se`` (the standard error over the validation seeds), the
point has a ±1 s.e. bar: a step whose bar crosses 1.0 is within seed noise of
θ₀. The best step (the one exported to WORKDIR/export_best) is marked. Default output: WORKDIR/meta_validation.png.
Exit status 2 (one line) when the workdir has no metrics.jsonl or no
meta-validation record.
"""

from __future__ import annotations

import argparse
import os
import sys

SCORE = "meta_valid/score"
SCORE_SE = "meta_valid/score_se"


def read_curve(workdir: str) -> tuple[list[int], list[float], int | None]:
  """(steps, scores, best step), θ₀'s (0, 1.0) first; best None if θ₀ stays best.
  A later record of the same step (a re-run after a resume) replaces the earlier."""
  from training.tracking import read_metrics
  by_step = {int(r["step"]): float(r[SCORE]) for r in read_metrics(workdir)
             if isinstance(r, dict) and isinstance(r.get(SCORE), (int, float))}
  steps = [0] + sorted(by_step)
  scores = [1.0] + [by_step[s] for s in steps[1:]]
  best_score, best = min(zip(scores[1:], steps[1:]), default=(1.0, None))  # ties: earliest
  return steps, scores, best if best_score < 1.0 else None


def read_standard_errors(workdir: str) -> dict[int, float]:
  """{outer step: the score's standard error} of the records that have one."""
  from training.tracking import read_metrics
  return {int(r["step"]): float(r[SCORE_SE]) for r in read_metrics(workdir)
          if isinstance(r, dict) and isinstance(r.get(SCORE), (int, float))
          and isinstance(r.get(SCORE_SE), (int, float))}


def start_label(workdir: str) -> str:
  """The legend of θ₀'s line: the warm start ``init_theta`` of WORKDIR/config.json
  if the run has one, else the untrained start (also without a readable config)."""
  import json
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      init = json.load(f).get("init_theta")
  except (OSError, ValueError, AttributeError):
    init = None
  return f"θ₀ (warm start: {init}) = 1" if init else "θ₀ (untrained start) = 1"


def plot(workdir: str, out: str) -> str:
  import matplotlib
  matplotlib.use("Agg")  # headless; must precede pyplot
  import matplotlib.pyplot as plt

  steps, scores, best = read_curve(workdir)
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  ax.axhline(1.0, color="gray", ls="--", lw=1, label=start_label(workdir))
  ax.plot(steps, scores, marker="o", ms=3, lw=1.5, label="meta-validation score")
  se = read_standard_errors(workdir)
  if se:
    xs = [s for s in steps if s in se]
    ax.errorbar(xs, [scores[steps.index(s)] for s in xs], yerr=[se[s] for s in xs], ls="",
                capsize=3, color="tab:blue", lw=1, label="± 1 s.e. over validation seeds")
  if best is not None:
    ax.plot([best], [scores[steps.index(best)]], marker="*", ms=14, color="tab:red", ls="",
            label=f"best: step {best}, {scores[steps.index(best)]:.3f} (export_best)")
  ax.set(xlabel="outer step", ylabel="geo. mean test loss ÷ θ₀'s (lower is better)")
  ax.set_title(f"Meta-validation of {os.path.basename(os.path.abspath(workdir))}", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="plot_meta_validation.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("workdir")
  parser.add_argument("--out", default=None, help="PNG path (default WORKDIR/meta_validation.png)")
  args = parser.parse_args(argv)
  if not os.path.isfile(os.path.join(args.workdir, "metrics.jsonl")):
    print(f"error: {args.workdir} has no metrics.jsonl; is it a meta-training workdir?",
          file=sys.stderr)
    return 2
  steps, _, _ = read_curve(args.workdir)
  if len(steps) == 1:
    print(f"error: {args.workdir}/metrics.jsonl has no {SCORE} record; run with "
          "--validate_every N to record meta-validation.", file=sys.stderr)
    return 2
  out = plot(args.workdir, args.out or os.path.join(args.workdir, "meta_validation.png"))
  print(f"Wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
