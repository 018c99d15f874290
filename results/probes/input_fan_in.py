"""Does the input layer's step want μP's 1/fan_in across tasks? μP holds the
data dimension d fixed and gives input matrices a width-independent step; but
Adam's sign-like updates move a dense input layer's pre-activations by about
lr·Σ|x_i|, i.e. ∝ d, as they move a hidden layer's by lr·fan_in (which μP
divides out). Across users' tasks d ranges from 4 (iris) to 64 (digits).
input_matrix.txt / the held-out run of the ×0.3 candidate: ×0.3 on every
input matrix helped the 64-input MLPs and hurt the tables (13, 10, 30 and 4
inputs). Here the input matrices of dense inputs (Dense and Conv kernels;
not embeddings, whose inputs are one-hot) get ×(REF / fan_in)^POWER through
the μP spec (``lopt.mup.Kind``'s scale), θ and the form as shipped. Broad
screen, 4 seeds, untuned; the geometric mean is against mulo-m's row of
input_matrix.txt (the same program and seeds).

    cd results/probes && ../../.venv/bin/python input_fan_in.py 19.2,1 32,1 > input_fan_in.txt
"""
import math
import sys

import jax

import lopt
import probe_suites
from lopt import mup
from meta_tasks import suites
from training import evaluation, task_spec

MULO_M = [0.0208, 0.272, 0.204, 2.3, 0.493, 0.605, 0.0476, 0.502, 0.0194, 0.0842, 1.33, 0.0847,
          2.2, 0.461]   # input_matrix.txt, row mulo-m
shipped_spec = task_spec.optimizer_spec


def scaled_spec(ref, power):
  """``optimizer_spec`` with the dense input matrices' step × (ref / fan_in)^power."""
  def spec(task):
    kinds = shipped_spec(task)
    shapes = jax.eval_shape(task.init, jax.random.PRNGKey(0))
    is_leaf = lambda x: isinstance(x, (str, mup.Kind))

    def one(path, kind, shape):
      name = jax.tree_util.keystr(path)
      if (kind.kind if isinstance(kind, mup.Kind) else kind) != "input" or "embedding" in name:
        return kind
      fan_in = math.prod(shape.shape[:-1])
      return mup.Kind("input", fan_in, (ref / fan_in) ** power)
    return jax.tree_util.tree_map_with_path(one, kinds, shapes, is_leaf=is_leaf)
  return spec


def patch(ref, power):
  """Every LO evaluation from now on uses ``scaled_spec(ref, power)``."""
  task_spec.optimizer_spec = scaled_spec(ref, power)


def main():
  entries = suites.get_suite("screen-broad-cpu")
  lo, theta = lopt.load_pretrained(probe_suites.BEFORE_FAN_IN)
  print("| input step ×(ref/fan_in)^power | " + " | ".join(f"{e.task.name}@{e.num_steps}"
                                                          for e in entries) + " | geo vs mulo-m |")
  print("|---" * (len(entries) + 2) + "|")
  print("| mulo-m (input_matrix.txt) | " + " | ".join(f"{x:.3g}" for x in MULO_M) + " | 1.000 |")
  for arg in sys.argv[1:] or ["19.2,1"]:
    ref, power = map(float, arg.split(","))
    patch(ref, power)
    ev = evaluation.Evaluator(range(4), log=lambda line: None)
    opt = evaluation.Optimizer(f"ref {ref:g} power {power:g}", checkpoint="mulo-m", lo=lo, theta=theta)
    losses = [ev.run(opt, e)["test_loss"] for e in entries]
    geo = math.exp(sum(math.log(x / r) for x, r in zip(losses, MULO_M)) / len(losses))
    print(f"| ref {ref:g}, power {power:g} | " + " | ".join(f"{x:.3g}" for x in losses)
          + f" | {geo:.3f} |", flush=True)


if __name__ == "__main__":
  main()
