"""Shared by the one-off probes: optax wrappers that rescale another
transformation's updates."""
import jax, jax.numpy as jnp, optax, lopt


def scale_group(spec, kinds, m):
  """Multiplies the updates of the tensors whose μP kind is in ``kinds`` by ``m``."""
  is_kind = lambda x: isinstance(x, (str, lopt.mup.Kind))
  kind = lambda k: k if isinstance(k, str) else k.kind
  mask = jax.tree.map(lambda k: kind(k) in kinds, spec, is_leaf=is_kind)
  def update(u, state, params=None):
    return jax.tree.map(lambda x, on: x * m if on else x, u, mask), state
  return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


def restrained(inner, alpha):
  """``inner``'s update of each tensor × clip((rms g / rms g at update 1) ** alpha, 0.1, 1)."""
  rms = lambda g: jnp.sqrt(jnp.mean(jnp.square(g.astype(jnp.float32))) + 1e-30)

  def init(params):
    return (inner.init(params), jax.tree.map(lambda p: jnp.zeros((), jnp.float32), params),
            jnp.zeros((), jnp.int32))

  def update(grads, state, params=None, **extra):
    s, g0, count = state
    g0 = jax.tree.map(lambda g, z: jnp.where(count == 0, rms(g), z), grads, g0)
    u, s = inner.update(grads, s, params, **extra)
    u = jax.tree.map(lambda x, g, z: x * jnp.clip((rms(g) / z) ** alpha, 0.1, 1.0), u, grads, g0)
    return u, (s, g0, count + 1)
  return optax.GradientTransformationExtraArgs(init, update)
