"""One-off probe: the training meta-loss of the branches from mulo-a's lineage,
averaged per 1,000 outer steps (± standard error over the logged steps).
Run from the repository root: .venv/bin/python results/probes/meta_loss_plateau.py;
output: results/probes/meta_loss_plateau.txt. Runs that share a seed draw the
same tasks and horizons, so equal columns mean θ's changes did not show."""
import json
import numpy as np

for run in ("mulo-a4-cpu", "mulo-a5-cpu", "mulo-a6-cpu", "mulo-a7-cpu"):
  rows = [json.loads(line) for line in open(f"results/meta-runs/{run}/metrics.jsonl")]
  steps = np.array([r["step"] for r in rows])
  loss = np.array([r["meta_loss"] for r in rows])
  cells = []
  for start in range(0, int(steps.max()) + 1, 1000):
    m = (steps >= start) & (steps < start + 1000)
    if m.sum() > 5:
      cells.append(f"{start // 1000}k:{loss[m].mean():.3f}±{loss[m].std() / np.sqrt(m.sum()):.3f}")
  print(run, " ".join(cells))
