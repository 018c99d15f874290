"""Does a checkpoint that gains on the screen's digits MLP (width 64) keep the
gain when the same plain-flax MLP is wider? mulo-a18-cpu's θ̄ at 4,400 beat
mulo-m on the screen digits MLP (0.0156 vs 0.0186) but lost 1.55x on the
held-out width-512 μP MLP. This runs the screen's digits MLP (not a held-out
task) at widths 64, 256 and 1024, untuned, seeds 0..SEEDS-1, test loss mean
± s.e. over seeds. Run from results/probes:
../../.venv/bin/python width_screen.py LABEL=SOURCE ... [--seeds N]
(2-core CPU); output: width_screen.txt."""
import sys
import numpy as np
from meta_tasks import SuiteEntry
from meta_tasks.user_tasks import PlainMLPTask
from training.evaluation import Evaluator, parse_optimizer

args = [a for a in sys.argv[1:] if not a.startswith("--seeds")]
seeds = int(next((a.split("=")[1] for a in sys.argv[1:] if a.startswith("--seeds=")), 8))
opts = [parse_optimizer(a) for a in args]
evaluator = Evaluator(range(seeds), log=lambda line: None)
print(f"user MLP on digits, depth 3, batch 64, 1000 steps, {seeds} seeds: test loss mean ± s.e.")
for width in (64, 256, 1024):
  task = PlainMLPTask(dataset="digits", width=width, batch_size=64)
  entry = SuiteEntry(task, 1000, task)
  cells = []
  for opt in opts:
    per_seed = np.asarray(evaluator.run(opt, entry)["test_loss_per_seed"])
    cells.append(f"{opt.label} {per_seed.mean():.4f} ± {per_seed.std(ddof=1) / np.sqrt(seeds):.4f}")
  print(f"w{width}: " + " | ".join(cells), flush=True)
