"""The meta-gradient's signal and noise at a θ held still (outer LR 1e-12, no
averaging): a29's recipe (32 pairs per task, 14 tasks, σ = 0.01) at θ₀, the
recipe's untrained θ ("theta0"), or at a27's θ̄@3000 ("a27"), fresh draws
(seed 21), logged as every run logs them; read with scripts/meta_grad_snr.py.
SIGMA (default 0.01, the recipe's) sets the perturbation's size.

    .venv/bin/python results/probes/meta_grad_snr_held.py theta0|a27 STEPS [SIGMA]
(run from the repository root; writes runs/snr-WHICH, or runs/snr-WHICH-sigmaSIGMA
with SIGMA given). Output: meta_grad_snr.txt.
"""
import os, sys
os.environ.setdefault("WANDB_MODE", "offline")
from training import config as config_lib, trainer
which = sys.argv[1]
init = None if which == "theta0" else "results/candidates/mulo-a27-3000"
sigma = float(sys.argv[3]) if len(sys.argv) > 3 else 0.01
cfg = config_lib.get_preset("mulo-a29-cpu", init_theta=init, outer_lr=1e-12, outer_final_lr=1e-12,
                            sigma=sigma,
                            validate_every=0, outer_steps=int(sys.argv[2]), theta_ema=0.0,
                            checkpoint_every=100, log_every=10, seed=21)
trainer.run(cfg, f"runs/snr-{which}" + (f"-sigma{sys.argv[3]}" if len(sys.argv) > 3 else ""),
            progress=False)
