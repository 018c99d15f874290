"""Where does mulo-m's loss spike on the Friedman regression MLP of
unseen_models.py come from (20x at updates 2-3), and what would removing it
cost? Variants on the same 4 seeds: theta = 0 (the hand form), a linear
warmup of the whole step over the first W updates ("warmupW"), and the
adaptive head's multipliers ramped in log space over the first W updates,
m ** min(1, t/W) ("rampW"; the step after update W is mulo-m's).

TASK=diabetes: the diabetes regression MLP of unseen_models2.py instead.

Run from the repo root: V=mulo-m,theta0,ramp10 .venv/bin/python results/probes/friedman_spike.py
"""
import dataclasses, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax, jax.numpy as jnp, numpy as np, optax
import lopt
from lopt import step_rules
from lopt.adaptive import TensorAdaptive
from lopt.step_rules import Step, StepRule
import unseen_models as um

@dataclasses.dataclass(frozen=True)
class Warmup(StepRule):
  updates: int = 10
  def __call__(self, theta, step, ctx):
    return step._replace(lr=step.lr * jnp.minimum(1.0, ctx.count / self.updates))

@dataclasses.dataclass(frozen=True)
class RampedAdaptive(TensorAdaptive):
  updates: int = 10
  def __call__(self, theta, step, ctx):
    mult = self.multipliers(theta, ctx.acc.feats)
    e = jnp.minimum(1.0, ctx.count / self.updates)
    mult = mult ** e
    return Step(step.direction, step.lr * mult[0], None if step.wd is None else step.wd * mult[1])

LO, TH = lopt.load_pretrained("mulo-m")
def variant(lo=LO, th=TH):
  def make(task, params):
    base = task["base"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2], train=False)["params"]
    return lo.as_optax(th, num_steps=task["steps"], mup=lopt.mup.infer_kinds(params, base))
  return make
def with_rules(rules):
  return dataclasses.replace(LO, step=rules)
def ramped(w):
  return with_rules(tuple(RampedAdaptive(bound=r.bound, hidden=r.hidden, updates=w) if isinstance(r, TensorAdaptive) else r for r in LO.step))
names = os.environ["V"].split(",")
V = {"mulo-m": variant(), "theta0": variant(th=LO.init(jax.random.PRNGKey(0)))}
for w in (5, 10, 25, 50):
  V[f"warmup{w}"] = variant(lo=with_rules(LO.step + (Warmup(w),)))
  V[f"ramp{w}"] = variant(lo=ramped(w))
import unseen_models2 as um2  # noqa: E402
tasks = {t["name"]: t for t in um.make_tasks() + um2.make_tasks()}
task = tasks[os.environ.get("TASK", "friedman regression")]
for n in names:
  losses, train, test, acc = jax.jit(jax.vmap(lambda s: um.run(task, V[n], s)))(jnp.arange(4))
  losses = np.asarray(losses)
  print(f"{n:10s} test {np.mean(test):.4f} train {np.mean(train):.2g} spike {np.max(losses/losses[:, :1]):.2f} "
        f"first8 (seed max) {np.round(np.max(losses[:, :8], 0), 2)}", flush=True)
