"""One-off check: early stopping by the data budget. The shipped mulo-m runs its
cosine schedule over min(num_steps, CAP epochs' worth of steps) and steps 0
after it (its step rules clip the schedule at the end), on tasks trained for
more than CAP passes over their training rows; tasks trained for fewer are
untouched by construction and skipped. CAPS a grid ("20,40,80"), seeds
0..SEEDS-1, the evaluation's fixed test batches. SUITE: "screen"
(screen-user-cpu) or "heldout" (heldout-user-cpu and the width-512 task, with
tuned AdamW's numbers from the shipped held-out report).
Run from results/probes: ../../.venv/bin/python epoch_cap.py SUITE [CAPS [SEEDS]]
(2-core CPU); outputs: epoch_cap_screen8.txt (screen 20,40,80 8),
epoch_cap_heldout8.txt (heldout ... 8)."""
import numpy as np, lopt
import probe_suites
from training import task_spec
from training.sweep import Sweep

SUITE, caps, seeds = probe_suites.parse_args("20,40,80")
lo, theta = lopt.load_pretrained("mulo-m")
adamw = probe_suites.adamw_heldout()
entries = probe_suites.entries(SUITE)
print(f"{SUITE}, mulo-m with its schedule over at most CAP epochs, CAP in {caps}, {len(seeds)} "
      "seeds: test loss / test accuracy / train loss (means over seeds)", flush=True)
for e in entries:
  task, steps = e.task, e.num_steps
  epochs = steps * task.epochs_per_step()
  line = f"{task.name}@{steps} ({epochs:.0f} epochs):"
  for cap in [None] + caps:
    if cap is not None and epochs <= cap:
      continue
    horizon = steps if cap is None else max(1, int(round(steps * cap / epochs)))
    spec = task_spec.optimizer_spec(task)
    r = Sweep(lambda _: lo.as_optax(theta, num_steps=horizon, mup=spec), task, steps)(None, seeds)
    acc = np.nan if r.test_accuracy is None else np.nanmean(r.test_accuracy)
    line += (f" {'uncapped' if cap is None else f'cap{cap:g} ({horizon} steps)'} "
             f"{np.mean(r.test_loss):.4f} / {acc:.4f} / {np.mean(r.final_train_loss):.2g} |")
  a = adamw.get(f"{task.name}@{steps}")
  if a:
    line += f" tuned AdamW {a['adamw_test_loss']:.4f} / {a['adamw_test_accuracy']:.4f}"
  print(line, flush=True)
