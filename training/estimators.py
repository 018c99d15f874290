"""Meta-gradient estimators over any ``TruncatedSystem``.

Five estimators share one interface (``Estimator``)::

  state = est.init(key, theta)                              # EstimatorState
  grad, state, metrics = est.estimate(theta, state, key)    # one outer step

Both are pure and jittable; ``estimate`` is one program (vmap over pairs, a
``lax.scan`` over the K steps inside the system's ``unroll``). Pass a fresh
``key`` to every call, e.g. ``fold_in(run_key, outer_step)``.

Notation: σ the perturbation std, P antithetic pairs, K the truncation length.
A pair runs θ+ε and θ−ε from the same state with the same key; per step
δ_k = loss⁺_k − loss⁻_k, and the truncation meta-loss is the mean over its K
steps, so Δ = Σ_k δ_k / K.

* ``FullES``: one ε per pair, a whole episode from a fresh start
  (``episode_truncations`` truncations scanned inside the jit, steps after the
  first episode end masked out); Δ = L⁺ − L⁻ with L the mean loss over the
  episode's steps; ĝ = Σ ε Δ / (2Pσ²).
* ``TruncatedES``: fresh ε every truncation, no memory; both members restart
  each truncation from the state of the positive member (as in
  learned_optimization). Biased toward the truncated-backprop gradient.
* ``PES``: fresh ε every truncation, accumulator ξ of the ε's applied in the
  current episode; ĝ = Σ ξ Δ / (2Pσ²).
* ``ESSingle`` (noise-reuse ES): one ε per pair per episode; ĝ = Σ ε Δ / (2Pσ²).
* ``TBPTT``: ``jax.grad`` of one truncation's mean loss; 2P independent
  particles (same compute as P pairs).

Episode ends inside a truncation (``UnrollOutput.ends``). Steps up to and
including the first end belong to the old episode, the later ones to a new
episode that started from a θ-independent reset. So Δ splits into
Δ_before + Δ_after and

* PES:       ĝ_pair = [(ξ + ε) Δ_before + ε Δ_after] / (2σ²); afterwards
             ξ ← ε, or 0 if the end was the truncation's last step;
* ES-Single: the system runs the after-part with θ ± ε' (a fresh ε', via
             ``theta_next``), ĝ_pair = [ε Δ_before + ε' Δ_after] / (2σ²),
             and ε' is kept for the new episode;
* TruncatedES: both parts use the current ε.

Online estimates are unbiased per episode: averaged over the T/K truncations
of an episode, PES and ES-Single estimate ∇ of the episode's mean loss — the
same quantity FullES estimates in one go. (With L a per-truncation mean, the
*sum* over an episode's truncations is T/K times FullES; the *mean* equals it.)

Options (antithetic estimators):

* ``delta_clip=c``: the mean δ of each part is clipped to [−c, c] before use.
* ``reference_theta=θ_ref`` (ES-Single, PES): each pair runs a third member at
  θ_ref with the same key (same task sample, init and batches), and the metrics
  add ``ref_gap`` (the sum over the truncation's counted steps of
  mean(loss⁺, loss⁻) − loss_ref) and ``ref_steps`` (how many steps were
  counted: those where a member reported a nonzero loss, as the final-fraction
  mask reports exact zeros), summed over the finite pairs: how θ compares to
  θ_ref on this task, paired, so the task's loss scale and sample drop out.
* ``log_mean_floor=f`` (every estimator): the system's per-step meta-losses
  are linear (normalized losses), and a truncation's objective is log(m + f),
  m the mean over its counted (nonzero) steps, weighted by their share of the
  K steps. For the antithetic estimators each part's Δ is
  log(m⁺ + f) − log(m⁻ + f), before clipping and sign; TBPTT differentiates
  log(m + f). The log of a mean over
  K batches, not the mean of K per-batch logs: on a memorized task most small
  batches read ~0 and a few ~1, and the mean of their logs rewards what the
  mean loss punishes (results/probes/batch_log_bias.txt).
* ``sign_delta=True``: the mean δ of each part is replaced by 2σ·sign(·), so
  ĝ = Σ ε sign(Δ) / (Pσ). This changes the scale: for a locally linear loss
  E[ĝ] ≈ √(2/π) ∇L/‖∇L‖, insensitive to the loss scale (VeLO's long runs).
  Each part is weighted by its share of the K steps, so without an episode end
  this is exactly sign(Δ).

Non-finite losses (the system's divergence signal): the pair gets Δ = 0 and is
left out of the average (ĝ averages over the finite pairs; 0 if none is), both
its particles restart from ``init_state(random_offset=True)`` and its PES ξ
returns to 0, its ES-Single ε to a fresh draw. TBPTT does the same per
particle, also for a non-finite gradient.

Metrics (float32/int32 scalars): ``meta_loss`` (mean over finite pairs of the
mean of L⁺ and L⁻; TBPTT: of L), ``noise_sq`` (E‖ĝ − g‖², the estimate's
noise, from the spread of the per-pair estimates: ‖ĝ‖² − ``noise_sq`` is
unbiased for the squared norm of the gradient ĝ estimates; NaN below 2 finite
pairs), ``nan_resets`` (pairs reset; TBPTT:
particles), ``episodes_finished`` (episode ends seen by finite pairs/particles;
FullES: pairs whose episode ended within the budget), ``delta_abs`` (mean |Δ|,
antithetic estimators), ``episode_length`` (FullES: mean number of unmasked
steps).

Randomness never depends on the device layout: pair i draws everything from
``fold_in(key, i)`` (see ``pair_keys``), then from ``fold_in`` of that with a
fixed tag per purpose (noise, unroll, init, reset).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from training import sharding
from training.system import TruncatedSystem, tree_where

PyTree = Any
Metrics = dict[str, jax.Array]

# Tags of the per-pair sub-keys: one independent stream per purpose.
_NOISE, _UNROLL, _INIT, _RESET, _MEMBER = range(5)


class EstimatorState(NamedTuple):
  """Everything an estimator carries between outer steps; a pure pytree."""
  # system states, leading axes [num_pairs, 2] ([num_pairs, 3] with a reference
  # member; FullES: ())
  particles: PyTree
  noise: PyTree      # θ-shaped, leading [num_pairs]: PES ξ / ES-Single ε; else ()
  step: jax.Array    # int32 []: number of estimates made


class Estimator(Protocol):
  num_pairs: int

  def init(self, key: jax.Array, theta: PyTree) -> EstimatorState:
    ...

  def estimate(self, theta: PyTree, state: EstimatorState,
               key: jax.Array) -> tuple[PyTree, EstimatorState, Metrics]:
    ...


def pair_keys(key: jax.Array, num_pairs: int) -> jax.Array:
  """Key of every pair from its global index: the same on any device count."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      key, jnp.arange(num_pairs, dtype=jnp.uint32))


def perturbation(key: jax.Array, theta: PyTree, sigma: float) -> PyTree:
  """ε ~ N(0, σ² I), shaped and typed like θ."""
  leaves, treedef = jax.tree.flatten(theta)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([
      sigma * jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
      for k, x in zip(keys, leaves)])


def pair_perturbation(key: jax.Array, pair_index: int, theta: PyTree,
                      sigma: float) -> PyTree:
  """The fresh ε that pair `pair_index` draws in an estimate (or ES-Single's
  init) called with `key`."""
  pair_key = jax.random.fold_in(key, pair_index)
  return perturbation(jax.random.fold_in(pair_key, _NOISE), theta, sigma)


def unroll_key(pair_key: jax.Array, truncation_index: int | jax.Array) -> jax.Array:
  """Key handed to `system.unroll` for a pair's `truncation_index`-th
  truncation of one estimate (online estimators run only truncation 0)."""
  return jax.random.fold_in(jax.random.fold_in(pair_key, _UNROLL), truncation_index)


def _antithetic(theta: PyTree, eps: PyTree) -> PyTree:
  """(θ+ε, θ−ε) stacked on a new leading axis of size 2."""
  return jax.tree.map(lambda t, e: jnp.stack([t + e, t - e]), theta, eps)


def _copies(tree: PyTree, members: int = 2) -> PyTree:
  """The same particle state for every member of a pair."""
  return jax.tree.map(lambda x: jnp.stack([x] * members), tree)


def _with_reference(stacked: PyTree, reference: PyTree | None) -> PyTree:
  """Stacked (θ+ε, θ−ε), plus θ_ref as a third member if there is one."""
  if reference is None:
    return stacked
  return jax.tree.map(lambda s, r: jnp.concatenate([s, r[None].astype(s.dtype)]),
                      stacked, reference)


def _reset_diverged(ok: jax.Array, current: PyTree,
                    make_fresh: Callable[[], PyTree]) -> PyTree:
  """Replace the entries where `ok` is False by `make_fresh()`'s.

  Under `lax.cond`, so the fresh particles are only built on the (rare)
  steps where something diverged.
  """
  return jax.lax.cond(jnp.all(ok), lambda: current, lambda: tree_where(ok, current, make_fresh()))


def _all_finite(tree: PyTree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _counted(member_losses: jax.Array) -> jax.Array:
  """Steps where a member reported a nonzero meta-loss ([members, n] -> []):
  the final-fraction mask reports exact zeros for every member."""
  return jnp.sum(jnp.any(member_losses != 0.0, axis=0))


def _check_floor(floor: float | None) -> None:
  if floor is not None and not floor > 0:
    raise ValueError(f"log_mean_floor must be > 0, got {floor}")


def _log_of_mean(sums: jax.Array, counted: jax.Array, floor: float) -> jax.Array:
  """log(sum / counted + floor): the log of a mean over the counted steps."""
  return jnp.log(sums / jnp.maximum(counted, 1) + floor)


def _mean_over(values: jax.Array, count: jax.Array) -> jax.Array:
  return jnp.sum(values, axis=0) / jnp.maximum(count, 1)


def estimate_noise_sq(samples: PyTree, kept: jax.Array) -> jax.Array:
  """E‖ĝ − g‖² of the mean ĝ of the kept per-sample estimates (leaves
  [n, ...], ``kept`` [n] bool): the trace of their sample covariance over the
  number kept, so ‖ĝ‖² − this is unbiased for ‖g‖² (the signal). NaN with
  fewer than 2 kept."""
  n = jnp.sum(kept).astype(jnp.float32)
  def spread(x):
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    w = kept.astype(jnp.float32)[:, None]
    mean = jnp.sum(x * w, axis=0) / jnp.maximum(n, 1.0)
    return jnp.sum(w * jnp.square(x - mean))
  total = sum(spread(x) for x in jax.tree.leaves(samples))
  return jnp.where(n >= 2, total / jnp.maximum(n - 1.0, 1.0) / jnp.maximum(n, 1.0), jnp.nan)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class _Antithetic:
  """Configuration shared by the ES estimators."""
  system: TruncatedSystem
  num_pairs: int
  sigma: float = 0.01
  delta_clip: float | None = None
  sign_delta: bool = False
  mesh: Mesh | None = None
  # θ-shaped 0/1 floats: ε is multiplied by it, so a 0 leaf is never perturbed
  # and its estimate is exactly 0 (frozen parts of θ); None: every leaf.
  noise_mask: PyTree | None = None
  # θ-shaped: a third member per pair, unperturbed at θ_ref (online ES only).
  reference_theta: PyTree | None = None
  # None: Δ from the per-step meta-losses as they are. A floor f > 0: the
  # system's per-step meta-losses are linear, and each part's Δ is
  # log(mean⁺ + f) − log(mean⁻ + f) over its counted (nonzero) steps.
  log_mean_floor: float | None = None

  def __post_init__(self):
    if not self.sigma > 0:
      raise ValueError(f"sigma must be > 0, got {self.sigma}")
    if self.num_pairs < 1:
      raise ValueError(f"num_pairs must be >= 1, got {self.num_pairs}")
    if self.delta_clip is not None and not self.delta_clip > 0:
      raise ValueError(f"delta_clip must be > 0, got {self.delta_clip}")
    _check_floor(self.log_mean_floor)
    if self.reference_theta is not None and getattr(self, "_memory", None) not in (
        "episode_noise", "accumulator"):
      raise ValueError(f"reference_theta needs persistent episodes (es_single or pes); "
                       f"{type(self).__name__} has none.")
    sharding.check_divisible(self.num_pairs, self.mesh)

  @property
  def members(self) -> int:
    return 2 if self.reference_theta is None else 3

  def _pair_keys(self, key: jax.Array) -> jax.Array:
    return sharding.constrain_particles(pair_keys(key, self.num_pairs), self.mesh)

  def _noise(self, pair_key: jax.Array, theta: PyTree) -> PyTree:
    """The pair's fresh ε (``perturbation``), zero where ``noise_mask`` is."""
    eps = perturbation(jax.random.fold_in(pair_key, _NOISE), theta, self.sigma)
    return eps if self.noise_mask is None else jax.tree.map(jnp.multiply, eps, self.noise_mask)

  def _unroll_pair(self, theta_cur, theta_next, states, key):
    """Both members of a pair: stacked θ's and states, one shared key."""
    return jax.vmap(self.system.unroll, in_axes=(0, 0, 0, None))(theta_cur, theta_next, states, key)

  def _part(self, sums: jax.Array, counted: jax.Array, num_steps: jax.Array,
            total_steps: int | jax.Array) -> jax.Array:
    """A run of `num_steps` steps' share of Δ, after clipping / sign.

    `sums` [2]: each member's sum of per-step meta-losses over the run;
    `counted`: how many of its steps carry meta-loss (log_mean_floor only).
    """
    if self.log_mean_floor is not None:
      # log of each member's mean over its counted steps, weighted by their share.
      logs = _log_of_mean(sums, counted, self.log_mean_floor)
      delta_sum = jnp.where(counted > 0, (logs[0] - logs[1]) * counted, 0.0)
      num_steps = counted
    else:
      delta_sum = sums[0] - sums[1]
    if self.delta_clip is None and not self.sign_delta:
      return delta_sum / total_steps
    mean = delta_sum / jnp.maximum(num_steps, 1)
    if self.delta_clip is not None:
      mean = jnp.clip(mean, -self.delta_clip, self.delta_clip)
    if self.sign_delta:
      mean = 2.0 * self.sigma * jnp.sign(mean)
    return mean * (num_steps / total_steps)

  def _finish(self, contribs, finite, pair_losses, pair_deltas, ends_seen):
    """Average the per-pair results over the finite pairs; build metrics."""
    num_finite = jnp.sum(finite)
    grad = jax.tree.map(lambda c: _mean_over(c, num_finite), contribs)
    metrics = {
        "meta_loss": _mean_over(pair_losses, num_finite),
        "noise_sq": estimate_noise_sq(contribs, finite),
        "delta_abs": _mean_over(pair_deltas, num_finite),
        "nan_resets": (self.num_pairs - num_finite).astype(jnp.int32),
        "episodes_finished": jnp.sum(ends_seen).astype(jnp.int32),
    }
    return sharding.constrain_replicated((grad, metrics), self.mesh)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class FullES(_Antithetic):
  """ES over whole episodes from a fresh start; unbiased, no carried state.

  Every estimate starts each pair at step 0 of a new episode and scans
  `episode_truncations` truncations; only steps up to and including the first
  episode end count, so with variable horizons set
  `episode_truncations * K >= the longest horizon` (an episode still running
  at the end of the budget is cut there, and not counted as finished).
  """
  episode_truncations: int

  def __post_init__(self):
    super().__post_init__()
    if self.episode_truncations < 1:
      raise ValueError("episode_truncations must be >= 1, got "
                       f"{self.episode_truncations}")

  def init(self, key: jax.Array, theta: PyTree) -> EstimatorState:
    del key, theta  # every estimate starts fresh particles
    return EstimatorState(particles=(), noise=(), step=jnp.zeros((), jnp.int32))

  def estimate(self, theta, state, key):
    scale = 1.0 / (2.0 * self.sigma**2)

    def one_pair(pair_key):
      eps = self._noise(pair_key, theta)
      thetas = _antithetic(theta, eps)
      start = _copies(self.system.init_state(
          jax.random.fold_in(pair_key, _INIT), random_offset=False))

      def truncation(carry, t):
        states, ended = carry
        states, out = self._unroll_pair(thetas, thetas, states, unroll_key(pair_key, t))
        ends = out.ends[0]
        valid = ~ended & ((jnp.cumsum(ends) - ends) == 0)
        return (states, ended | jnp.any(ends)), (out.losses, valid)

      (_, ended), (losses, valid) = jax.lax.scan(
          truncation, (start, jnp.zeros((), bool)),
          jnp.arange(self.episode_truncations))
      valid = valid[:, None, :]  # losses: [truncations, 2, K]
      finite = jnp.all(jnp.isfinite(jnp.where(valid, losses, 0.0)))
      num_steps = jnp.sum(valid[:, 0, :])
      kept = jnp.where(valid & finite, losses, 0.0)
      sums = jnp.sum(kept, axis=(0, 2))
      delta = self._part(sums, _counted(jnp.moveaxis(kept, 1, 0).reshape(2, -1)),
                         num_steps, num_steps)
      contrib = jax.tree.map(lambda e: e * (delta * scale), eps)
      pair_loss = (sums[0] + sums[1]) / (2 * num_steps)
      pair_delta = jnp.abs(sums[0] - sums[1]) / num_steps
      return (contrib, finite, pair_loss, pair_delta, ended & finite,
              jnp.where(finite, num_steps, 0))

    contribs, finite, losses, deltas, ended, lengths = jax.vmap(one_pair)(self._pair_keys(key))
    grad, metrics = self._finish(contribs, finite, losses, deltas, ended)
    metrics["episode_length"] = _mean_over(lengths.astype(jnp.float32), jnp.sum(finite))
    return grad, state._replace(step=state.step + 1), metrics


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class _OnlineES(_Antithetic):
  """Truncated ES / PES / ES-Single: persistent particles, one truncation per
  estimate. `_memory` says what `EstimatorState.noise` holds."""
  _memory: ClassVar[str]  # "none" | "accumulator" (PES ξ) | "episode_noise" (ε)

  def init(self, key: jax.Array, theta: PyTree) -> EstimatorState:
    def one_pair(pair_key):
      start = self.system.init_state(jax.random.fold_in(pair_key, _INIT), random_offset=True)
      if self._memory == "accumulator":
        memory = jax.tree.map(jnp.zeros_like, theta)
      elif self._memory == "episode_noise":
        memory = self._noise(pair_key, theta)
      else:
        memory = ()
      return _copies(start, self.members), memory

    particles, noise = jax.vmap(one_pair)(self._pair_keys(key))
    particles, noise = sharding.constrain_particles((particles, noise), self.mesh)
    return EstimatorState(particles=particles, noise=noise, step=jnp.zeros((), jnp.int32))

  def estimate(self, theta, state, key):
    num_steps = self.system.truncation_length
    scale = 1.0 / (2.0 * self.sigma**2)

    def one_pair(pair_key, states, memory):
      eps = self._noise(pair_key, theta)
      if self._memory == "episode_noise":
        eps_cur, weight_before = memory, memory
      elif self._memory == "accumulator":
        eps_cur, weight_before = eps, jax.tree.map(jnp.add, memory, eps)
      else:
        eps_cur, weight_before = eps, eps
      ref = self.reference_theta
      theta_cur = _with_reference(_antithetic(theta, eps_cur), ref)
      # Only ES-Single switches noise after an episode end; reuse the same
      # stacked θ otherwise so the system's per-step select is trivial.
      theta_next = (_with_reference(_antithetic(theta, eps), ref)
                    if self._memory == "episode_noise" else theta_cur)
      new_states, out = self._unroll_pair(theta_cur, theta_next, states, unroll_key(pair_key, 0))

      finite = jnp.all(jnp.isfinite(out.losses))
      ends = out.ends[0]
      before = (jnp.cumsum(ends) - ends) == 0  # up to and incl. the first end
      pm = jnp.where(finite, out.losses[:2], 0.0)  # [2, K]: θ+ε, θ−ε
      delta = pm[0] - pm[1]
      steps_before = jnp.sum(before)
      pm_before, pm_after = jnp.where(before, pm, 0.0), jnp.where(before, 0.0, pm)
      delta_before = self._part(jnp.sum(pm_before, axis=1), _counted(pm_before),
                                steps_before, num_steps)
      delta_after = self._part(jnp.sum(pm_after, axis=1), _counted(pm_after),
                               num_steps - steps_before, num_steps)
      contrib = jax.tree.map(
          lambda wb, wa: (wb * delta_before + wa * delta_after) * scale,
          weight_before, eps)

      any_end, last_end = jnp.any(ends), ends[-1]
      if self._memory == "accumulator":
        # After an end only the new episode's ε counts, and nothing at all if
        # the new episode has not run a step yet.
        new_memory = jax.tree.map(
            lambda acc, e: jnp.where(any_end, jnp.where(last_end, 0.0, e), acc),
            weight_before, eps)
        reset_memory = jax.tree.map(jnp.zeros_like, memory)
      elif self._memory == "episode_noise":
        new_memory = tree_where(any_end, eps, memory)
        reset_memory = eps
      else:
        # Truncated ES: continue both members from the positive trajectory.
        new_states = jax.tree.map(lambda x: jnp.stack([x[0], x[0]]), new_states)
        new_memory = reset_memory = ()

      pair_loss = jnp.where(finite, jnp.mean(out.losses[:2]), 0.0)
      pair_delta = jnp.abs(jnp.sum(delta)) / num_steps
      ends_seen = jnp.where(finite, jnp.sum(ends), 0)
      if ref is None:
        ref_gap = ref_steps = jnp.zeros((), jnp.float32)
      else:
        losses = jnp.where(finite, out.losses, 0.0)
        ref_gap = jnp.sum(0.5 * (losses[0] + losses[1]) - losses[2])
        ref_steps = _counted(losses).astype(jnp.float32)
      return (contrib, new_states, new_memory, reset_memory, finite,
              pair_loss, pair_delta, ends_seen, ref_gap, ref_steps)

    keys = self._pair_keys(key)
    (contribs, particles, noise, reset_noise, finite, losses, deltas,
     ends_seen, ref_gaps, ref_steps) = jax.vmap(one_pair)(keys, state.particles, state.noise)

    def fresh():
      particles = jax.vmap(lambda k: _copies(self.system.init_state(
          jax.random.fold_in(k, _RESET), random_offset=True), self.members))(keys)
      return particles, reset_noise

    particles, noise = _reset_diverged(finite, (particles, noise), fresh)
    particles, noise = sharding.constrain_particles((particles, noise), self.mesh)
    grad, metrics = self._finish(contribs, finite, losses, deltas, ends_seen)
    if self.reference_theta is not None:
      metrics.update(sharding.constrain_replicated(
          {"ref_gap": jnp.sum(ref_gaps), "ref_steps": jnp.sum(ref_steps)}, self.mesh))
    return grad, EstimatorState(particles, noise, state.step + 1), metrics


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class TruncatedES(_OnlineES):
  _memory: ClassVar[str] = "none"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class PES(_OnlineES):
  _memory: ClassVar[str] = "accumulator"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ESSingle(_OnlineES):
  _memory: ClassVar[str] = "episode_noise"


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class TBPTT:
  """Backprop through one truncation; 2·num_pairs persistent particles."""
  system: TruncatedSystem
  num_pairs: int
  mesh: Mesh | None = None
  log_mean_floor: float | None = None  # as the antithetic estimators'

  def __post_init__(self):
    if self.num_pairs < 1:
      raise ValueError(f"num_pairs must be >= 1, got {self.num_pairs}")
    _check_floor(self.log_mean_floor)
    sharding.check_divisible(self.num_pairs, self.mesh)

  def _member_keys(self, key: jax.Array) -> jax.Array:
    """[num_pairs, 2] independent keys, from the global particle index."""
    pair = sharding.constrain_particles(pair_keys(key, self.num_pairs), self.mesh)
    return jax.vmap(lambda k: pair_keys(jax.random.fold_in(k, _MEMBER), 2))(pair)

  def init(self, key: jax.Array, theta: PyTree) -> EstimatorState:
    del theta
    init_one = lambda k: self.system.init_state(jax.random.fold_in(k, _INIT), random_offset=True)
    particles = jax.vmap(jax.vmap(init_one))(self._member_keys(key))
    return EstimatorState(
        particles=sharding.constrain_particles(particles, self.mesh),
        noise=(), step=jnp.zeros((), jnp.int32))

  def estimate(self, theta, state, key):

    def one_particle(particle_key, particle):

      def mean_loss(th):
        new_particle, out = self.system.unroll(th, th, particle, unroll_key(particle_key, 0))
        if self.log_mean_floor is None:
          return jnp.mean(out.losses), (new_particle, out)
        counted = _counted(out.losses[None])
        log_mean = _log_of_mean(jnp.sum(out.losses), counted, self.log_mean_floor)
        return (jnp.where(counted > 0, log_mean, 0.0) * counted / out.losses.shape[0],
                (new_particle, out))

      (loss, (new_particle, out)), grad = jax.value_and_grad(mean_loss, has_aux=True)(theta)
      finite = jnp.isfinite(loss) & _all_finite(grad)
      grad = tree_where(finite, grad, jax.tree.map(jnp.zeros_like, grad))
      return (grad, new_particle, finite, jnp.where(finite, loss, 0.0),
              jnp.where(finite, jnp.sum(out.ends), 0))

    member_keys = self._member_keys(key)
    grads, particles, finite, losses, ends_seen = jax.vmap(
        jax.vmap(one_particle))(member_keys, state.particles)
    particles = _reset_diverged(finite, particles, lambda: jax.vmap(jax.vmap(
        lambda k: self.system.init_state(jax.random.fold_in(k, _RESET),
                                         random_offset=True)))(member_keys))
    particles = sharding.constrain_particles(particles, self.mesh)
    num_finite = jnp.sum(finite)
    grad = jax.tree.map(lambda g: jnp.sum(g, axis=(0, 1)) / jnp.maximum(num_finite, 1), grads)
    metrics = {
        "meta_loss": jnp.sum(losses) / jnp.maximum(num_finite, 1),
        "noise_sq": estimate_noise_sq(jax.tree.map(lambda g: g.reshape((-1,) + g.shape[2:]), grads),
                                      finite.reshape(-1)),
        "nan_resets": (2 * self.num_pairs - num_finite).astype(jnp.int32),
        "episodes_finished": jnp.sum(ends_seen).astype(jnp.int32),
    }
    grad, metrics = sharding.constrain_replicated((grad, metrics), self.mesh)
    return grad, EstimatorState(particles, (), state.step + 1), metrics


ESTIMATORS: dict[str, type] = {
    "full_es": FullES,
    "truncated_es": TruncatedES,
    "pes": PES,
    "es_single": ESSingle,
    "tbptt": TBPTT,
}


def make_estimator(name: str, **config) -> Estimator:
  """Build an estimator by name (keys of `ESTIMATORS`) from keyword config."""
  if name not in ESTIMATORS:
    raise ValueError(f"unknown estimator {name!r}; choose from "
                     f"{sorted(ESTIMATORS)}")
  return ESTIMATORS[name](**config)
