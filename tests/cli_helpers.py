"""Shared by the tests: the fast `tiny` config and the scripts' mains (CLI
robustness tests), and the Pallas grids of a jaxpr (fused-kernel tests)."""

import importlib.util
import os

from training import config as config_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The `tiny` preset shrunk: quadratic inner tasks, 2 pairs, K=5, horizons 10-20.
FAST = dict(distribution="quadratic", num_pairs=2, truncation_length=5, min_horizon=10,
            max_horizon=20, outer_steps=6, warmup_steps=2, checkpoint_every=2,
            keep_checkpoints=5, log_every=1, wandb_mode="disabled")
FAST_FLAGS = ["--preset", "tiny", *(f"--{k}={v}" for k, v in FAST.items()), "--no_progress"]


def fast_config(**overrides):
  return config_lib.get_preset("tiny", **{**FAST, **overrides})


def load_script(name):
  spec = importlib.util.spec_from_file_location(f"_cli_{name}",
                                                os.path.join(REPO_ROOT, "scripts", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def call(main, argv, capsys):
  """(exit status, stdout, stderr) of ``main(argv)``, SystemExit included."""
  capsys.readouterr()
  try:
    code = main(argv)
  except SystemExit as e:
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def pallas_grids(jaxpr):
  """Grids of every pallas_call in a (nested) jaxpr (the fused-kernel tests)."""
  import jax.extend
  grids = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "pallas_call":
      grids.append(tuple(eqn.params["grid_mapping"].grid))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      grids += pallas_grids(sub)
  return grids
