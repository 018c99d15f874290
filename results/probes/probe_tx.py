"""Shared by the one-off probes: an optax transformation that multiplies the
updates of the tensors whose μP kind is in ``kinds`` by ``m``."""
import jax, optax, lopt


def scale_group(spec, kinds, m):
  is_kind = lambda x: isinstance(x, (str, lopt.mup.Kind))
  kind = lambda k: k if isinstance(k, str) else k.kind
  mask = jax.tree.map(lambda k: kind(k) in kinds, spec, is_leaf=is_kind)
  def update(u, state, params=None):
    return jax.tree.map(lambda x, on: x * m if on else x, u, mask), state
  return optax.GradientTransformation(lambda p: optax.EmptyState(), update)
