"""Which of the LSTM's tensors want other steps under mulo-m (twenty-first
session)? recurrent_models.py's LSTM (nn.RNN(nn.LSTMCell(64)) over the digits'
8 columns, batch 64, 1,500 steps): mulo-m with infer_kinds(recurrent_steps=8)
reads 0.2315 against tuned AdamW's 0.1951 (lr 0.03, the grid's top, with a
lower train loss), so some of its steps look too small. Scales that update by
MULT (default 3) on one group of tensors at a time, found by the flax
LSTMCell param names: the recurrent kernels (hi, hf, hg, ho), the input
kernels (ii, if, ig, io: fan-in 8, so input_fan_in gives them x2.4), the
readout (Dense_0), all biases, and every tensor.

Run from the repo root: .venv/bin/python results/probes/lstm_tensors.py [SEEDS] [MULT]
(RUN=group: one row)."""
import os
import sys

mult = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recurrent_models as rm  # noqa: E402
import unseen_models as um  # noqa: E402

task = next(t for t in rm.make_tasks() if t["name"] == "lstm")
GROUPS = {"none": lambda n: False,
          "recurrent": lambda n: n[-2] in ("hi", "hf", "hg", "ho") and n[-1] == "kernel",
          "input": lambda n: n[-2] in ("ii", "if", "ig", "io") and n[-1] == "kernel",
          "readout": lambda n: n[-2] == "Dense_0" and n[-1] == "kernel",
          "biases": lambda n: n[-1] == "bias",
          "all": lambda n: True}

if __name__ == "__main__":
  fixed = rm.lo(lambda t: t)  # recurrent kernels at 1/sqrt(T), as the README says to pass
  only = os.environ.get("RUN")
  for g in ([only] if only else GROUPS):
    tx = um.scale_where(fixed, GROUPS[g], mult)
    print(f"  {g + f' x{mult:g}':16s} {um.fmt(um.evaluate(task, tx, init_outside=True))}",
          flush=True)
