"""Does mulo-m's decoupled weight decay on input layers cost the models where
their norm collapses? On unseen_models2's GRU the input kernels shrink 12x
under mulo-m (0.33 -> 0.027 rms) while AdamW's grow (0.42), and the recurrent
kernels grow 8x (AdamW: 1.8x): gru_update_sizes.py, /tmp probe in the notes.
Variant: mulo-m with no decay on group-0 matrices (input layers and embedding
tables; vectors are never decayed), everything else unchanged.

Run from the repo root: .venv/bin/python results/probes/input_decay.py SEEDS
(TASKS=a;b picks unseen_models / unseen_models2 tasks by name)."""
import dataclasses, os, sys
sys.argv = [sys.argv[0], sys.argv[1] if len(sys.argv) > 1 else "4"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lopt
from lopt import step_rules
import unseen_models as um, unseen_models2 as um2


@dataclasses.dataclass(frozen=True)
class NoDecayOnGroup(step_rules.StepRule):
  group: int = 0

  def __call__(self, theta, step, ctx):
    return step if ctx.group != self.group else step._replace(wd=None)


LO, TH = lopt.load_pretrained("mulo-m")
rules = list(LO.step)
at = next(i for i, r in enumerate(rules) if type(r).__name__ == "WeightDecay") + 1
NO_INPUT_DECAY = dataclasses.replace(LO, step=tuple(rules[:at] + [NoDecayOnGroup(0)] + rules[at:]))


def variant(lo):
  return um.lo_optax(lo, TH)


if __name__ == "__main__":
  only = [t for t in os.environ.get("TASKS", "gru").split(";") if t]
  tasks = [t for t in um.make_tasks() + um2.make_tasks() if any(o == t["name"] for o in only)]
  print(f"{um.SEEDS} seeds: test loss / accuracy / train loss / max spike", flush=True)
  for task in tasks:
    for name, lo in (("mulo-m", LO), ("no input decay", NO_INPUT_DECAY)):
      print(f"  {task['name']:22s} {name:16s} {um.fmt(um.evaluate(task, variant(lo), init_outside=True))}", flush=True)
