"""One-off check of GradientRestraint: mulo-m's form + GradientRestraint with
mulo-m's θ, the restraint's θ set so that (α, β) takes each of PAIRS
("a:b,...", default "0:0,0.5:0"; 0:0 is exactly mulo-m), as one compiled
grid per task, seeds 0..SEEDS-1 (default 3: the held-out protocol, training.sweep).
SUITE "heldout": heldout-user-cpu and the width-512 task of heldout-width-cpu,
with tuned AdamW's numbers from the shipped held-out report
(checkpoints/mulo-m/metadata.json); "screen": screen-user-cpu.
Run from results/probes: ../../.venv/bin/python heldout_restraint.py SUITE [PAIRS [SEEDS]]
(2-core CPU); outputs: restraint_screen.txt (SUITE screen, 0:0,0.5:0,1:0),
restraint_screen8.txt (screen, 0:0,0.25:0.25,0.5:0.5,0.5:0, 8 seeds),
restraint_heldout.txt (heldout, 0:0,0.5:0.5).
BOUND (env, default 10): the rule's bound; restraint_freeze_screen8.txt is
BOUND=1000 ... screen 0:0,1:1,2:2,1:0.5 8 (the "freeze once memorized" variants);
restraint_groups_screen8.txt is ... screen 0:0,0/0.5:0/0.5,0.5/0:0.5/0,0.5:0.5 8
(the input and hidden groups restrained apart; both over the mulo-m before its
re-ship, which had no restraint). Since the re-ship the rule of the shipped
mulo-m is replaced by the probed one, so "0/0.5:0/0.5" is the shipped mulo-m;
restraint_decay_screen8.txt is ... screen 0/0.5:0/0.5,0/0.5:0/0,0/1:0/0,0/1:0/0.5 8
(the hidden group's decay kept at full strength while its step slows)."""
import dataclasses, os, sys
import jax, jax.numpy as jnp, numpy as np, lopt
from lopt.adaptive import GradientRestraint
import probe_suites
from training.evaluation import lo_optax
from training.sweep import Sweep

SUITE = sys.argv[1]
# "a:b" sets both μP groups; "ai/ah:bi/bh" the input and hidden groups apart.
pairs = [tuple(tuple(map(float, x.split("/"))) if "/" in x else float(x) for x in p.split(":"))
         for p in (sys.argv[2] if len(sys.argv) > 2 else "0:0,0.5:0").split(",")]
per_group = lambda x: list(x) if isinstance(x, tuple) else [x] * 2
fmt = lambda x: "/".join(f"{v:g}" for v in x) if isinstance(x, tuple) else f"{x:g}"
BOUND = float(os.environ.get("BOUND", "10"))
seeds = list(range(int(sys.argv[3]) if len(sys.argv) > 3 else 3))
lo, theta = lopt.load_pretrained("mulo-m")
adamw = probe_suites.adamw_heldout()
# The shipped mulo-m carries a GradientRestraint (θ zero): swap it for the probed one.
probe = GradientRestraint(alpha=0.0, beta=0.0, bound=BOUND)
kept = tuple(r for r in lo.step if not isinstance(r, GradientRestraint))
form = dataclasses.replace(lo, step=kept + (probe,))
n = len(pairs)
thetas = {**jax.tree.map(lambda x: jnp.stack([x] * n), theta),
          "restraint": {k: jnp.asarray([per_group(p[i]) for p in pairs], jnp.float32)
                        for i, k in enumerate(("alpha", "beta"))}}
entries = probe_suites.entries(SUITE)
print(f"{SUITE}, mulo-m + GradientRestraint (bound {BOUND:g}) at (alpha, beta) {pairs}, {len(seeds)} seeds: test loss / test "
      "accuracy / max spike / train loss", flush=True)
for e in entries:
  task, steps = e.task, e.num_steps
  r = Sweep(lambda th: lo_optax(form, th, task, steps), task, steps, grid=True)(thetas, seeds)
  acc = r.test_accuracy if r.test_accuracy is not None else np.full(r.test_loss.shape, np.nan)
  row = lambda i: (f"a{fmt(pairs[i][0])}:b{fmt(pairs[i][1])} {np.mean(r.test_loss[i]):.4f} / {np.nanmean(acc[i]):.4f} / "
                   f"{np.max(r.max_spike[i]):.2f} / {np.mean(r.final_train_loss[i]):.2g}")
  line = f"{task.name}@{steps}: " + " | ".join(row(i) for i in range(n))
  a = adamw.get(f"{task.name}@{steps}")
  if a:
    line += (f" | tuned AdamW {a['adamw_test_loss']:.4f} / {a['adamw_test_accuracy']:.4f}; "
             "ratio to AdamW " + " ".join(f"{np.mean(r.test_loss[i]) / a['adamw_test_loss']:.3f}"
                                         for i in range(n)))
  print(line, flush=True)
