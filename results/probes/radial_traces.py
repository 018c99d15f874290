"""Is "the update only inflates the weights" the signal that tells memorizing
small tables (test loss climbs) from digits (test loss keeps falling)? On
separable data a homogeneous net's iterates converge in direction while their
norm grows (Ji & Telgarsky 2020): late updates point along p itself and only
sharpen the logits. mulo-m trains each task (4 seeds); at 20 checkpoints we
record train/test loss and, per μP group (input, hidden, readout), the mean
over tensors of cos(p_t − p_{t−w}, p_t) over the last window w = run/20 (1:
purely radial) and log(|p_t| / |p_{t−w}|).
Tasks: the screen's non-LM tasks (not held out) and synthetic tables of the
meta-training distribution. Run from results/probes:
../../.venv/bin/python radial_traces.py > radial_traces.txt (2-core CPU)."""
import jax, jax.numpy as jnp, numpy as np, lopt
from meta_tasks import suites
from meta_tasks.families import META_INIT_SCALE
from meta_tasks.user_tasks import PlainMLPTask as Plain
from training.evaluation import lo_optax
from training.task_spec import optimizer_spec
import probe_suites

SEEDS = 4
CHECKPOINTS = 20
GROUPS = ("input", "hidden", "readout")
lo, theta = lopt.load_pretrained("mulo-m")
screen = [(e.task, e.num_steps) for e in suites.get_suite("screen-user-cpu")
          if "lm_" not in e.task.name]
tables = [(Plain(dataset=d, width=64, depth=3, batch_size=b, init_scale_range=META_INIT_SCALE,
                 reserve_valid=True), n)
          for d, b, n in (("synth-a", 32, 1000), ("synth-c", 64, 1000))]


def group_of(kind) -> int | None:
  k = getattr(kind, "kind", kind)
  return {"input": 0, "hidden": 1, "output": 2, "sp_output": 2}.get(k)


def traces(task, num_steps):
  data = task.data()
  groups = [group_of(k) for k in jax.tree.leaves(optimizer_spec(task))]
  per = num_steps // CHECKPOINTS

  def run(seed):
    tx = lo_optax(lo, theta, task, num_steps)
    k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init(k_init)

    step = probe_suites.train_step(task, tx, data, k_data)

    def chunk(carry, c):
      before = carry[0]
      carry, _ = jax.lax.scan(step, carry, c * per + jnp.arange(per))
      params = carry[0]
      cos = [[] for _ in GROUPS]
      grow = [[] for _ in GROUPS]
      for g, p0, p1 in zip(groups, jax.tree.leaves(before), jax.tree.leaves(params)):
        if g is None or p1.ndim < 2:
          continue
        d, n1 = (p1 - p0).ravel(), jnp.linalg.norm(p1)
        cos[g].append(jnp.dot(d, p1.ravel()) / (jnp.linalg.norm(d) * n1 + 1e-30))
        grow[g].append(jnp.log(n1 / (jnp.linalg.norm(p0) + 1e-30)))
      ev = task.sample_eval_batch(jax.random.PRNGKey(2**20), "test", data=data)
      tr = task.sample_eval_batch(jax.random.PRNGKey(2**20), "train", data=data)
      mean = lambda xs: jnp.mean(jnp.stack(xs)) if xs else jnp.nan
      out = jnp.stack([task.metrics(params, tr)["loss"], task.metrics(params, ev)["loss"]]
                      + [mean(x) for x in cos] + [mean(x) for x in grow])
      return carry, out

    _, rows = jax.lax.scan(chunk, (params, tx.init(params)), jnp.arange(CHECKPOINTS))
    return rows

  return np.asarray(jax.jit(jax.vmap(run))(jnp.arange(SEEDS)))


print(f"mulo-m, {SEEDS} seeds, mean over seeds at each 1/{CHECKPOINTS} of the run: train / test "
      "loss, then per μP group cos(Δp over the window, p) and log(|p_t|/|p_t-w|) (matrices only)",
      flush=True)
names = ["train", "test"] + [f"cos_{g}" for g in GROUPS] + [f"grow_{g}" for g in GROUPS]
for task, n in screen + tables:
  r = np.nanmean(traces(task, n), axis=0)
  print(f"\n{task.name}@{n}", flush=True)
  for name, col in zip(names, r.T):
    print(f"  {name:12s} " + " ".join(f"{x:7.3g}" for x in col), flush=True)
