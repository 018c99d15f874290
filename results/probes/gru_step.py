"""The GRU of unseen_models2.py, where mulo-m loses to tuned AdamW (1.30x): is
mulo-m's step too large or too small there? theta = 0 (the hand form), mulo-m's
step x3 and x0.3 (optax.scale after it), and AdamW at 3e-2 (past unseen_models2's grid).

Run from the repo root: .venv/bin/python results/probes/gru_step.py"""
import os, sys
sys.argv = [sys.argv[0], "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax, optax
import lopt
import unseen_models as um, unseen_models2 as um2
task = next(t for t in um2.make_tasks() if t["name"] == "gru")
LO, TH = lopt.load_pretrained("mulo-m")
def v(theta=TH, mult=1.0):
  def make(task, params):
    tx = um.lo_optax(LO, theta)(task, params)
    return tx if mult == 1.0 else optax.chain(tx, optax.scale(mult))
  return make
for name, make in [("theta=0", v(theta=LO.init(jax.random.PRNGKey(0)))), ("mulo-m x3", v(mult=3.0)),
                   ("mulo-m x0.3", v(mult=0.3)), ("adamw 3e-2", um.adamw(3e-2))]:
  print(f"  {name:12s} {um.fmt(um.evaluate(task, make, init_outside=True))}", flush=True)
