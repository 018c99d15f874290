"""Gradient estimators on a linear-quadratic unrolled system with an autodiff
ground truth.

The system: x_{t+1} = A x_t + B u(θ) + s·w_t, loss_t = ‖x_{t+1} − target‖²/n,
episodes of T steps reset to x_0. Its losses are quadratic in θ, so an
antithetic difference is exactly linear in ε: Δ = 2εᵀ∇L, which makes
several checks exact rather than statistical.

Run as a script (`python tests/test_estimators.py OUT.npz`) it computes the
device-invariance fingerprint on whatever devices it sees; the test runs it
with 4 simulated CPU devices and compares with this process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from training import estimators
from training import sharding
from training.estimators import (ESSingle, FullES, PES, TruncatedES,
                                 make_estimator, pair_perturbation)
from training.system import TruncatedSystem, scan_unroll

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------
# The linear-quadratic system.


class LQState(NamedTuple):
  x: jax.Array        # [n]
  t: jax.Array        # int32: steps done in the current episode
  horizon: jax.Array  # int32: the current episode's length


def flat(theta):
  return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(theta)])


@dataclasses.dataclass(frozen=True, eq=False)
class LQSystem:
  a: np.ndarray
  b: np.ndarray
  target: np.ndarray
  x0: np.ndarray
  truncation_length: int
  horizons: tuple[int, ...]   # each episode's length is drawn from these
  noise_scale: float = 0.0    # per-step dynamics noise, driven by the key
  max_offset: int = 0         # random_offset draws t0 in [0, min(this, T))

  def _draw_horizon(self, key):
    if len(self.horizons) == 1:  # skip the draw: less to compile
      return jnp.asarray(self.horizons[0], jnp.int32)
    return jax.random.choice(key, jnp.asarray(self.horizons, jnp.int32))

  def init_state(self, key, *, random_offset):
    horizon_key, offset_key = jax.random.split(key)
    horizon = self._draw_horizon(horizon_key)
    t = jnp.zeros((), jnp.int32)
    if random_offset and self.max_offset > 0:
      t = jax.random.randint(offset_key, (), 0,
                             jnp.minimum(self.max_offset, horizon))
    return LQState(jnp.asarray(self.x0), t, horizon)

  def step(self, theta, state, key):
    x = self.a @ state.x + self.b @ flat(theta)
    if self.noise_scale:
      x = x + self.noise_scale * jax.random.normal(key, x.shape)
    loss = jnp.mean((x - self.target)**2)
    t = state.t + 1
    end = t >= state.horizon
    reset = LQState(jnp.asarray(self.x0), jnp.zeros((), jnp.int32),
                    self._draw_horizon(jax.random.fold_in(key, 1)))
    new = jax.tree.map(lambda r, c: jnp.where(end, r, c), reset,
                       LQState(x, t, state.horizon))
    return new, loss, end

  def unroll(self, theta_cur, theta_next, state, key):
    return scan_unroll(self.step, theta_cur, theta_next, state, key,
                       self.truncation_length)


STATE_DIM = 4
# numpy, not jnp: importing this module must not start a JAX backend.
THETA = {"a": np.array([0.3, -0.2, 0.5], np.float32),
         "b": np.array([[0.1, -0.4]], np.float32)}


@functools.cache  # one object per configuration: compiled programs get reused
def make_system(truncation_length, horizon, *, spectral_radius=0.9,
                noise_scale=0.0, max_offset=0, horizons=None, seed=0):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(STATE_DIM, STATE_DIM)))
  dim = flat(THETA).size
  return LQSystem(
      a=(spectral_radius * q).astype(np.float32),
      b=(rng.normal(size=(STATE_DIM, dim)) / np.sqrt(dim)).astype(np.float32),
      target=rng.normal(size=STATE_DIM).astype(np.float32),
      x0=rng.normal(size=STATE_DIM).astype(np.float32),
      truncation_length=truncation_length,
      horizons=tuple(horizons or (horizon,)),
      noise_scale=noise_scale, max_offset=max_offset)


def episode_losses(system, theta, horizon, truncate_gradient=False):
  """Noise-free losses of one episode from x0; optionally stop the gradient
  through the state at every truncation boundary (the TBPTT objective)."""
  u = flat(theta)

  def body(x, s):
    if truncate_gradient:
      x = jnp.where(s % system.truncation_length == 0,
                    jax.lax.stop_gradient(x), x)
    x = system.a @ x + system.b @ u
    return x, jnp.mean((x - system.target)**2)

  _, losses = jax.lax.scan(body, jnp.asarray(system.x0), jnp.arange(horizon))
  return losses


def true_gradient(system, theta):
  horizon = system.horizons[0]
  return flat(jax.grad(lambda th: jnp.mean(episode_losses(system, th,
                                                          horizon)))(theta))


def tbptt_gradient(system, theta):
  horizon = system.horizons[0]
  return flat(jax.grad(lambda th: jnp.mean(
      episode_losses(system, th, horizon, truncate_gradient=True)))(theta))


# The tests are compile-bound (every program runs in milliseconds), so they
# compile with XLA's backend optimizations off: about half the compile time.
jit = functools.partial(
    jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.cache
def build(name, system, **config):
  """One estimator object per configuration, so `compiled` can reuse its
  programs across tests."""
  return make_estimator(name, system=system, **config)


@functools.cache
def compiled(estimator):
  return jit(estimator.init), jit(estimator.estimate)


def run_estimates(estimator, keys, init_key):
  """init, then one estimate per key; returns per-estimate flat grads [N, d],
  stacked metrics and the final state."""
  init, estimate = compiled(estimator)
  state = init(init_key, THETA)
  grads, metrics = [], []
  for key in keys:
    grad, state, step_metrics = estimate(THETA, state, key)
    grads.append(flat(grad))
    metrics.append(step_metrics)
  return (np.stack(grads), jax.tree.map(lambda *m: np.stack(m), *metrics),
          state)


def estimate_once(estimator, key, init_key=None):
  init, estimate = compiled(estimator)
  state = init(key if init_key is None else init_key, THETA)
  grad, state, metrics = estimate(THETA, state, key)
  return np.asarray(flat(grad)), state, metrics


def episode_means(estimator, num_seeds, num_truncations, seed=0):
  """Per seed: a fresh estimator run over `num_truncations` estimates; returns
  the per-estimate grads [S, N, d]."""

  def one_seed(key):
    init_key, run_key = jax.random.split(key)
    state = estimator.init(init_key, THETA)

    def body(state, key):
      grad, state, _ = estimator.estimate(THETA, state, key)
      return state, flat(grad)

    _, grads = jax.lax.scan(body, state,
                            jax.random.split(run_key, num_truncations))
    return grads

  keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
  return np.asarray(jit(jax.vmap(one_seed))(keys))


@functools.partial(jit, static_argnums=(1, 2))
def pair_noises(key, num_pairs, sigma):
  """The fresh ε of every pair under `key`, flattened: [num_pairs, d]."""
  return jax.vmap(lambda i: flat(pair_perturbation(key, i, THETA, sigma)))(
      jnp.arange(num_pairs))


def z_scores(samples, reference):
  mean = samples.mean(0)
  stderr = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
  return np.abs(mean - np.asarray(reference)) / stderr


# ----------------------------------------------------------------------------
# Exact checks. Most use one noise-free system (K = 4, T = 16) and the same
# few estimator configurations, so their compiled programs are shared.

SIGMA = 0.1
LOG_FLOOR = 1e-3  # log_mean_floor's f in the tests


def short_system():
  return make_system(4, 16)


def full_es(episode_truncations=4, num_pairs=3, system=None, **options):
  return build("full_es", system or short_system(), num_pairs=num_pairs,
               sigma=SIGMA, episode_truncations=episode_truncations, **options)


def online(name, num_pairs=3, system=None, **options):
  return build(name, system or short_system(), num_pairs=num_pairs,
               sigma=SIGMA, **options)


def test_lq_system_follows_protocol():
  system = short_system()
  assert isinstance(system, TruncatedSystem)
  state, out = system.unroll(THETA, THETA, system.init_state(
      jax.random.PRNGKey(0), random_offset=False), jax.random.PRNGKey(1))
  assert out.losses.shape == (4,) and out.losses.dtype == jnp.float32
  assert out.ends.shape == (4,) and out.ends.dtype == jnp.bool_
  np.testing.assert_allclose(out.losses, episode_losses(system, THETA, 4),
                             rtol=1e-6)


def test_antithetic_estimate_is_exact_for_quadratic_losses():
  # Δ = 2εᵀ∇L exactly, so ĝ = mean over pairs of ε εᵀ∇L / σ².
  system = short_system()
  key = jax.random.PRNGKey(3)
  eps = np.asarray(pair_noises(key, 3, SIGMA), np.float64)

  grad, _, metrics = estimate_once(full_es(), key)
  g = np.asarray(true_gradient(system, THETA), np.float64)
  expected = np.mean(eps * (eps @ g)[:, None], axis=0) / SIGMA**2
  np.testing.assert_allclose(grad, expected, rtol=2e-4, atol=1e-6)
  assert metrics["episodes_finished"] == 3 and metrics["episode_length"] == 16
  # The estimate's noise: the spread of the 3 per-pair estimates ε εᵀ∇L / σ².
  per_pair = eps * (eps @ g)[:, None] / SIGMA**2
  np.testing.assert_allclose(metrics["noise_sq"],
                             np.sum((per_pair - per_pair.mean(0))**2) / 2 / 3, rtol=1e-3)

  # PES's first truncation: the gradient of the first K losses.
  grad, _, _ = estimate_once(online("pes"), key)
  first = np.asarray(flat(jax.grad(lambda th: jnp.mean(
      episode_losses(system, th, 16)[:4]))(THETA)), np.float64)
  np.testing.assert_allclose(
      grad, np.mean(eps * (eps @ first)[:, None], axis=0) / SIGMA**2,
      rtol=2e-4, atol=1e-6)


ANTITHETIC = {
    "full_es": lambda s: FullES(system=s, num_pairs=4, sigma=SIGMA,
                                episode_truncations=5),
    "truncated_es": lambda s: TruncatedES(system=s, num_pairs=4, sigma=SIGMA),
    "pes": lambda s: PES(system=s, num_pairs=4, sigma=SIGMA),
    "es_single": lambda s: ESSingle(system=s, num_pairs=4, sigma=SIGMA),
}


@pytest.mark.parametrize("name", sorted(ANTITHETIC))
def test_zero_noise_gives_zero_delta(name, monkeypatch):
  # The pairing check: with ε = 0 both members see the same θ, key, state and
  # data, so Δ must be exactly 0 — across mid-truncation ends, random offsets
  # and the dynamics noise of this system. Fresh objects: the patched noise
  # must not leak into programs other tests reuse.
  monkeypatch.setattr(estimators, "perturbation",
                      lambda key, theta, sigma: jax.tree.map(jnp.zeros_like,
                                                             theta))
  system = LQSystem(**{f.name: getattr(short_system(), f.name)
                       for f in dataclasses.fields(LQSystem)
                       if f.name not in ("horizons", "noise_scale",
                                         "max_offset")},
                    horizons=(3, 6, 9), noise_scale=0.3, max_offset=6)
  estimator = ANTITHETIC[name](system)
  init, estimate = jit(estimator.init), jit(estimator.estimate)
  state = init(jax.random.PRNGKey(1), THETA)
  for i in range(4):
    grad, state, metrics = estimate(THETA, state, jax.random.PRNGKey(10 + i))
    assert np.all(flat(grad) == 0.0)
    assert metrics["delta_abs"] == 0.0 and metrics["meta_loss"] > 0.0


def test_pes_with_truncation_equal_to_horizon_is_full_es():
  system = make_system(16, 16, noise_scale=0.2)
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  pes_grads, pes_metrics, pes_state = run_estimates(
      online("pes", system=system), keys, jax.random.PRNGKey(6))
  for i, key in enumerate(keys):
    grad, _, metrics = estimate_once(full_es(1, system=system), key)
    # The second PES estimate starts a new episode: ξ was reset at the end.
    np.testing.assert_allclose(pes_grads[i], grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pes_metrics["meta_loss"][i],
                               metrics["meta_loss"], rtol=1e-6)
  np.testing.assert_array_equal(pes_metrics["episodes_finished"], [3, 3])
  assert all(np.all(np.asarray(x) == 0.0)
             for x in jax.tree.leaves(pes_state.noise))


def test_es_single_over_an_episode_is_full_es():
  # ES-Single keeps the ε it drew at init for the whole episode; FullES with
  # the same key draws the same ε. The mean over the episode's T/K truncations
  # (each a mean over K steps) is FullES's mean over T steps.
  key = jax.random.PRNGKey(7)
  grads, metrics, _ = run_estimates(
      online("es_single"), jax.random.split(jax.random.PRNGKey(8), 4), key)
  grad, _, _ = estimate_once(full_es(), key)
  np.testing.assert_allclose(np.mean(grads, axis=0), grad, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(metrics["episodes_finished"], [0, 0, 0, 3])


def test_full_es_masks_steps_after_the_episode_end():
  key = jax.random.PRNGKey(9)
  grad4, _, _ = estimate_once(full_es(4), key)
  grad6, _, metrics6 = estimate_once(full_es(6), key)
  np.testing.assert_allclose(grad6, grad4, rtol=1e-5, atol=1e-6)
  assert metrics6["episode_length"] == 16 and metrics6["episodes_finished"] == 3
  # A budget shorter than the episode cuts it and does not count it finished.
  _, _, metrics3 = estimate_once(full_es(3), key)
  assert metrics3["episode_length"] == 12 and metrics3["episodes_finished"] == 0


def test_tbptt_matches_truncated_backprop():
  system = short_system()
  grads, metrics, _ = run_estimates(
      build("tbptt", system, num_pairs=2),
      jax.random.split(jax.random.PRNGKey(0), 4), jax.random.PRNGKey(1))
  np.testing.assert_allclose(np.mean(grads, axis=0),
                             tbptt_gradient(system, THETA), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(metrics["episodes_finished"], [0, 0, 0, 4])


def test_tbptt_log_mean_floor_differentiates_each_truncations_log_mean():
  system = short_system()
  grads, _, _ = run_estimates(
      build("tbptt", system, num_pairs=2, log_mean_floor=LOG_FLOOR),
      jax.random.split(jax.random.PRNGKey(0), 4), jax.random.PRNGKey(1))
  expected = flat(jax.grad(lambda th: jnp.mean(jnp.log(episode_losses(
      system, th, 16, truncate_gradient=True).reshape(4, 4).mean(axis=1) + LOG_FLOOR)))(THETA))
  np.testing.assert_allclose(np.mean(grads, axis=0), expected, rtol=1e-5, atol=1e-6)


def test_sign_delta_and_delta_clip():
  key = jax.random.PRNGKey(11)
  eps = np.asarray(pair_noises(key, 3, SIGMA), np.float64)
  deltas = 2 * eps @ np.asarray(true_gradient(short_system(), THETA))

  grad, _, _ = estimate_once(full_es(sign_delta=True), key)
  np.testing.assert_allclose(
      grad, np.mean(eps * np.sign(deltas)[:, None], axis=0) / SIGMA, rtol=1e-5)
  clip = float(np.median(np.abs(deltas)))  # clips some pairs, not all
  grad, _, _ = estimate_once(full_es(delta_clip=clip), key)
  np.testing.assert_allclose(
      grad, np.mean(eps * np.clip(deltas, -clip, clip)[:, None], axis=0)
      / (2 * SIGMA**2), rtol=1e-4)


@pytest.mark.parametrize("name", ["es_single", "pes"])
def test_reference_member_follows_theta_ref_and_leaves_the_estimate_alone(name):
  """A third member per pair at θ_ref: the same estimate and ± particles as
  without it, its own particle is θ_ref's trajectory, and ref_gap / ref_steps
  are Σ_pairs Σ_k mean(L⁺, L⁻) − L_ref and the counted steps, against the
  float64 episode losses from x0."""
  system, key = short_system(), jax.random.PRNGKey(5)
  theta_ref = jax.tree.map(lambda x: 0.5 * x, THETA)
  plain = build(name, system, num_pairs=3, sigma=SIGMA)
  with_ref = make_estimator(name, system=system, num_pairs=3, sigma=SIGMA,
                            reference_theta=theta_ref)
  grad, state, _ = estimate_once(plain, key)
  init, estimate = jit(with_ref.init), jit(with_ref.estimate)
  grad_ref, state_ref, metrics = estimate(THETA, init(key, THETA), key)
  grad_ref = np.asarray(flat(grad_ref))
  np.testing.assert_allclose(grad_ref, grad, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(np.asarray(state_ref.particles.x[:, :2]),
                             np.asarray(state.particles.x), rtol=1e-6)
  k = system.truncation_length
  ref_losses = np.asarray(episode_losses(system, theta_ref, k), np.float64)
  eps = np.asarray(pair_noises(key, 3, SIGMA), np.float64)
  base = np.asarray(flat(THETA), np.float64)
  unflat = lambda v: {"a": jnp.asarray(v[:3], jnp.float32),
                      "b": jnp.asarray(v[3:].reshape(1, 2), jnp.float32)}
  gap = sum(0.5 * (np.asarray(episode_losses(system, unflat(base + e), k))
                   + np.asarray(episode_losses(system, unflat(base - e), k))) - ref_losses
            for e in eps).sum()
  np.testing.assert_allclose(float(metrics["ref_gap"]), gap, rtol=1e-4)
  assert float(metrics["ref_steps"]) == 3 * k
  x = np.asarray(system.x0, np.float64)
  for _ in range(k):
    x = system.a @ x + system.b @ np.asarray(flat(theta_ref), np.float64)
  np.testing.assert_allclose(np.asarray(state_ref.particles.x[:, 2]), np.stack([x] * 3),
                             rtol=1e-5)


def test_reference_member_needs_persistent_episodes():
  for name, extra in (("full_es", dict(episode_truncations=4)), ("truncated_es", {})):
    with pytest.raises(ValueError, match="reference_theta needs persistent episodes"):
      make_estimator(name, system=short_system(), num_pairs=2, reference_theta=THETA, **extra)


# ----------------------------------------------------------------------------
# Episode ends in the middle of a truncation.


def _simulate(system, perturbations_and_steps):
  """Noise-free hand simulation in float64: run `steps` steps under θ + ε for
  each (ε, steps) in turn, resetting to x0 after `system.horizons[0]` steps;
  returns the losses."""
  theta = np.asarray(flat(THETA), np.float64)
  x, t, losses = np.asarray(system.x0, np.float64), 0, []
  for eps, steps in perturbations_and_steps:
    u = theta + eps
    for _ in range(steps):
      x = system.a @ x + system.b @ u
      losses.append(np.mean((x - system.target)**2))
      t += 1
      if t == system.horizons[0]:
        x, t = np.asarray(system.x0, np.float64), 0
  return np.array(losses)


def _log_ratio(plus, minus):
  """The log_mean_floor Δ of one part, times its steps (so that `/ K` weighs it)."""
  return (np.log(np.mean(plus) + LOG_FLOOR) - np.log(np.mean(minus) + LOG_FLOOR)) * len(plus)


def test_full_es_log_ratio_is_the_log_of_each_members_episode_mean():
  key = jax.random.PRNGKey(12)
  eps = np.asarray(pair_noises(key, 3, SIGMA), np.float64)
  expected = 0.0
  for e in eps:
    plus, minus = _simulate(short_system(), [(e, 16)]), _simulate(short_system(), [(-e, 16)])
    expected = expected + e * _log_ratio(plus, minus) / 16
  grad, _, _ = estimate_once(full_es(log_mean_floor=LOG_FLOOR), key)
  np.testing.assert_allclose(grad, expected / 3 / (2 * SIGMA**2), rtol=1e-4)


def test_log_ratio_part_without_counted_steps_is_zero():
  est = full_es(log_mean_floor=LOG_FLOOR)
  assert float(est._part(jnp.zeros(2), jnp.int32(0), jnp.int32(4), 4)) == 0.0
  # Counted steps weigh by their share of the K steps; zeros elsewhere do not dilute the mean.
  got = float(est._part(jnp.array([0.6, 0.2]), jnp.int32(2), jnp.int32(4), 4))
  np.testing.assert_allclose(got, (np.log(0.3 + LOG_FLOOR) - np.log(0.1 + LOG_FLOOR)) * 2 / 4,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="log_mean_floor"):
    full_es(log_mean_floor=0.0)


@pytest.mark.parametrize("name,log_ratio", [("pes", False), ("es_single", False),
                                            ("es_single", True)])
def test_mid_truncation_episode_end_attribution(name, log_ratio):
  # T = 6, K = 4: truncation 1 runs steps 4, 5 of episode 1 (the end is at
  # its index 1), then steps 0, 1 of episode 2.
  num_pairs, K = 2, 4
  system = make_system(K, 6)
  init_key, key0, key1 = (jax.random.PRNGKey(i) for i in (20, 21, 22))
  options = dict(log_mean_floor=LOG_FLOOR) if log_ratio else {}
  grads, metrics, state = run_estimates(
      online(name, num_pairs, system, **options), [key0, key1], init_key)
  np.testing.assert_array_equal(metrics["episodes_finished"], [0, num_pairs])

  noises = [np.asarray(pair_noises(k, num_pairs, SIGMA), np.float64)
            for k in (init_key, key0, key1)]
  expected_grad = 0.0
  for i in range(num_pairs):
    drawn_at_init, fresh0, fresh1 = (n[i] for n in noises)
    if name == "pes":
      first, before, after = fresh0, fresh1, fresh1
      weight_before = fresh0 + fresh1  # ξ = ε0 + ε1
    else:
      first, before, after = drawn_at_init, drawn_at_init, fresh1
      weight_before = drawn_at_init
    # PES: the new episode has seen ε1 only; ES-Single keeps ε' = ε1 for it.
    expected_memory = fresh1
    losses = {sign: _simulate(system, [(first * sign, K), (before * sign, 2),
                                       (after * sign, 2)])
              for sign in (1, -1)}
    plus, minus = losses[1][K:], losses[-1][K:]
    if log_ratio:  # each part: the log of each member's mean over the part
      part_before, part_after = _log_ratio(plus[:2], minus[:2]), _log_ratio(plus[2:], minus[2:])
    else:
      part_before, part_after = (plus - minus)[:2].sum(), (plus - minus)[2:].sum()
    expected_grad = expected_grad + (
        weight_before * part_before / K + after * part_after / K) / (2 * SIGMA**2)
    np.testing.assert_allclose(flat(jax.tree.map(lambda x: x[i], state.noise)),
                               expected_memory, rtol=1e-6)
  np.testing.assert_allclose(grads[1], expected_grad / num_pairs, rtol=1e-4,
                             atol=1e-6)
  # Both members of every pair are 2 steps into episode 2.
  np.testing.assert_array_equal(state.particles.t, 2)


# ----------------------------------------------------------------------------
# NaN handling.


def _poison_last_pair(state):
  x = state.particles.x.at[-1].set(jnp.nan)
  return state._replace(particles=state.particles._replace(x=x))


def _take_pairs(state, count):
  take = lambda tree: jax.tree.map(lambda x: x[:count], tree)
  return state._replace(particles=take(state.particles), noise=take(state.noise))


@pytest.mark.parametrize("name", ["truncated_es", "pes", "es_single", "tbptt"])
def test_nan_pair_is_reset_and_left_out(name):
  num_pairs = 4
  system = make_system(4, 6, noise_scale=0.1, max_offset=6)
  config = {} if name == "tbptt" else {"sigma": SIGMA}
  full = build(name, system, num_pairs=num_pairs, **config)
  fewer = build(name, system, num_pairs=num_pairs - 1, **config)
  # Warm up, so PES ξ and ES-Single ε are what a running estimator carries.
  _, _, state = run_estimates(full, [jax.random.PRNGKey(10),
                                     jax.random.PRNGKey(11)],
                              jax.random.PRNGKey(1))
  key = jax.random.PRNGKey(2)

  grad, new_state, metrics = compiled(full)[1](THETA, _poison_last_pair(state),
                                               key)
  reference, reference_state, _ = compiled(fewer)[1](
      THETA, _take_pairs(state, num_pairs - 1), key)

  assert int(metrics["nan_resets"]) == (2 if name == "tbptt" else 1)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(grad))
  np.testing.assert_allclose(flat(grad), flat(reference), rtol=1e-5, atol=1e-6)
  # The other pairs carry on as without the poisoned one.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[:-1], b, rtol=1e-6,
                                                       atol=1e-6),
               (new_state.particles, new_state.noise),
               (reference_state.particles, reference_state.noise))
  # The poisoned pair restarted from x0, with its noise memory reset.
  np.testing.assert_array_equal(new_state.particles.x[-1],
                                np.broadcast_to(system.x0, (2, STATE_DIM)))
  if name == "pes":
    assert all(np.all(np.asarray(x[-1]) == 0) for x in
               jax.tree.leaves(new_state.noise))
  if name == "es_single":
    np.testing.assert_array_equal(
        flat(jax.tree.map(lambda x: x[-1], new_state.noise)),
        pair_noises(key, num_pairs, SIGMA)[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class AlwaysNaN(LQSystem):

  def step(self, theta, state, key):
    state, loss, end = super().step(theta, state, key)
    return state, loss * jnp.nan, end


def test_full_es_with_only_diverging_pairs_returns_zero():
  base = make_system(4, 8)
  system = AlwaysNaN(**{f.name: getattr(base, f.name)
                        for f in dataclasses.fields(base)})
  grad, _, metrics = estimate_once(full_es(2, system=system),
                                   jax.random.PRNGKey(0))
  assert np.all(grad == 0.0)
  assert int(metrics["nan_resets"]) == 3
  assert np.isfinite(metrics["meta_loss"])


# ----------------------------------------------------------------------------
# Statistics over seeds.

# A slow system (spectral radius 0.9) with short truncations: most of θ's
# influence crosses truncation boundaries, so TBPTT is far from the truth.
NUM_SEEDS, NUM_PAIRS = 384, 4


def statistics_system():
  return make_system(4, 16, noise_scale=0.05)


@pytest.mark.parametrize("name", ["full_es", "pes", "es_single"])
def test_unbiased_for_the_true_gradient(name):
  system = statistics_system()
  if name == "full_es":
    estimator, truncations = full_es(4, NUM_PAIRS, system), 1
  else:
    estimator, truncations = online(name, NUM_PAIRS, system), 4
  samples = episode_means(estimator, NUM_SEEDS, truncations).mean(1)
  z = z_scores(samples, true_gradient(system, THETA))
  assert np.all(z < 4.0), z


def test_truncated_es_is_biased_toward_tbptt():
  system = statistics_system()
  truth, tbptt = true_gradient(system, THETA), tbptt_gradient(system, THETA)
  assert np.linalg.norm(truth - tbptt) > 0.3 * np.linalg.norm(truth)
  samples = episode_means(online("truncated_es", NUM_PAIRS, system),
                          NUM_SEEDS, 4).mean(1)
  assert np.max(z_scores(samples, truth)) > 8.0
  assert np.all(z_scores(samples, tbptt) < 4.0), z_scores(samples, tbptt)


def test_pes_variance_grows_over_the_episode_while_es_single_stays_flat():
  # A fast-mixing system (radius 0.5): every truncation has about the same
  # gradient, so the growth comes only from PES's accumulated ξ.
  system = make_system(4, 32, spectral_radius=0.5)
  variances = {}
  for name in ("pes", "es_single"):
    grads = episode_means(online(name, 1, system), 2048, 8, seed=1)
    variances[name] = grads.var(axis=0).sum(-1)  # per truncation index
  pes, single = variances["pes"], variances["es_single"]
  assert pes[7] > 2.5 * pes[1] and pes[7] > pes[4] > pes[1], pes
  assert 0.67 < single[7] / single[1] < 1.5, single
  assert pes[7] > 2.5 * single[7]


# ----------------------------------------------------------------------------
# Device-count invariance.


def device_fingerprint() -> dict[str, np.ndarray]:
  """Three estimates of every estimator on a particle mesh over all devices,
  with random offsets, variable horizons and mid-truncation ends. One jit, so
  one compile."""
  mesh = sharding.particle_mesh()
  system = make_system(4, 6, noise_scale=0.1, max_offset=8, horizons=(5, 6, 10))
  built = {}
  for name in ("full_es", "truncated_es", "pes", "es_single", "tbptt"):
    config = dict(system=system, num_pairs=8, mesh=mesh)
    if name != "tbptt":
      config["sigma"] = 0.1
    if name == "full_es":
      config["episode_truncations"] = 3
    built[name] = make_estimator(name, **config)

  @jit
  def run(key, theta):
    results = {}
    for name, estimator in built.items():

      def body(state, step_key, estimator=estimator):
        grad, state, metrics = estimator.estimate(theta, state, step_key)
        return state, (flat(grad), metrics["meta_loss"])

      state, (grads, meta_losses) = jax.lax.scan(
          body, estimator.init(key, theta), jax.random.split(key, 3))
      results[name] = (grads, state, meta_losses)
    return results

  key = jax.random.PRNGKey(42)
  results = run(sharding.replicate(key, mesh), sharding.replicate(THETA, mesh))
  fingerprint = {}
  for name, (grad, state, meta_loss) in results.items():
    leaves = jax.tree.leaves((state.particles, state.noise))
    for leaf in leaves:  # the pair axis really is split over the devices
      assert len(leaf.sharding.device_set) == mesh.size
      assert leaf.addressable_shards[0].data.shape[0] == 8 // mesh.size
    # A host copy (as after a restore) goes back to the same layout.
    placed = sharding.shard_estimator_state(jax.device_get(state), mesh)
    for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(state)):
      assert a.sharding.is_equivalent_to(b.sharding, a.ndim)
      np.testing.assert_array_equal(a, b)
    fingerprint[f"{name}/grad"] = np.asarray(grad)
    fingerprint[f"{name}/state"] = np.concatenate(
        [np.ravel(np.asarray(x, np.float64)) for x in leaves] or [np.zeros(0)])
    fingerprint[f"{name}/meta_loss"] = np.asarray(meta_loss)
  if mesh.size > 1:
    try:
      PES(system=system, num_pairs=mesh.size + 1, sigma=0.1, mesh=mesh)
      raise AssertionError("pairs that do not divide over devices must fail")
    except ValueError:
      pass
  return fingerprint


def test_distributed_is_left_alone_on_a_single_host(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
               "JAX_PROCESS_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
               "LOPT_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  assert sharding.maybe_initialize_distributed() is False
  assert not jax.distributed.is_initialized()


def test_four_devices_match_one(tmp_path):
  out = tmp_path / "four_devices.npz"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=" ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                              "--xla_force_host_platform_device_count=4"])),
             PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  # The 4-device run works in a subprocess while this one computes.
  four_devices = subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), str(out)], env=env,
      cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  one = device_fingerprint()
  log, _ = four_devices.communicate(timeout=300)
  assert four_devices.returncode == 0, log.decode()
  four = np.load(out)
  assert int(four["device_count"]) == 4
  for name, value in one.items():
    np.testing.assert_allclose(four[name], value, rtol=1e-6, atol=1e-6,
                               err_msg=name)


if __name__ == "__main__":
  fingerprint = device_fingerprint()
  np.savez(sys.argv[1], device_count=jax.device_count(), **fingerprint)


def test_noise_estimate_against_numpy_and_unbiased_for_the_signal():
  """estimate_noise_sq: the trace of the kept samples' covariance over their
  number (NumPy, with a dropped sample), NaN below 2 kept; and ‖mean‖² − it is
  unbiased for ‖g‖² (2,000 draws of 5 samples: within 4 standard errors)."""
  rng = np.random.default_rng(0)
  x = {"a": rng.normal(size=(6, 3)), "b": rng.normal(size=(6, 2, 2))}
  kept = np.array([True, True, False, True, True, True])
  flat_x = np.concatenate([x["a"], x["b"].reshape(6, -1)], axis=1)[kept]
  want = np.sum((flat_x - flat_x.mean(0))**2) / (len(flat_x) - 1) / len(flat_x)
  got = estimators.estimate_noise_sq(jax.tree.map(jnp.asarray, x), jnp.asarray(kept))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert np.isnan(estimators.estimate_noise_sq(jax.tree.map(jnp.asarray, x),
                                               jnp.asarray([True] + [False] * 5)))
  g = np.array([0.3, -0.2, 0.1, 0.0])
  draws = g + 2.0 * rng.normal(size=(2000, 5, 4))     # noise ≫ signal, as in meta-training
  noise = jax.vmap(lambda d: estimators.estimate_noise_sq(d, jnp.ones(5, bool)))(jnp.asarray(draws))
  signal = np.sum(draws.mean(1)**2, axis=1) - np.asarray(noise)
  assert abs(signal.mean() - np.sum(g**2)) < 4 * signal.std() / np.sqrt(len(signal))
  np.testing.assert_allclose(np.mean(noise), 4 * 4.0 / 5, rtol=0.05)
