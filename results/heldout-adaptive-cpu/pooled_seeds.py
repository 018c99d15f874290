"""Test loss of an LO against tuned AdamW pooled over several evaluate.py runs
on disjoint seeds (e.g. seeds 8-15 and 16-23): per task, the mean over all
seeds of each, their ratio and its standard error (delta method), so that a
bar is not read off one seed set's noise (iris's test split has 30 rows).
Run from the repo root:

  python results/heldout-adaptive-cpu/pooled_seeds.py RUN:LABEL [RUN:LABEL ...] > OUT"""
import json
import math
import sys

import numpy as np

per_task = {}
for spec in sys.argv[1:]:
  run, label = spec.rsplit(":", 1)
  results = json.load(open(f"{run}/results.json"))
  for suite in results["suites"].values():
    for entry in suite["tasks"]:
      task = f"{entry['task']}@{entry['num_steps']}"
      row = per_task.setdefault(task, {"lo": [], "adamw": [], "seeds": []})
      row["lo"] += entry["results"][label]["test_loss_per_seed"]
      row["adamw"] += entry["results"]["adamw"]["test_loss_per_seed"]
      row["seeds"] += entry["results"][label]["seeds"]
print(f"{' + '.join(sys.argv[1:])}: test loss, mean ± s.e. over the pooled seeds")
ratios = []
for task, row in per_task.items():
  lo, aw = np.asarray(row["lo"]), np.asarray(row["adamw"])
  n = len(lo)
  assert len(set(row["seeds"])) == n, f"{task}: a seed repeats across runs"
  se = lambda x: x.std(ddof=1) / math.sqrt(len(x))
  r = lo.mean() / aw.mean()
  r_se = r * math.hypot(se(lo) / lo.mean(), se(aw) / aw.mean())
  ratios.append(r)
  print(f"{task:44s} n={n:2d}  LO {lo.mean():.4f}±{se(lo):.4f}  AdamW {aw.mean():.4f}±{se(aw):.4f}"
        f"  ratio {r:.3f}±{r_se:.3f}")
print(f"geometric mean of the ratios {math.exp(np.mean(np.log(ratios))):.3f}; "
      f"better than AdamW on {sum(r < 1 for r in ratios)} of {len(ratios)}; worst {max(ratios):.3f}")
