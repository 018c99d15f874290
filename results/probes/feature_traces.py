"""Which gradient statistic tells "memorizing hurts" (noisy small tables) from
"memorizing is harmless" (clean digits)? mulo-m trains each task (4 seeds);
at 10 checkpoints we record the test loss and, averaged over the hidden
matrices (kind "hidden"), the adaptive LO's own tensor
features: grad_trend (log rms g / rms g₁), snr (log rms m̂ / rms sqrt v̂),
param_trend (log rms p / rms p₁), plus the train loss; and two statistics the
LO does not read, over the steps of each tenth: g_disp, log(root mean square
over steps of rms g) - log(mean over steps of rms g) (0 if every step's
gradient has one size; large if a few batches carry it, as when a few hard
rows remain), and l_disp, the standard deviation over steps of the log
minibatch loss. A feature that
separates must move differently on the tasks whose test loss climbs after
memorization than on those whose test loss keeps falling.
Tasks: the screen's (not held out) and noisy/clean synthetic tables of the
meta-training distribution; with KIN=1 also the clean kin tables of
clean_table_kin.py. Run from results/probes:
../../.venv/bin/python feature_traces.py > feature_traces.txt (2-core CPU)."""
import os
import jax, jax.numpy as jnp, numpy as np, lopt
from lopt.adaptive import AdaptiveLOptState
from meta_tasks import suites
from meta_tasks.families import META_INIT_SCALE
from meta_tasks.user_tasks import PlainMLPTask as Plain
from training.evaluation import lo_optax
from training.task_spec import optimizer_spec
import probe_suites

SEEDS = 4
CHECKPOINTS = 10
lo, theta = lopt.load_pretrained("mulo-m")
screen = [(e.task, e.num_steps) for e in suites.get_suite("screen-user-cpu")
          if "lm_" not in e.task.name]
tables = [(Plain(dataset=d, width=64, depth=3, batch_size=b, init_scale_range=META_INIT_SCALE,
                 reserve_valid=True), n)
          for d, b, n in (("synth-a", 32, 1000), ("synth-c", 64, 1000), ("synth-d", 16, 1000),
                          ("synth-e", 32, 1000))]
if os.environ.get("KIN") == "1":
  from clean_table_kin import ENTRIES as KIN_ENTRIES  # registers the kin tables
  tables += [(e.task, e.num_steps) for e in KIN_ENTRIES if e.task.dataset != "kin-e"]
NAMES = ("train", "test", "grad_trend", "snr", "param_trend", "g_disp", "l_disp")


def lo_state(state):
  return [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, AdaptiveLOptState))
          if isinstance(s, AdaptiveLOptState)][0]


def traces(task, num_steps):
  data = task.data()
  kinds = optimizer_spec(task)
  per = num_steps // CHECKPOINTS

  def run(seed):
    tx = lo_optax(lo, theta, task, num_steps)
    k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init(k_init)
    state = tx.init(params)
    hidden = [k == "hidden" for k in jax.tree.leaves(kinds)]

    step = probe_suites.train_step(task, tx, data, k_data, with_grads=True)

    def chunk(carry, c):
      carry, (losses, grads) = jax.lax.scan(step, carry, c * per + jnp.arange(per))
      params, state = carry
      s = lo_state(state)
      count = s.count.astype(jnp.float32)
      bc1, bc2 = 1 - lo.b1 ** count, 1 - lo.b2 ** count
      feats = []
      for h, ts, p, g in zip(hidden, jax.tree.leaves(s.tensors, is_leaf=lambda x: hasattr(x, "log_g0")),
                             jax.tree.leaves(params), jax.tree.leaves(grads)):
        if not h:
          continue
        g_last = g[-1]
        log_rms = lambda x: 0.5 * jnp.log(jnp.mean(jnp.square(x)) + 1e-30)
        per_step = jnp.sqrt(jnp.mean(jnp.square(g).reshape(per, -1), axis=1) + 1e-30)
        feats.append(jnp.stack([log_rms(g_last) - ts.log_g0,
                                log_rms(ts.m / bc1) - 0.5 * jnp.log(jnp.mean(ts.v / bc2) + 1e-30),
                                log_rms(p) - ts.log_p0,
                                0.5 * jnp.log(jnp.mean(jnp.square(per_step)))
                                - jnp.log(jnp.mean(per_step))]))
      ev = task.sample_eval_batch(jax.random.PRNGKey(2**20), "test", data=data)
      tr = task.sample_eval_batch(jax.random.PRNGKey(2**20), "train", data=data)
      out = jnp.concatenate([jnp.stack([task.metrics(params, tr)["loss"],
                                        task.metrics(params, ev)["loss"]]),
                             jnp.mean(jnp.stack(feats), axis=0),
                             jnp.std(jnp.log(losses + 1e-12))[None]])
      return (params, state), out

    _, rows = jax.lax.scan(chunk, (params, state), jnp.arange(CHECKPOINTS))
    return rows  # [CHECKPOINTS, len(NAMES)]

  return np.asarray(jax.jit(jax.vmap(run))(jnp.arange(SEEDS)))


print(f"mulo-m, {SEEDS} seeds, mean over seeds at each tenth of the run: train loss / test loss / "
      "hidden matrices' grad_trend / snr / param_trend / g_disp; l_disp", flush=True)
for task, n in screen + tables:
  r = traces(task, n).mean(axis=0)
  print(f"\n{task.name}@{n}", flush=True)
  for name, col in zip(NAMES, r.T):
    print(f"  {name:11s} " + " ".join(f"{x:8.3g}" for x in col), flush=True)
