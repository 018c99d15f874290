"""Per-tensor update sizes on unseen_models2's GRU: the RMS of each update over
the RMS of the tensor, averaged over updates 1-100 and 1001-1500, for mulo-m,
theta = 0 (the hand form) and AdamW at its tuned 1e-2. Seed 0.
Run from the repo root: .venv/bin/python results/probes/gru_update_sizes.py"""
import os, sys
sys.argv = [sys.argv[0], "1"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax, jax.numpy as jnp, numpy as np, optax
import lopt
import unseen_models as um, unseen_models2 as um2
task = next(t for t in um2.make_tasks() if t["name"] == "gru")
LO, TH = lopt.load_pretrained("mulo-m")


def lo(theta):
  def make(task, params):
    base = task["base"].init({"params": jax.random.PRNGKey(0)}, task["data"][0][:2], train=False)["params"]
    return LO.as_optax(theta, num_steps=task["steps"], mup=lopt.mup.infer_kinds(params, base))
  return make


def sizes(make_tx, seed=0):
  model = task["model"]
  xt, yt = jnp.asarray(task["data"][0]), jnp.asarray(task["data"][1]).astype(jnp.int32)
  key = jax.random.PRNGKey(seed)
  params = model.init({"params": key}, xt[:2], train=False)["params"]
  tx = make_tx(task, params)

  def step(carry, t):
    p, s = carry
    idx = jax.random.choice(jax.random.fold_in(key, t), xt.shape[0], (task["batch"],), replace=False)
    f = lambda p: um.loss_fn("xent", model.apply({"params": p}, xt[idx], train=True), yt[idx])
    loss, g = jax.value_and_grad(f)(p)
    u, s = tx.update(g, s, p, loss=loss)
    rel = jax.tree_util.tree_map(lambda a, b: jnp.sqrt(jnp.mean(a * a) / (jnp.mean(b * b) + 1e-30)), u, p)
    return (optax.apply_updates(p, u), s), rel

  _, rel = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(task["steps"])))(params)
  return rel


if __name__ == "__main__":
  runs = {"mulo-m": sizes(lo(TH)), "theta=0": sizes(lo(LO.init(jax.random.PRNGKey(0)))),
          "adamw 1e-2": sizes(um.adamw(1e-2))}
  print("GRU, seed 0: mean over updates of rms(update)/rms(tensor), updates 1-100 | 1001-1500")
  print(f"  {'tensor':22s}" + "".join(f"{n:>24s}" for n in runs))
  flat = {n: jax.tree_util.tree_flatten_with_path(r)[0] for n, r in runs.items()}
  for i, (path, _) in enumerate(flat["mulo-m"]):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    cells = [f"{float(np.mean(v[i][1][:100])):11.2e} |{float(np.mean(v[i][1][1000:])):10.2e}" for v in flat.values()]
    print(f"  {name:22s}" + "".join(f"{c:>24s}" for c in cells), flush=True)
