"""Ratios of the candidate a16-2000 (mulo-a16-cpu's export_best, step 2000)
against the shipped mulo-m (with the rule), θ₀ of the recipe and tuned AdamW,
on the same 8 held-out seeds: run from the repo root after the evaluate.py
runs of runs/heldout-mulo-m8 (θ₀), runs/heldout-hidden-restraint8 (mulo-m) and
runs/heldout-a16-2000-8 (README, "mulo-a16-cpu"); output: comparison.txt."""
import json, math, numpy as np
RUNS = {"theta0": ("runs/heldout-mulo-m8", "theta0"),
        "mulo-m": ("runs/heldout-hidden-restraint8", "mulo-m+hidden-restraint"),
        "adamw": ("runs/heldout-a16-2000-8", "adamw"),
        "a16": ("runs/heldout-a16-2000-8", "a16-2000")}
rows = {}
for name, (run, label) in RUNS.items():
  for d in json.load(open(f"{run}/results.json"))["suites"].values():
    for e in d["tasks"]:
      rows.setdefault(f"{e['task']}@{e['num_steps']}", {})[name] = e["results"][label]
se = lambda r: np.std(r["test_loss_per_seed"], ddof=1) / np.sqrt(len(r["test_loss_per_seed"]))
pairs = [("a16", "mulo-m"), ("a16", "theta0"), ("a16", "adamw"), ("mulo-m", "adamw")]
ratios = {p: [] for p in pairs}
for k, v in rows.items():
  cells = " ".join(f"{n} {v[n]['test_loss']:.4f}±{se(v[n]):.4f}" for n in RUNS)
  rs = " ".join(f"{a}/{b} {v[a]['test_loss'] / v[b]['test_loss']:.3f}" for a, b in pairs)
  print(f"{k:42s} {cells} | {rs}")
  for a, b in pairs:
    ratios[(a, b)].append(v[a]["test_loss"] / v[b]["test_loss"])
for (a, b), vals in ratios.items():
  print(f"{a}/{b} geo {math.exp(np.mean(np.log(vals))):.3f} wins {sum(x < 1 for x in vals)} "
        f"max {max(vals):.3f}")
print("test accuracy / final train loss / max spike / diverged:")
for k, v in rows.items():
  print(k, {n: (round(x["test_accuracy"], 4) if x.get("test_accuracy") else None,
                round(x["final_train_loss"], 4), round(x["max_loss_spike"], 3),
                x["num_diverged"]) for n, x in v.items()})
