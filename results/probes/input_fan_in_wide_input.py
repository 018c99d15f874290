"""The fan-in rule where no check has reached: wide inputs. A μP MLP (w128 d3)
on the digits upsampled to 16x16 (256 inputs) and 32x32 (1024, CIFAR-size),
where input_fan_in=19.2 shrinks the input step ×0.075 and ×0.019. mulo-m
before the rule (probe_suites.BEFORE_FAN_IN) against the shipped mulo-m,
untuned, 4 seeds, 1000 steps; test loss / accuracy / final train loss.

    cd results/probes && ../../.venv/bin/python input_fan_in_wide_input.py > input_fan_in_wide_input.txt

Other LOs: ``... input_fan_in_wide_input.py LABEL=SOURCE ...`` (a checkpoint
directory or a shipped name) replaces the two defaults; ``--seeds=N`` first
runs seeds 0..N-1 (at 4 seeds the same LO read 0.056 and 0.092 on 256 inputs under
two versions of the evaluation code: compile-level float differences grow chaotically, see
float_chaos.txt).
"""
import sys

import lopt
import probe_suites
from meta_tasks.base import SuiteEntry
from meta_tasks.tasks import ImageMLPTask
from training import evaluation

ENTRIES = [SuiteEntry(ImageMLPTask(dataset="digits", image_size=s, width=128, depth=3,
                                   batch_size=64), 1000, None) for s in (16, 32)]
ARGS = sys.argv[1:]
SEEDS = int(ARGS.pop(0).split("=", 1)[1]) if ARGS and ARGS[0].startswith("--seeds=") else 4
ev = evaluation.Evaluator(range(SEEDS), log=lambda line: None)
SOURCES = probe_suites.sources([("before input_fan_in", probe_suites.BEFORE_FAN_IN),
                                ("mulo-m", "mulo-m")], ARGS)
for label, source in SOURCES:
  lo, theta = lopt.load_pretrained(source)
  opt = evaluation.Optimizer(label, checkpoint=source, lo=lo, theta=theta)
  rows = [ev.run(opt, e) for e in ENTRIES]
  print(f"{label:20s} " + " | ".join(
      f"{e.task.name}@{e.num_steps}: {r['test_loss']:.4f} / {r['test_accuracy']:.3f} / "
      f"{r['final_train_loss']:.2g}" for e, r in zip(ENTRIES, rows)), flush=True)
