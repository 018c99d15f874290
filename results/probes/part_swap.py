"""Which learned part of a meta-trained θ costs the screen? Each variant is the
base θ (default: the shipped ``mulo-m``) with one part of θ taken from the
candidate (a run's export, warm-started from the base), so the base and the
candidate have the same parts. The rows read: the base, the candidate, then
"+ PART": the base with the candidate's PART. Untuned, screen-user-cpu, 8 seeds,
the same seeds for every variant.

    cd results/probes && ../../.venv/bin/python part_swap.py \
        ../meta-runs/mulo-a25-cpu/export@3000 > part_swap_a25.txt

``--base`` replaces the base (a shipped name or a directory); ``--tasks REGEX``
keeps the screen tasks whose name matches; ``--first_seed N`` runs seeds
N..N+7 (fresh seeds: the base may have been chosen on 0..7).

    ../../.venv/bin/python part_swap.py ../meta-runs/mulo-a25-cpu/export@3000 \
        --tasks cnn --first_seed 100 > part_swap_a25_cnn.txt
"""
import argparse
import re

import jax
import numpy as np

import lopt
from training import evaluation

import probe_suites

parser = argparse.ArgumentParser()
parser.add_argument("candidate")
parser.add_argument("--base", default="mulo-m")
parser.add_argument("--tasks", default=None)
parser.add_argument("--first_seed", type=int, default=0)
args = parser.parse_args()
cand_path, base_path = args.candidate, args.base
lo, base = lopt.load_pretrained(base_path)
lo_c, cand = lopt.load_pretrained(cand_path)
if lo_c != lo:
  raise SystemExit(f"the candidate's LO config differs from the base's: {lo_c} vs {lo}; a part "
                   f"swap needs the same form.")
if set(cand) != set(base) or any(
    jax.tree.structure(cand[p]) != jax.tree.structure(base[p]) for p in base):
  raise SystemExit("the candidate's θ parts differ from the base's.")


def moved(part: str) -> float:
  """RMS of the candidate's change of ``part``, over its elements."""
  d = [np.ravel(np.asarray(c) - np.asarray(b))
       for c, b in zip(jax.tree.leaves(cand[part]), jax.tree.leaves(base[part]))]
  d = np.concatenate(d)
  return float(np.sqrt(np.mean(d ** 2)))


variants = {"base": base, "candidate": cand,
            **{f"+ {p}": {**base, p: cand[p]} for p in sorted(base)}}
entries = [e for e in probe_suites.entries("screen")
           if args.tasks is None or re.search(args.tasks, e.task.name)]
seeds = range(args.first_seed, args.first_seed + 8)
ev = evaluation.Evaluator(seeds, log=lambda line: None)
print(f"base {base_path}, candidate {cand_path}; test loss (mean of seeds {seeds.start}.."
      f"{seeds.stop - 1}) / final train "
      f"loss; untuned; last column: geometric mean of test loss over the tasks and its ratio "
      f"to the base's. RMS change per part: "
      + ", ".join(f"{p} {moved(p):.3g}" for p in sorted(base)))
print("| variant | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in entries)
      + " | geometric mean |")
print("|---" * (len(entries) + 2) + "|")
ref = None
for name, th in variants.items():
  opt = evaluation.Optimizer(name, checkpoint=name, lo=lo, theta=th)
  rs = [ev.run(opt, e) for e in entries]
  geo = float(np.exp(np.mean([np.log(r["test_loss"]) for r in rs])))
  ref = geo if ref is None else ref
  print(f"| {name} | " + " | ".join(f"{r['test_loss']:.3g} / {r['final_train_loss']:.3g}"
                                    for r in rs) + f" | {geo:.4f} ({geo / ref:.3f}) |", flush=True)
