"""mulo-m with only its input *matrices'* step scaled (θ unchanged). Lowering the
whole input group's base (input_base.txt) helped the wide, batch-8 and table
MLPs but took the deep MLP (d6) from 0.019 to 0.286; the input group holds
every bias and norm scale too, so this probe separates the two: the input
matrices alone ×f, or the vectors alone ×f. Broad screen (screen-broad-cpu),
4 seeds, untuned; test loss per task and the geometric mean of the
test-loss ratio to mulo-m.

    cd results/probes && ../../.venv/bin/python input_matrix.py > input_matrix.txt
"""
import dataclasses
import sys

import jax.numpy as jnp

import lopt
from lopt.step_rules import StepRule
import probe_suites


@dataclasses.dataclass(frozen=True)
class InputScale(StepRule):
  """``lr *= factor`` on the μP input group's matrices (``matrices``) or vectors."""
  factor: float = 1.0
  matrices: bool = True

  def __call__(self, theta, step, ctx):
    hit = ctx.group == 0 and (jnp.ndim(ctx.p) >= 2) == self.matrices
    return step._replace(lr=step.lr * self.factor) if hit else step


lo, theta = lopt.load_pretrained(probe_suites.BEFORE_FAN_IN)
with_rule = lambda rule: dataclasses.replace(lo, step=lo.step + (rule,))
factors = [float(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "0.3,0.1").split(",")]
probe_suites.broad_screen_variants("input step", [("mulo-m", lo, theta)] + [
    (f"matrices x{f:g}", with_rule(InputScale(f, True)), theta) for f in factors] + [
    (f"vectors x{f:g}", with_rule(InputScale(f, False)), theta) for f in factors[-1:]])
