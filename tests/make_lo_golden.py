"""Writes tests/data/lo_golden.npz: updates of the μLO reference form and the
shipped robust forms mulo-r (mulo-m until 2026-12-04) / mulo-s / sp-lo forms on a small fixed pytree (2-D, 1-D, 4-D
and scalar leaves; 4 steps; with and without loss; μP spec; num_steps set).
It was run once before the step-rule refactor (issue 20); ``test_lo_golden``
checks that the current code reproduces these updates. Re-running it
overwrites the reference: do that only for an intended change of the forms.

    .venv/bin/python tests/make_lo_golden.py
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import lopt

OUT = Path(__file__).parent / "data" / "lo_golden.npz"
NUM_STEPS, STEPS = 6, 4


def problem():
  rng = np.random.default_rng(0)
  params = {"dense": rng.normal(size=(6, 5)).astype(np.float32),
            "bias": rng.normal(size=(5,)).astype(np.float32),
            "conv": rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
            "scale": np.float32(rng.normal())}
  grads = [jax.tree_util.tree_map(lambda p: rng.normal(size=np.shape(p)).astype(np.float32),
                                  params) for _ in range(STEPS)]
  grads[2]["bias"] = np.zeros((5,), np.float32)  # a tensor with no gradient this step
  mup = {"dense": lopt.mup.Kind("hidden", 6), "bias": "vector",
         "conv": lopt.mup.Kind("input", 18), "scale": "vector"}
  return params, grads, mup


def forms():
  out = {"reference": (lopt.MLPLOpt(), lopt.MLPLOpt().init(jax.random.PRNGKey(0)))}
  for name in ("mulo-r", "mulo-s", "sp-lo"):
    out[name] = lopt.load_pretrained(name)
  return out


def run(lo, theta, with_loss: bool):
  params, grads, mup = problem()
  params = jax.tree_util.tree_map(jnp.asarray, params)
  state = lo.init_state(params)
  update = jax.jit(lambda th, g, s, p, l: lo.update(th, g, s, p, num_steps=NUM_STEPS,
                                                     mup=mup, loss=l))
  outs = []
  for t, g in enumerate(grads):
    loss = jnp.float32(2.0 - 0.3 * t) if with_loss else None
    u, state = update(theta, jax.tree_util.tree_map(jnp.asarray, g), state, params, loss)
    params = jax.tree_util.tree_map(lambda p, x: p + x, params, u)
    outs.append(u)
  return outs


def compute() -> dict:
  arrays = {}
  for name, (lo, theta) in forms().items():
    for with_loss in (False, True):
      for t, u in enumerate(run(lo, theta, with_loss)):
        for k, v in u.items():
          arrays[f"{name}/loss{int(with_loss)}/step{t}/{k}"] = np.asarray(v)
  return arrays


if __name__ == "__main__":
  OUT.parent.mkdir(exist_ok=True)
  np.savez_compressed(OUT, **compute())
  print(f"wrote {OUT}")
