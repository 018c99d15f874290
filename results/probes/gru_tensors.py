"""Which of the GRU's tensors get steps too large under mulo-m (unseen_models2's
GRU: mulo-m 0.300, x0.3 on every update 0.247, tuned AdamW 0.230)? Scales mulo-m's
update by 0.3 on one group of tensors at a time, found by the flax GRUCell param
names: the recurrent kernels (hr, hz, hn), the input kernels (ir, iz, in: fan-in 8,
so input_fan_in gives them x2.4), the readout (Dense_0), and all biases.

Run from the repo root: .venv/bin/python results/probes/gru_tensors.py [SEEDS]"""
import os, sys
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax
import lopt
import unseen_models as um, unseen_models2 as um2

task = next(t for t in um2.make_tasks() if t["name"] == "gru")
GROUPS = {"recurrent": lambda n: n[-2] in ("hr", "hz", "hn") and n[-1] == "kernel",
          "input": lambda n: n[-2] in ("ir", "iz", "in") and n[-1] == "kernel",
          "readout": lambda n: n[-2] == "Dense_0" and n[-1] == "kernel",
          "biases": lambda n: n[-1] == "bias"}


def names(path):
  return [str(getattr(k, "key", k)) for k in path]


def scaled(group, mult=0.3):
  return um.scale_where(um.mulo_m, GROUPS[group], mult)


if __name__ == "__main__":
  base = task["base"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2], train=False)
  params = task["model"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2], train=False)
  kinds = lopt.mup.infer_kinds(params["params"], base["params"])
  for path, k in jax.tree_util.tree_flatten_with_path(kinds, is_leaf=lambda x: not isinstance(x, dict))[0]:
    print(f"  {'/'.join(names(path)):24s} {k}", flush=True)
  print(f"GRU, {um.SEEDS} seeds: test loss / accuracy / train loss / max spike", flush=True)
  print(f"  {'mulo-m':18s} {um.fmt(um.evaluate(task, um.mulo_m, init_outside=True))}", flush=True)
  for g in GROUPS:
    print(f"  {g + ' x0.3':18s} {um.fmt(um.evaluate(task, scaled(g), init_outside=True))}", flush=True)
