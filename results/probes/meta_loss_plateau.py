"""One-off probe: the training meta-loss of the branches from mulo-a's lineage,
averaged per 1,000 outer steps (± standard error over the logged steps).
Run from the repository root: .venv/bin/python results/probes/meta_loss_plateau.py;
output: results/probes/meta_loss_plateau.txt. Runs that share a seed and the
number of pairs draw the same tasks and horizons, so equal columns mean θ's
changes did not show. Paired: for those runs, the mean step-by-step difference
to mulo-a4-cpu's meta-loss per 500 outer steps (± s.e.); their logged
meta-losses correlate at 0.99, so this resolves ~0.002 where the plain means
resolve ~0.015. Negative = lower meta-loss than a4 at the same step. (a10's
meta-loss is at σ=0.1: the mean of L(θ±ε) carries a smoothing offset from
step 0 on, so its trend, not its level, is what counts.)"""
import json
import os
import numpy as np

RUNS = ("mulo-a4-cpu", "mulo-a5-cpu", "mulo-a6-cpu", "mulo-a7-cpu", "mulo-a8-cpu", "mulo-a9-cpu",
        "mulo-a10-cpu", "mulo-a11-cpu")


def load(run):
  rows = [json.loads(line) for line in open(f"results/meta-runs/{run}/metrics.jsonl")]
  return {r["step"]: r["meta_loss"] for r in rows if "meta_loss" in r}


runs = {run: load(run) for run in RUNS if os.path.exists(f"results/meta-runs/{run}/metrics.jsonl")}
for run, d in runs.items():
  steps, loss = np.array(list(d)), np.array(list(d.values()))
  cells = []
  for start in range(0, int(steps.max()) + 1, 1000):
    m = (steps >= start) & (steps < start + 1000)
    if m.sum() > 5:
      cells.append(f"{start // 1000}k:{loss[m].mean():.3f}±{loss[m].std() / np.sqrt(m.sum()):.3f}")
  print(run, " ".join(cells))
print("paired with mulo-a4-cpu (same seed, 8 pairs): mean difference per 500 outer steps")
a4 = runs["mulo-a4-cpu"]
for run in ("mulo-a6-cpu", "mulo-a7-cpu", "mulo-a9-cpu", "mulo-a10-cpu", "mulo-a11-cpu"):
  if run not in runs:
    continue
  common = np.array(sorted(set(a4) & set(runs[run])))
  diff = np.array([runs[run][s] - a4[s] for s in common])
  cells = []
  for start in range(0, int(common.max()) + 1, 500):
    m = (common >= start) & (common < start + 500)
    if m.sum() > 5:
      cells.append(f"{start}:{diff[m].mean():+.4f}±{diff[m].std() / np.sqrt(m.sum()):.4f}")
  corr = np.corrcoef([a4[s] for s in common], [runs[run][s] for s in common])[0, 1]
  print(f"{run} (corr {corr:.3f})", " ".join(cells))

# a11 weighs the tasks by their gap to θ₀: per task, paired with a4 per 1,000 steps.
if "mulo-a11-cpu" in runs:
  def per_task(run):
    rows = [json.loads(line) for line in open(f"results/meta-runs/{run}/metrics.jsonl")]
    return {r["step"]: {k[10:]: v for k, v in r.items() if k.startswith("meta_loss/")}
            for r in rows}
  base, branch = per_task("mulo-a4-cpu"), per_task("mulo-a11-cpu")
  common = np.array(sorted(set(base) & set(branch)))
  print("mulo-a11-cpu per task, paired with mulo-a4-cpu: mean difference per 1000 outer steps")
  for task in sorted(branch[common[0]]):
    diff = np.array([np.nan if branch[s].get(task) is None or base[s].get(task) is None
                     else branch[s][task] - base[s][task] for s in common])
    cells = []
    for start in range(0, int(common.max()) + 1, 1000):
      m = (common >= start) & (common < start + 1000) & np.isfinite(diff)
      if m.sum() > 5:
        cells.append(f"{start // 1000}k:{diff[m].mean():+.4f}±{diff[m].std() / np.sqrt(m.sum()):.4f}")
    print(f"  {task[:40]:40s}", " ".join(cells))
