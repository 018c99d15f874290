"""Ratios of a candidate LO against the shipped mulo-m, θ₀ of the recipe and
tuned AdamW on the same 8 held-out seeds, from the evaluate.py runs of
runs/heldout-mulo-m8 (θ₀), the shipped mulo-m's (default runs/heldout-fan-in8,
label mulo-m-fan-in: the mulo-m shipped on 2026-12-05) and the candidate's own
run (which also holds AdamW). Run from the repo root:

  python results/heldout-adaptive-cpu/compare_candidate.py NAME RUN LABEL [REF_RUN REF_LABEL [THETA0_RUN]] > OUT

NAME: the candidate's short name in the output; RUN: its evaluate.py workdir;
LABEL: its label there; REF_RUN REF_LABEL: another mulo-m reference (the
mulo-m of 2026-12-04, which the candidates up to fan-in were compared with:
runs/heldout-hidden-restraint8 mulo-m+hidden-restraint). E.g. ``a18
runs/heldout-a18-4400-8 a18-4400 runs/heldout-hidden-restraint8
mulo-m+hidden-restraint``. THETA0_RUN: where θ₀ was run (default
runs/heldout-mulo-m8, seeds 0-7); the output says when its seeds differ from
the candidate's; "-" leaves θ₀ out."""
import json, math, sys
import numpy as np

name, run, label = sys.argv[1:4]
if name in ("theta0", "mulo-m", "adamw"):
  # The output's columns are keyed by name: the candidate would replace that reference.
  sys.exit(f"NAME {name!r} is a reference's column name; give the candidate another (e.g. {name}-cand).")
ref = tuple(sys.argv[4:6]) if len(sys.argv) > 5 else ("runs/heldout-fan-in8", "mulo-m-fan-in")
theta0_run = sys.argv[6] if len(sys.argv) > 6 else "runs/heldout-mulo-m8"
RUNS = {**({} if theta0_run == "-" else {"theta0": (theta0_run, "theta0")}),
        "mulo-m": ref,
        "adamw": (run, "adamw"),
        name: (run, label)}
seeds = {key: json.load(open(f"{w}/results.json"))["settings"]["seeds"] for key, (w, _) in RUNS.items()}
if len({tuple(s) for s in seeds.values()}) > 1:
  print("seeds differ between runs: " + ", ".join(f"{k} {v[0]}..{v[-1]}" for k, v in seeds.items()))
rows = {}
for key, (workdir, lab) in RUNS.items():
  for d in json.load(open(f"{workdir}/results.json"))["suites"].values():
    for e in d["tasks"]:
      rows.setdefault(f"{e['task']}@{e['num_steps']}", {})[key] = e["results"][lab]
se = lambda r: np.std(r["test_loss_per_seed"], ddof=1) / np.sqrt(len(r["test_loss_per_seed"]))
pairs = [(a, b) for a, b in ((name, "mulo-m"), (name, "theta0"), (name, "adamw"),
                              ("mulo-m", "adamw")) if b in RUNS]
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
