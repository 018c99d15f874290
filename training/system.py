"""The truncated-unroll protocol that every meta-gradient estimator consumes.

A *truncated system* describes ONE particle: an inner problem that advances K
steps at a time (one truncation) under meta-parameters θ, and resets itself in
place when its episode ends. The estimators in ``training.estimators`` vmap it
over particles and antithetic signs; they never look inside its state.

Protocol (duck-typed, see ``TruncatedSystem``)::

  truncation_length: int                       # K, static
  init_state(key, *, random_offset) -> S       # a fresh particle
  unroll(theta_cur, theta_next, state, key) -> (S, UnrollOutput)   # K steps

``unroll`` runs K steps. Steps up to and including the first episode end use
``theta_cur``; steps after it use ``theta_next``. This lets ES-Single start the
new episode with a fresh perturbation mid-truncation; the other estimators pass
``theta_next = theta_cur``.

Rules an implementation must follow (the estimators' correctness relies on them):

1. Pure and vmappable: no Python side effects, every state leaf an array of a
   fixed shape. Reset in place with ``jnp.where``/``lax.cond``, never by
   changing shapes. ``truncation_length`` is a Python int.
2. All randomness of ``unroll`` (batches, new tasks and horizons drawn at a
   reset) comes from ``key``. Both members of an antithetic pair get the same
   key and the same start state, so they see the same data and the same task.
3. Episode boundaries depend on the state and key only, never on θ: the two
   members of a pair must end their episodes at the same step. The state right
   after a reset must not depend on θ either (it belongs to no perturbation).
4. ``losses[k]`` is the (already normalized) meta-loss of step k; ``ends[k]``
   says the episode ended at step k, i.e. ``losses[k]`` was its last loss and
   the system reset the state after it. A diverged particle signals it with a
   non-finite loss; the estimators then reset it.
5. ``init_state(key, random_offset=True)`` may start the particle part-way into
   its first episode (e.g. a step counter drawn in ``[0, horizon)``), so that
   particles are not in lockstep; it is used by the online estimators at init
   and for NaN resets. ``random_offset=False`` must start at step 0 of an
   episode; FullES uses it.
6. For TBPTT, ``unroll`` must be differentiable with respect to ``theta_cur``
   (the ES estimators only evaluate it).

How to implement one: write a single-step function
``step(theta, state, key) -> (state, loss, end)`` that advances one step and,
when the episode ends, resets the state (new task sample, new horizon) with
``jnp.where``; then ``unroll`` is ``scan_unroll(step, theta_cur, theta_next,
state, key, self.truncation_length)``: one ``lax.scan`` over K steps, jitted
together with the estimator. For learned-optimizer training, ``state`` holds
the inner params, the optimizer state, the step counter, the horizon and the
task's dynamic parameters; ``step`` samples a batch from ``key``, applies the
learned optimizer at ``theta`` and reports the normalized loss.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

PyTree = Any
# (theta, state, key) -> (state, loss, end): one inner step, resetting on `end`.
StepFn = Callable[[PyTree, PyTree, jax.Array], tuple[PyTree, jax.Array, jax.Array]]


class UnrollOutput(NamedTuple):
  """What one truncation of one particle reports."""
  losses: jax.Array  # [K] float32: per-step meta-loss, already normalized
  ends: jax.Array    # [K] bool: the episode ended at this step (state was reset after it)


@runtime_checkable
class TruncatedSystem(Protocol):
  """One particle of a truncated-unroll problem. See the module docstring."""

  truncation_length: int

  def init_state(self, key: jax.Array, *, random_offset: bool) -> PyTree:
    ...

  def unroll(self, theta_cur: PyTree, theta_next: PyTree, state: PyTree,
             key: jax.Array) -> tuple[PyTree, UnrollOutput]:
    ...


def tree_where(cond: jax.Array, a: PyTree, b: PyTree) -> PyTree:
  """`a` where `cond`, else `b`; `cond`'s axes lead every leaf's axes."""

  def select(x, y):
    return jnp.where(jnp.reshape(cond, cond.shape + (1,) * (x.ndim - cond.ndim)), x, y)

  return jax.tree.map(select, a, b)


def scan_unroll(step: StepFn, theta_cur: PyTree, theta_next: PyTree,
                state: PyTree, key: jax.Array,
                length: int) -> tuple[PyTree, UnrollOutput]:
  """Run `length` steps of `step` in one `lax.scan`, switching θ after an end.

  Step k gets the key `fold_in(key, k)`; θ is `theta_next` once the first
  episode end has passed. Implements the `unroll` contract for
  any single-step function, so a system only has to write `step`.
  """

  def body(carry, k):
    state, after_end = carry
    theta = tree_where(after_end, theta_next, theta_cur)
    state, loss, end = step(theta, state, jax.random.fold_in(key, k))
    end = jnp.asarray(end, dtype=bool)
    return (state, after_end | end), (jnp.asarray(loss, jnp.float32), end)

  (state, _), (losses, ends) = jax.lax.scan(
      body, (state, jnp.zeros((), dtype=bool)), jnp.arange(length))
  return state, UnrollOutput(losses=losses, ends=ends)
