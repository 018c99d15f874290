"""One-off probe: which meta-training tasks pull mulo-a's step size and weight
decay which way. θ stays at mulo-a; each task's ES-Single estimator (the
mulo-a6-cpu recipe without the step spread, and with it) runs N outer steps and
its meta-gradient on the learned log-scales (input step, hidden step, weight
decay) and on the adaptive head's output bias (step, weight decay) is averaged.
A positive mean gradient means the meta-loss falls when that value falls
(the outer optimizer moves it down). Standard error from the N estimates.
Run from the repository root: .venv/bin/python results/probes/task_pull.py [N]
(2-core CPU, about 10 minutes for N=300); output: results/probes/task_pull.txt."""
import sys
import jax, jax.numpy as jnp, numpy as np
from training import config as config_lib
from training.trainer import MetaTrainer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
for spread in (1.0, 2.0):
  cfg = config_lib.get_preset("mulo-a6-cpu", step_mult_spread=spread)
  tr = MetaTrainer(cfg)
  state = tr.init(jax.random.PRNGKey(cfg.seed))
  data = tr.data()

  @jax.jit
  def step(est_states, key, data):
    out_g, out_s = [], []
    for i, (est, s) in enumerate(zip(tr.estimators(data), est_states)):
      g, s, _ = est.estimate(state.theta, s, jax.random.fold_in(key, i))
      out_g.append(jnp.concatenate([g["scales"]["log_lr"], g["scales"]["log_wd"][None],
                                    g["adapt"]["b1"]]))
      out_s.append(s)
    return jnp.stack(out_g), tuple(out_s)

  est_states, rows = state.estimator_states, []
  for n in range(N):
    g, est_states = step(est_states, jax.random.PRNGKey(n), data)
    rows.append(np.asarray(g))
  rows = np.stack(rows)  # [N, tasks, 5]
  mean, se = rows.mean(0), rows.std(0) / np.sqrt(N)
  print(f"spread {spread}: mean meta-gradient (± s.e.) over {N} outer steps, θ = mulo-a")
  print("task | log_lr input | log_lr hidden | log_wd | head step bias | head wd bias")
  for t, m, e in zip(tr.tasks, mean, se):
    print(t.name[:40], " | ".join(f"{a:+.4f}±{b:.4f}" for a, b in zip(m, e)), flush=True)
