"""lopt: learned optimizers for JAX, as Optax transformations."""

from lopt import mup

__all__ = ["mup"]
