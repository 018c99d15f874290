"""unseen_models3's MLP autoencoder, where mulo-m under-fits (train 0.0076 and
test 0.0098 against tuned AdamW's 0.0052 / 0.0084): mulo-m with its one knob,
step_mult, at 0.5 / 2 / 4. Run from the repo root:
.venv/bin/python results/probes/autoencoder_step.py"""
import os, sys
sys.argv = [sys.argv[0], "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unseen_models as um, unseen_models3 as um3
task = next(t for t in um3.make_tasks() if t["name"] == "autoencoder")
mult = um.mulo_m_step


print("autoencoder, 4 seeds: test loss / train loss / max spike", flush=True)
for m in (0.5, 2.0, 4.0):
  print(f"  mulo-m step_mult {m:g}: {um.fmt(um.evaluate(task, mult(m), init_outside=True))}", flush=True)
