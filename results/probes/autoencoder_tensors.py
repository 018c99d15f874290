"""Which of the MLP autoencoder's tensors (unseen_models3.py) get steps too
large under mulo-m? Its update x0.5 on one layer at a time (kinds by
infer_kinds: Dense_0 64->128 input, Dense_1 16->128 input, Dense_2 128->16
sp_output (the bottleneck), Dense_3 128->64 sp_output (the readout)).
Run from the repo root: .venv/bin/python results/probes/autoencoder_tensors.py"""
import os, sys
sys.argv = [sys.argv[0], "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unseen_models as um, unseen_models3 as um3
task = next(t for t in um3.make_tasks() if t["name"] == "autoencoder")


def scaled(layer, mult=0.5):
  return um.scale_where(um.mulo_m, lambda names: names[0] == layer, mult)


print("autoencoder, 4 seeds: test loss / train loss / max spike (mulo-m: 0.0098 / 0.0076 / 1.00)",
      flush=True)
for layer in ("Dense_0", "Dense_1", "Dense_2", "Dense_3"):
  print(f"  {layer} x0.5: {um.fmt(um.evaluate(task, scaled(layer), init_outside=True))}", flush=True)
