"""lopt: learned optimizers for JAX, as Optax transformations.

    import lopt
    lo = lopt.MLPLOpt()                       # μLO config (the reference form)
    lo = lopt.forms.robust(hidden_size=8)     # the shipped form: lopt.step_rules composed
    theta = lo.init(jax.random.PRNGKey(0))    # its weights θ
    tx = lo.as_optax(theta, num_steps=1000, mup=lopt.mup.infer_kinds(params, base_params))

    tx = lopt.pretrained_optax("mulo-m", num_steps=1000, mup=kinds)  # shipped, meta-trained
    lo = lopt.AdaptiveLOpt()                  # μAdamW at θ=0 + bounded learned adaptation
    velo = lopt.VeLOpt(mup=True)              # VeLO-style LO (μVeLO); its update needs loss=
    tx = lopt.baselines.get("adamw", learning_rate=1e-3)             # tuned-baseline registry
    tx = lopt.invariant_norms.keep_invariant_norms(tx)  # BatchNorm: hold scale-invariant norms

Works with optax, linen's ``TrainState`` and flax NNX's ``nnx.Optimizer``
(``opt.update(model, grads, loss=loss)``); ``lopt.mup`` takes NNX modules and states.
"""

from lopt import adaptive, baselines, features, forms, invariant_norms, mup, step_rules, velo
from lopt.adaptive import AdaptiveLOpt, AdaptiveLOptState
from lopt.mlp_lopt import Features, MLPLOpt, MLPLOptState
from lopt.velo import VeLOpt, VeLOptState
from lopt.pretrained import (available, check_num_steps, load_metadata, load_pretrained,
                             pretrained_optax, save_pretrained)

__all__ = ["AdaptiveLOpt", "AdaptiveLOptState", "Features", "MLPLOpt", "MLPLOptState", "VeLOpt", "VeLOptState", "available",
           "baselines", "check_num_steps", "features", "forms", "invariant_norms", "load_metadata",
           "load_pretrained", "mup", "pretrained_optax", "save_pretrained", "step_rules", "velo"]
