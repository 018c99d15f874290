"""A confirmation of input_fan_in.py's rule on tasks no decision has seen,
committed before it was run (2026-12-05).

The rule: the shipped mulo-m (θ and form unchanged) with its dense input
matrices' step × 19.2 / fan_in (Dense and Conv kernels of kind ``input``;
embeddings, vectors, hidden and readout as shipped), via the μP spec as in
input_fan_in.py. Against: mulo-m as shipped. Both untuned, 8 seeds; tuned
AdamW (the evaluation's LR grid, 3 tuning seeds) is printed for context only.

The tasks: plain flax MLPs (what users write) on the synthetic tables synth-b..e
(24, 12, 10 and 20 inputs; 480, 640, 200 and 400 rows; used in meta-training,
never in an evaluation or a decision), on digits in a configuration no suite
has (64 inputs), and a plain CNN in a new configuration (3x3x1 = 9 inputs).
Widths, depths, batch sizes and horizons differ from every suite's.

Decision rule, written before the run: the rule is confirmed if the
geometric mean of its test-loss ratio to mulo-m over the six tasks is at most
0.97 and it is better on at least three of the four tables. Otherwise it is
not confirmed, and it does not ship on the held-out result alone.

    cd results/probes && ../../.venv/bin/python input_fan_in_confirm.py > input_fan_in_confirm.txt
"""
import math

import lopt
import probe_suites
from meta_tasks.base import SuiteEntry
from meta_tasks.user_tasks import PlainCNNTask, PlainMLPTask
from training import evaluation

import input_fan_in

ENTRIES = [SuiteEntry(task, steps, None) for task, steps in [
    (PlainMLPTask(dataset="synth-b", width=256, depth=2, batch_size=64), 1000),
    (PlainMLPTask(dataset="synth-c", width=128, depth=4, batch_size=32), 3000),
    (PlainMLPTask(dataset="synth-d", width=128, depth=3, batch_size=32), 2000),
    (PlainMLPTask(dataset="synth-e", width=64, depth=3, batch_size=16), 1000),
    (PlainMLPTask(dataset="digits", width=256, depth=4, batch_size=32), 1000),
    (PlainCNNTask(dataset="digits", width=16, depth=2, batch_size=64), 300)]]
SEEDS = range(8)


def losses(opt, ev):
  return [ev.run(opt, e) for e in ENTRIES]


def main():
  lo, theta = lopt.load_pretrained(probe_suites.BEFORE_FAN_IN)
  rows = {"mulo-m": losses(evaluation.Optimizer("mulo-m", checkpoint="mulo-m", lo=lo,
                                                theta=theta),
                           evaluation.Evaluator(SEEDS, log=lambda line: None))}
  input_fan_in.patch(19.2, 1.0)
  rows["x19.2/fan_in"] = losses(evaluation.Optimizer("x19.2/fan_in", checkpoint="mulo-m", lo=lo,
                                                     theta=theta),
                                evaluation.Evaluator(SEEDS, log=lambda line: None))
  rows["tuned adamw"] = losses(evaluation.Optimizer("adamw", baseline="adamw"),
                               evaluation.Evaluator(SEEDS, log=lambda line: None))
  print("test loss / test accuracy / final train loss / max spike (means over 8 seeds)")
  print("| optimizer | " + " | ".join(f"{e.task.name}@{e.num_steps}" for e in ENTRIES) + " |")
  print("|---" * (len(ENTRIES) + 1) + "|")
  for label, rs in rows.items():
    print(f"| {label} | " + " | ".join(
        f"{r['test_loss']:.4g} / {r['test_accuracy']:.3f} / {r['final_train_loss']:.3g} / "
        f"{r['max_loss_spike']:.2f}" for r in rs) + " |")
  ratios = [a["test_loss"] / b["test_loss"] for a, b in zip(rows["x19.2/fan_in"], rows["mulo-m"])]
  geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
  tables = sum(r < 1 for r in ratios[:4])
  print(f"ratios to mulo-m: {', '.join(f'{r:.3f}' for r in ratios)}; geometric mean {geo:.3f}; "
        f"better on {tables} of 4 tables")
  print("confirmed" if geo <= 0.97 and tables >= 3 else "not confirmed")


if __name__ == "__main__":
  main()
