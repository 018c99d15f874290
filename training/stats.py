"""Statistics of evaluation results: tuning grids and choices, curve windows,
speedups and ranks. Pure functions of numbers, tested on hand-made inputs.

* speedup over tuned AdamW: on the seed-median curves smoothed by a trailing
  mean over ``SMOOTH_FRACTION`` of the points, the first step at which AdamW's
  curve is <= the optimizer's final value, divided by the optimizer's number
  of steps. Never reached: ``>`` AdamW's steps / the optimizer's (a lower
  bound); reached at the first stored point: ``<`` that step / the
  optimizer's (an upper bound). AdamW itself is 1 by definition.
* rank: per task, by mean **test loss** (diverged last, ties share the average
  rank); averaged over the tasks of a suite.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

MAX_CURVE_POINTS = 200
# The reported runs' test loss is measured at about this many points along
# training (every num_steps // TEST_CURVE_POINTS updates): a test loss that
# climbs back while the training loss falls shows in the report's plots.
TEST_CURVE_POINTS = 50
SMOOTH_FRACTION = 0.05
STEP_MULT_SPACING = 0.25   # decades between points of the step-multiplier grid


def step_mult_grid(points: int) -> list[float]:
  """``points`` step multipliers 10^(k/4) around 1 (1 included; odd counts are
  symmetric, even ones have one more point below 1): 7 points span 0.18-5.6."""
  if points < 1:
    raise ValueError(f"points must be >= 1, got {points}.")
  low = -(points // 2)
  return [float(f"{10 ** (STEP_MULT_SPACING * k):.4g}") if k else 1.0
          for k in range(low, low + points)]



def subsample_grid(grid: Sequence[float], points: Optional[int]) -> list[float]:
  """``points`` evenly spaced entries of ``grid`` (ends included); all if None."""
  grid = list(grid)
  if points is None or points >= len(grid):
    return grid
  if points < 1:
    raise ValueError(f"lr_grid_points must be >= 1, got {points}.")
  if points == 1:
    return [grid[len(grid) // 2]]
  idx = np.unique(np.round(np.linspace(0, len(grid) - 1, points)).astype(int))
  return [grid[i] for i in idx]


def pick_lr(lrs: Sequence[float], final_losses: np.ndarray) -> int:
  """Index of the LR with the lowest mean final loss over seeds ([lr, seed]).

  Non-finite losses count as +inf for the whole LR; ties go to the smaller LR;
  if every LR is +inf, the smallest LR.
  """
  losses = np.where(np.isfinite(final_losses), final_losses, np.inf)
  means = losses.mean(axis=-1)
  order = np.argsort(np.asarray(lrs, np.float64), kind="stable")
  return int(order[np.argmin(means[order])])  # argmin: the first of equal means


def window_means(curve: np.ndarray, max_points: int = MAX_CURVE_POINTS
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values): means of ``curve[..., N]`` over <= max_points consecutive
  windows covering all N steps; each labelled by its last step (1-based)."""
  n = curve.shape[-1]
  points = min(n, max_points)
  bounds = np.round(np.linspace(0, n, points + 1)).astype(int)
  sums = np.add.reduceat(curve, bounds[:-1], axis=-1)
  return bounds[1:], sums / np.diff(bounds)


def seed_median(curves: np.ndarray) -> np.ndarray:
  """Median over the seed axis (-2) with non-finite values as +inf (= worst)."""
  return np.median(np.where(np.isfinite(curves), curves, np.inf), axis=-2)


def trailing_mean(values: np.ndarray, width: int) -> np.ndarray:
  out = np.empty_like(values, dtype=np.float64)
  for i in range(values.shape[-1]):
    out[..., i] = values[..., max(0, i - width + 1):i + 1].mean(axis=-1)
  return out


def smooth_width(num_points: int) -> int:
  return max(1, int(round(SMOOTH_FRACTION * num_points)))


def speedup(ref_steps: np.ndarray, ref_curve: np.ndarray, steps: np.ndarray,
            curve: np.ndarray, smooth: Optional[int] = None) -> dict[str, Any]:
  """Speedup of ``curve`` over the reference (see the module docstring).

  Curves are the seed-median window means with their step labels. Returns
  ``{"value", "bound", "reference_steps"}``: bound "=" exact, ">" lower bound
  (the reference never reached the final loss), "<" upper bound (reached at its
  first point); value None if the optimizer diverged.
  """
  def smoothed(c):
    return trailing_mean(np.asarray(c, np.float64), smooth or smooth_width(len(c)))
  target = smoothed(curve)[-1]
  num_steps = float(steps[-1])
  if not np.isfinite(target):
    return {"value": None, "bound": None, "reference_steps": None}
  reached = np.nonzero(smoothed(ref_curve) <= target)[0]
  if reached.size == 0:
    return {"value": float(ref_steps[-1]) / num_steps, "bound": ">", "reference_steps": None}
  first = int(reached[0])
  bound = "<" if first == 0 else "="
  return {"value": float(ref_steps[first]) / num_steps, "bound": bound,
          "reference_steps": int(ref_steps[first])}


def average_ranks(losses: Sequence[float]) -> list[float]:
  """1 = lowest loss; non-finite last; ties share the average of their ranks."""
  from scipy.stats import rankdata
  vals = [v if v is not None and math.isfinite(v) else math.inf for v in losses]
  return [float(r) for r in rankdata(vals, method="average")]



def finite_or_none(x: Any) -> Any:
  """JSON-ready: numpy -> Python, non-finite floats -> None (results.json is strict JSON)."""
  if isinstance(x, dict):
    return {k: finite_or_none(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [finite_or_none(v) for v in x]
  if isinstance(x, np.ndarray):
    return finite_or_none(x.tolist())
  if isinstance(x, (np.bool_, bool)):
    return bool(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def mean_or_inf(x: np.ndarray) -> float:
  return float(np.mean(x)) if np.all(np.isfinite(x)) else math.inf



def signal_noise_windows(records: Sequence[dict], window: int) -> list[dict]:
  """Windows of ``window`` outer steps over metrics records that carry the
  meta-gradient's split: ``grad_signal_sq_mean`` and ``grad_noise_sq_mean``,
  the means over the ``grad_split_steps`` outer steps since the previous
  record of one unbiased estimate of ‖g‖² and of E‖ĝ − g‖² per step (or,
  in records without them, the logged step's own ``grad_signal_sq`` and
  ``grad_noise_sq``, a window of 1). Per window: the first and last step, the
  number of outer steps averaged, the mean signal² with its standard error
  (from the records' spread), the mean noise², and their ratio, the per-step
  signal-to-noise (below ~1/steps, that many outer steps are mostly a random
  walk). Records with a missing or non-finite value are skipped."""
  def split(r):
    if r.get("grad_split_steps"):
      return r.get("grad_signal_sq_mean"), r.get("grad_noise_sq_mean"), r["grad_split_steps"]
    return r.get("grad_signal_sq"), r.get("grad_noise_sq"), 1
  rows: dict[int, list[tuple]] = {}
  for r in records:
    signal, noise, steps = split(r)
    if "step" in r and all(v is not None and math.isfinite(v) for v in (signal, noise)):
      rows.setdefault((r["step"] - 1) // window, []).append((r["step"], signal, noise, steps))
  out = []
  for _, rs in sorted(rows.items()):
    steps = np.array([x[3] for x in rs], np.float64)
    signal = np.array([x[1] for x in rs], np.float64)
    mean = float(np.sum(steps * signal) / np.sum(steps))
    noise = float(np.sum(steps * np.array([x[2] for x in rs])) / np.sum(steps))
    # Each record's mean over k steps has variance ∝ 1/k: the weighted mean's s.e.
    se = (float(np.sqrt(np.sum(steps * (signal - mean) ** 2) / (len(rs) - 1) / np.sum(steps)))
          if len(rs) > 1 else math.nan)
    out.append({"first_step": rs[0][0], "last_step": rs[-1][0], "steps": int(np.sum(steps)),
                "signal_sq": mean, "signal_sq_se": se, "noise_sq": noise,
                "snr": mean / noise if noise > 0 else math.nan})
  return out
