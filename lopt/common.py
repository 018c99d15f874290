"""Checks and helpers shared by the learned optimizers (``MLPLOpt``, ``VeLOpt``),
including their per-element MLP."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lopt import mup as mup_lib
from lopt import step_rules

SUPPORTED_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16, jnp.float64)


def sanitize_grad(g: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``g`` in float32 with non-finite elements set to 0, and how many there were.

  The LOs' features are normalized by per-tensor means, so one NaN would
  otherwise turn every element of the tensor (and its accumulators) NaN."""
  g32 = jnp.asarray(g, jnp.float32)
  ok = jnp.isfinite(g32)
  return jnp.where(ok, g32, 0.0), jnp.sum(~ok, dtype=jnp.int32)


def check_param_dtypes(params: Any) -> None:
  for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = jnp.result_type(p)
    if not any(dtype == d for d in SUPPORTED_DTYPES):
      raise TypeError(
          f"Parameter {jax.tree_util.keystr(path)} has dtype {dtype}; the learned "
          "optimizer supports floating-point params (float32, bfloat16, float16, "
          "float64). Mask non-float leaves out with optax.masked(...).")


def check_num_steps(num_steps, required_by: str | None = None) -> None:
  """Validate ``num_steps``. ``required_by``: why this LO cannot run without it
  (None: it may be left out, and the fraction-of-training feature reads 0)."""
  # A jax array is allowed (meta-training draws a horizon per particle); only
  # concrete Python values can be checked here.
  if num_steps is None:
    if required_by is not None:
      raise ValueError(
          f"num_steps is required: {required_by}. Pass num_steps=<your planned number of "
          "training steps (optimizer updates)>, e.g. lo.as_optax(theta, num_steps=10_000, "
          "mup=kinds) or lopt.pretrained_optax(name, num_steps=10_000, mup=kinds).")
    return
  if isinstance(num_steps, jax.Array):
    return
  if not isinstance(num_steps, (int, np.integer)) or isinstance(num_steps, bool) or num_steps <= 0:
    raise ValueError(f"num_steps must be a positive int (the planned length of training) "
                     f"or None if unknown, got {num_steps!r}.")


def check_epochs(epochs) -> None:
  """Validate ``epochs``, the planned passes over the training data (num_steps ×
  batch size ÷ training examples): None (unknown) or a finite number >= 0; a
  jax array (meta-training's per-particle value) is not checked here."""
  if epochs is None or isinstance(epochs, jax.Array):
    return
  if (not isinstance(epochs, (int, float, np.integer, np.floating)) or isinstance(epochs, bool)
      or not np.isfinite(epochs) or epochs < 0):
    raise ValueError(f"epochs must be a finite number >= 0 (num_steps × batch size ÷ training "
                     f"examples; 0 for fresh data every step) or None if unknown, got {epochs!r}.")


def step_multipliers(lo: Any, mup: Any, params: Any) -> Any:
  """Per-tensor μP step multipliers of an LO config ``lo`` (1 everywhere in SP
  mode); a μP-mode LO without a ``mup`` spec gets an error naming the fixes."""
  if not lo.mup:
    return jax.tree_util.tree_map(lambda _: 1.0, params)
  if mup is None:
    raise ValueError(
        f"This learned optimizer ({type(lo).__name__}) is in μP mode and needs to know "
        "which tensors are hidden matrices: pass mup=<spec> (see lopt.mup.kinds_from_paths "
        f"/ lopt.mup.infer_kinds), or use an SP-mode LO ({type(lo).__name__}(mup=False)).")
  return mup_lib.multipliers(mup, params, input_fan_in=getattr(lo, "input_fan_in", None))


def map_tensors(lo: Any, one: Any, grads: Any, params: Any, states: Any, is_state: Any,
                mup: Any) -> tuple[Any, Any, jax.Array]:
  """``one(g, p, state, mult, group) -> (update, state, nonfinite)`` over the tensors,
  with each tensor's step multiplier (``step_multipliers``) and μP step group: 0
  (input, vector) or 1 (hidden-like); SP mode has no kinds, so every tensor is in
  group 0. Returns (updates, states) in the structure of ``grads`` and the
  summed nonfinite counts."""
  mults = step_multipliers(lo, mup, params)
  groups = (jax.tree_util.tree_map(lambda _: 0, params) if not lo.mup or mup is None
            else mup_lib.step_groups(mup, params))
  flat_g, treedef = jax.tree_util.tree_flatten(grads)
  outs = [one(*args) for args in zip(
      flat_g, treedef.flatten_up_to(params), jax.tree_util.tree_leaves(states, is_leaf=is_state),
      treedef.flatten_up_to(mults), treedef.flatten_up_to(groups))]
  unflatten = lambda i: jax.tree_util.tree_unflatten(treedef, [out[i] for out in outs])
  return unflatten(0), unflatten(1), sum((out[2] for out in outs), jnp.zeros((), jnp.int32))


def config_record(lo: Any) -> dict[str, Any]:
  """An LO config's JSON record (metadata.json ``config``, ``MetaTrainConfig.lo``):
  its fields, with its step rules, where it has them, as rule records."""
  record = dataclasses.asdict(lo)
  if "step" in record:
    record["step"] = step_rules.to_record(lo.step)
  return record


def check_record_fields(cls: type, record: dict[str, Any], legacy: Any = ()) -> None:
  """Refuse the fields of a config record that ``cls`` does not have (``legacy``:
  old field names that its ``from_record`` still converts)."""
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(record) - known - set(legacy))
  if unknown:
    raise ValueError(f"{cls.__name__} config fields {unknown} are not understood by this lopt "
                     f"(known: {sorted(known)}).")


def check_theta_tree(expected: Any, theta: Any, owner: Any) -> None:
  """Raise a ValueError naming the tensor if ``theta`` does not have ``expected``'s
  tree and shapes (``owner``, the LO config, is named in the message)."""
  exp_flat, got_flat = ({jax.tree_util.keystr(k): v for k, v in
                         jax.tree_util.tree_flatten_with_path(t)[0]} for t in (expected, theta))
  missing = sorted(set(exp_flat) - set(got_flat))
  extra = sorted(set(got_flat) - set(exp_flat))
  if missing or extra:
    raise ValueError(f"θ does not match {owner}: missing tensors {missing}, "
                     f"unexpected tensors {extra}.")
  for name, spec in exp_flat.items():
    if tuple(np.shape(got_flat[name])) != tuple(spec.shape):
      raise ValueError(f"θ tensor {name} has shape {tuple(np.shape(got_flat[name]))} but "
                       f"{owner} expects {tuple(spec.shape)}; this θ comes from a "
                       "different architecture.")


def optax_from_lo(lo: Any, theta: Any, num_steps: Any, mup: Any, needs: list[str],
                  epochs: Any = None):
  """``lo`` at fixed θ as an optax transformation (what every LO's ``as_optax``
  returns). ``needs``: why this LO cannot run without num_steps (empty: it can).
  ``update(grads, state, params, loss=None)``; NNX variables are unwrapped and
  the updates come back in the structure of the gradients. ``epochs`` (planned
  passes over the data) reaches ``lo.update`` where given."""
  import optax
  lo.check_theta(theta)
  check_epochs(epochs)
  extra = {} if epochs is None else {"epochs": float(epochs)}
  check_num_steps(num_steps, required_by=(
      f"this learned optimizer ({type(lo).__name__}) " + " and ".join(needs) if needs else None))

  def init_fn(params):
    params = mup_lib.unwrap(params)
    step_multipliers(lo, mup, params)  # fail early on a bad μP spec
    return lo.init_state(params)

  def update_fn(updates, state, params=None, loss=None, **extra_args):
    del extra_args
    new, state = lo.update(theta, mup_lib.unwrap(updates), mup_lib.unwrap(state),
                           mup_lib.unwrap(params), num_steps=num_steps, mup=mup,
                           loss=mup_lib.unwrap(loss), **extra)
    return mup_lib.rewrap(updates, new), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---------------------------------------------------------------- per-element MLP
def _dense(channels: list[jax.Array], w: jax.Array, b: jax.Array) -> list[jax.Array]:
  """A dense layer over per-element channels: out_j = sum_i x_i w_ij + b_j."""
  return [sum(x * w[i, j] for i, x in enumerate(channels)) + b[..., j] for j in range(w.shape[1])]


def stacked_mlp(feats, layers):
  """The per-element MLP with stacked features and matmuls: the form autodiff
  sees (the channel form's VJP needs a reduction per scalar weight and is slow
  to compile)."""
  x = jnp.stack(feats, axis=-1)
  for w, b in layers[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = layers[-1]
  out = x @ w + b
  return out[..., 0], out[..., 1]


@jax.custom_vjp
def per_element_mlp(feats: list[jax.Array], layers: tuple) -> tuple[jax.Array, jax.Array]:
  """(direction, magnitude) of a per-element MLP over normalized features.
  ``layers`` is ((w, b), ...), ReLU between layers, 2 outputs. Evaluated in the
  fused channel form: every layer elementwise over channel lists, so XLA fuses
  the whole MLP into one pass over the tensor (no ``[*shape, 30]`` intermediate);
  differentiated (reverse mode only) through ``stacked_mlp``."""
  x = list(feats)
  for w, b in layers[:-1]:
    x = [jax.nn.relu(h) for h in _dense(x, w, b)]
  return tuple(_dense(x, *layers[-1]))


# Forward: stacked_mlp's VJP function (a pytree, a Partial) is the residual.
per_element_mlp.defvjp(lambda feats, layers: jax.vjp(stacked_mlp, feats, layers),
                       lambda vjp_fn, cotangents: vjp_fn(cotangents))
