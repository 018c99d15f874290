"""One-off check of lopt.validation_brake on the screen suite: each task with a
validation split carved from its training rows (reserve_valid: the optimizer
then trains on 80% of them), the validation loss on 4 fixed batches every
EVERY = steps/100 steps passed as valid_loss=, at brake sharpness 0 (off: the
cost of the carved rows alone) and the grid SHARP; the shipped mulo-m and
AdamW at the screen report's tuned LRs, seeds 0..SEEDS-1. The test loss is on
the test split, as in every report.
Run from results/probes: ../../.venv/bin/python validation_brake.py [SHARP [SEEDS]]
(2-core CPU). Env: MARGIN (the brake's margin, default 0), TASKS (comma-separated
substrings of task names, default all). Output: validation_brake_screen8.txt
(10,30 8; the brake before it had a margin), validation_brake_margin_screen8.txt
(MARGIN=0.1 TASKS=mlp_digits,wine ... 30,100 8); GAP=κ: the gap mode (brake_tx.py),
validation_brake_gap_screen8.txt (GAP=30 ... 0.5,1 8); SUITE=heldout: the held-out
tasks, mulo-m only, validation_brake_gap_heldout8.txt (SUITE=heldout GAP=30 ... 1 8)."""
import dataclasses, os, sys
import jax, jax.numpy as jnp, numpy as np, optax, lopt
from brake_tx import validation_brake
import probe_suites
from training.evaluation import lo_optax
from training.sweep import _final_metrics

sharp = [0.0] + [float(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "10,30").split(",")]
seeds = jnp.arange(int(sys.argv[2]) if len(sys.argv) > 2 else 3, dtype=jnp.uint32)
MARGIN = float(os.environ.get("MARGIN", "0"))        # the brake's margin
GAP = float(os.environ["GAP"]) if os.environ.get("GAP") else None  # gap mode: its ratio κ
TASKS = os.environ.get("TASKS", "")                  # a substring filter of task names
# SUITE=heldout: heldout-user-cpu and the width-512 task of heldout-width-cpu,
# mulo-m only, with tuned AdamW's numbers (full training split) from the
# shipped held-out report (checkpoints/mulo-m/metadata.json).
HELDOUT = os.environ.get("SUITE", "screen") == "heldout"
ADAMW_HELDOUT = probe_suites.adamw_heldout()
lo, theta = lopt.load_pretrained("mulo-m")
ADAMW_LR = {"user-mlp_digits_w64_d3_b64": 0.01, "user-mlp_wine_w64_d3_b32": 3e-4,
            "user-cnn_digitsaug_w16_d2_b128": 0.01, "user-lm_pydocs_t32_w32_d1_h2_b16": 0.01,
            "user-mlp_teacher_w64_d3_b64": 1e-3, "user-mlp_wine_w128_d3_b16": 1e-4}


def runs(task, steps, make_tx):
  """(test loss, train loss, max spike, final multiplier) [sharpness, seed]."""
  data, every = task.data(), max(steps // 100, 1)
  def run(s, seed):
    tx = make_tx(s)
    k_init, k_data = jax.random.split(jax.random.PRNGKey(seed))
    params = task.init(k_init)
    state = tx.init(params)
    valid = lambda p: _final_metrics(task, p, data, "valid", 4)["loss"]
    def step(carry, t):
      params, state, v = carry
      k_batch, k_loss = jax.random.split(jax.random.fold_in(k_data, t))
      loss, grads = jax.value_and_grad(task.loss)(params, task.sample_batch(k_batch, data=data), k_loss)
      v = jax.lax.cond(t % every == 0, valid, lambda p: v, params)
      updates, state = tx.update(grads, state, params, loss=loss, valid_loss=v)
      return (optax.apply_updates(params, updates), state, v), loss
    (params, state, _), losses = jax.lax.scan(step, (params, state, jnp.float32(0)), jnp.arange(steps))
    test = _final_metrics(task, params, data, "test", 4)["loss"]
    train = _final_metrics(task, params, data, "train", 4)["loss"]
    return test, train, jnp.max(losses) / losses[0], state[-1].mult
  f = jax.jit(jax.vmap(jax.vmap(run, (None, 0)), (0, None)))
  return [np.asarray(x) for x in f(jnp.asarray(sharp, jnp.float32), seeds)]


print(f"{'heldout' if HELDOUT else 'screen'}, validation brake (margin {MARGIN:g}, gap {GAP}) at sharpness {sharp} (0: off), reserve_valid, {len(seeds)} seeds: "
      "test loss / final train loss / max spike / final multiplier (means over seeds)", flush=True)
entries = probe_suites.entries("heldout" if HELDOUT else "screen")
for e in entries:
  if not any(t in e.task.name for t in TASKS.split(",")):
    continue
  try:
    task = dataclasses.replace(e.task, reserve_valid=True)
    task.sample_eval_batch(jax.random.PRNGKey(0), "valid", data=task.data())
  except (TypeError, ValueError) as err:
    print(f"{e.task.name}: no validation split ({err})", flush=True)
    continue
  steps, line = e.num_steps, f"{task.name}@{e.num_steps}:"
  optimizers = [("mulo-m", lambda: lo_optax(lo, theta, task, steps))]
  if not HELDOUT:
    optimizers.append((f"adamw({ADAMW_LR[e.task.name]:g})", lambda: optax.adamw(ADAMW_LR[e.task.name])))
  for name, base in optimizers:
    test, train, spike, mult = runs(task, steps, lambda s: optax.chain(base(), validation_brake(s, margin=MARGIN, gap=GAP)))
    line += f" {name} " + " | ".join(f"s{s:g} {test[i].mean():.4f} / {train[i].mean():.2g} / "
                                     f"{spike[i].max():.2f} / {mult[i].mean():.2g}"
                                     for i, s in enumerate(sharp)) + ";"
  a = ADAMW_HELDOUT.get(f"{e.task.name}@{steps}") if HELDOUT else None
  if a:
    line += (f" tuned AdamW (all training rows) {a['adamw_test_loss']:.4f}; ratio "
             + " ".join(f"{test[i].mean() / a['adamw_test_loss']:.3f}" for i in range(len(sharp))))
  print(line, flush=True)
