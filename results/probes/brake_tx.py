"""Validation brake (a probe, not part of lopt): slow every update once the
validation loss rises (``gap=None``), or once it exceeds the training loss by
more than the ratio ``gap`` (``gap=κ``, below).

An optimizer that trains fast reaches the point where a small training set is
memorized early, and from there the test loss climbs while the training loss
still falls (the shipped ``mulo-m`` on the screen's wine-w128 table: best test
loss 0.11 at step 420, 0.61 at step 3,000; results/probes/test_trajectory_screen.txt).
A tuned AdamW avoids that by a small learning rate, i.e. by training slowly
everywhere. The brake reads what a user with a validation split has: the
validation loss, passed as ``update(..., valid_loss=)``, and multiplies the
whole update (step and decoupled decay alike) by

    m = clip(exp(-sharpness · max(log v̄ - log v̄_best - margin, 0)), 1/bound, 1)

where v̄ is an exponential average of the validation losses passed and
v̄_best its lowest value so far. While the validation loss keeps falling
m = 1 (the update is unchanged), and so while it wanders within ``margin``
(in log) of its best; beyond that, ``sharpness=20`` gives m ≈ 0.15 per 10%
more, and the brake settles where the validation loss stops rising. It engages only after v̄_best is below ``engage`` × the first
validation loss, so an early transient (a loss spike in the first steps)
cannot stall training before it has learned anything.

With ``gap=κ`` the brake reads the generalization gap instead: r = v / l̄,
the validation loss over an exponential average of the training losses passed
as ``loss=``, and m = clip((κ / r) ** sharpness, 1/bound, 1): 1 while the
validation loss is within κ× the training loss. On the test split of the
shipped mulo-m's runs that ratio is 3-18 on the digits MLPs, the CNN, iris
and the LMs, and 50-2000 on the memorized tables.

It is an ordinary optax transformation, chained after any optimizer:

    tx = optax.chain(lopt.pretrained_optax("mulo-m", num_steps=n, mup=kinds),
                     lopt.validation_brake())
    updates, state = tx.update(grads, state, params, loss=loss, valid_loss=v)

``valid_loss`` may be the same value for several updates (a user who
evaluates every k steps passes the last one). Without ``valid_loss`` (None)
the multiplier stays where it was (1 before the first one). Non-finite
validation losses are ignored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

EMA_DECAY = 0.9   # of the log validation loss (a few evaluations' memory)


class ValidationBrakeState(NamedTuple):
  log_first: jax.Array   # log of the first finite validation loss (nan before it)
  log_ema: jax.Array     # its exponential average (nan before the first)
  log_best: jax.Array    # the lowest log_ema so far (nan before the first)
  mult: jax.Array        # this update's multiplier, for inspection
  train_ema: jax.Array   # exponential average of the training losses (gap mode; nan before)


def _check(name: str, value: Any, lo: float, hi: float) -> None:
  if not (isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value < hi):
    raise ValueError(f"validation_brake: {name} must be a float in [{lo:g}, {hi:g}), "
                     f"got {value!r}.")


def brake_multiplier(log_ema: jax.Array, log_best: jax.Array, log_first: jax.Array,
                     sharpness: Any, bound: float, engage: float, margin: Any) -> jax.Array:
  """The multiplier from the averaged, best and first log validation losses."""
  rise = jnp.maximum(log_ema - log_best - margin, 0.0)
  m = jnp.exp(jnp.maximum(-sharpness * rise, -np.log(bound)))
  engaged = log_best <= log_first + np.log(engage)
  return jnp.where(engaged & jnp.isfinite(rise), m, 1.0).astype(jnp.float32)


def validation_brake(sharpness: Any = 20.0, bound: float = 1000.0, engage: float = 0.8,
                     margin: Any = 0.1, gap: Any = None) -> optax.GradientTransformationExtraArgs:
  """Scale updates by the validation brake (see the module docstring).

  sharpness: how fast the multiplier falls as the averaged validation loss
    rises above its best (per unit of log-loss); 0 turns the brake off. A
    jax array is accepted unchecked (a grid of it under vmap).
  bound: the smallest multiplier is 1/bound.
  margin: how far (in log) the averaged validation loss may rise above its
    best before the brake acts: the noise of a small validation set. A jax
    array is accepted unchecked.
  engage: the brake acts once the averaged validation loss has fallen below
    ``engage`` × the first one (1: from the start).
  """
  if not isinstance(sharpness, jax.Array):  # a traced scalar: one point of a grid under vmap
    _check("sharpness", sharpness, 0.0, 1e6)
  if not isinstance(margin, jax.Array):
    _check("margin", margin, 0.0, 10.0)
  _check("bound", bound, 1.0, 1e12)
  if not (isinstance(engage, (int, float)) and not isinstance(engage, bool) and 0 < engage <= 1):
    raise ValueError(f"validation_brake: engage must be a float in (0, 1], got {engage!r}.")

  def init_fn(params):
    del params
    nan = jnp.full((), jnp.nan, jnp.float32)
    return ValidationBrakeState(nan, nan, nan, jnp.ones((), jnp.float32), nan)

  def update_fn(updates, state, params=None, valid_loss=None, loss=None, **extra):
    del params, extra
    train_ema = state.train_ema
    if gap is not None and loss is not None:
      l = jnp.asarray(loss, jnp.float32)
      fresh = jnp.where(jnp.isfinite(train_ema), EMA_DECAY * train_ema + (1 - EMA_DECAY) * l, l)
      train_ema = jnp.where(jnp.isfinite(l), fresh, train_ema)
    if gap is not None:
      if valid_loss is None or loss is None:
        mult = state.mult
      else:
        log_r = (jnp.log(jnp.maximum(jnp.asarray(valid_loss, jnp.float32), 1e-30))
                 - jnp.log(jnp.maximum(train_ema, 1e-30)))
        m = jnp.exp(jnp.clip(sharpness * (jnp.log(gap) - log_r), -np.log(bound), 0.0))
        mult = jnp.where(jnp.isfinite(log_r), m, state.mult).astype(jnp.float32)
      updates = jax.tree.map(lambda u: (u * mult).astype(u.dtype), updates)
      return updates, state._replace(mult=mult, train_ema=train_ema)
    if valid_loss is None:
      log_first, log_ema, log_best = state.log_first, state.log_ema, state.log_best
      mult = state.mult
    else:
      log_v = jnp.log(jnp.maximum(jnp.asarray(valid_loss, jnp.float32), 1e-30))
      ok = jnp.isfinite(log_v)
      started = jnp.isfinite(state.log_ema)
      log_first = jnp.where(ok & ~started, log_v, state.log_first)
      ema = jnp.where(started, EMA_DECAY * state.log_ema + (1 - EMA_DECAY) * log_v, log_v)
      log_ema = jnp.where(ok, ema, state.log_ema)
      log_best = jnp.where(ok, jnp.fmin(state.log_best, log_ema), state.log_best)
      mult = brake_multiplier(log_ema, log_best, log_first, sharpness, bound, engage, margin)
    updates = jax.tree.map(lambda u: (u * mult).astype(u.dtype), updates)
    return updates, ValidationBrakeState(log_first, log_ema, log_best, mult, train_ema)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
