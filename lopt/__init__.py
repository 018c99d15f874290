"""lopt: learned optimizers for JAX, as Optax transformations.

    import lopt
    lo = lopt.MLPLOpt()                       # μLO config
    theta = lo.init(jax.random.PRNGKey(0))    # its weights θ
    tx = lo.as_optax(theta, num_steps=1000, mup=lopt.mup.infer_kinds(params, base_params))
"""

from lopt import features, mup
from lopt.mlp_lopt import MLPLOpt, MLPLOptState

__all__ = ["MLPLOpt", "MLPLOptState", "features", "mup"]
