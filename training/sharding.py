"""Spread the particle axis over all devices (and hosts).

Meta-training is data-parallel over particles: every device runs its share of
the antithetic pairs, θ and the PRNG key are replicated, and the gradient is one
all-reduce over pairs. The layout is a 1-D ``Mesh`` whose only axis,
``"particles"``, shards the leading (pair) axis of the estimator state.

Results do not depend on the device count because every pair draws its
randomness from ``fold_in(key, global_pair_index)`` (see
``training.estimators.pair_keys``); only the order of the final float sum over
pairs may differ, which moves the gradient by a few ulps.

Typical use::

  maybe_initialize_distributed()          # first, before any other JAX call
  mesh = particle_mesh()
  est = PES(system=..., num_pairs=8 * mesh.size, mesh=mesh)
  state = jax.jit(est.init)(replicate(key, mesh), replicate(theta, mesh))
  estimate = jax.jit(est.estimate, donate_argnums=1)
  grad, state, metrics = estimate(theta, state, key)

The estimators constrain their own intermediates and outputs to this layout
when given ``mesh``, so plain ``jax.jit`` is enough. For orbax, restore the
state with ``estimator_state_shardings(abstract_state, mesh)`` as the target
shardings.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PARTICLE_AXIS = "particles"

PyTree = Any


def particle_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (PARTICLE_AXIS,))


def particle_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over the mesh; the rest of each array kept whole."""
  return NamedSharding(mesh, PartitionSpec(PARTICLE_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_divisible(num_pairs: int, mesh: Mesh | None) -> None:
  """Pairs never straddle devices: each device must hold a whole number."""
  if mesh is not None and num_pairs % mesh.size:
    raise ValueError(
        f"num_pairs={num_pairs} is not divisible by the {mesh.size} devices of "
        f"the mesh; use a multiple of {mesh.size} so every device runs the "
        "same number of antithetic pairs.")


def constrain_particles(tree: PyTree, mesh: Mesh | None) -> PyTree:
  """Inside jit: pin every leaf's leading axis to the particle axis.

  A no-op without a mesh, so single-device code pays nothing for it.
  """
  if mesh is None:
    return tree
  sharding = particle_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def constrain_replicated(tree: PyTree, mesh: Mesh | None) -> PyTree:
  """Inside jit: pin every leaf to be replicated (θ-shaped results, metrics)."""
  if mesh is None:
    return tree
  sharding = replicated_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def estimator_state_shardings(state: PyTree, mesh: Mesh) -> PyTree:
  """Shardings for an ``EstimatorState`` (arrays or ShapeDtypeStructs).

  ``particles`` and ``noise`` carry the pair axis first and are split over the
  mesh; everything else (the step counter) is replicated. Use it as orbax's
  restore target or as ``out_shardings``.
  """
  split, whole = particle_sharding(mesh), replicated_sharding(mesh)
  shardings = jax.tree.map(lambda _: whole, state)
  return shardings._replace(
      particles=jax.tree.map(lambda _: split, state.particles),
      noise=jax.tree.map(lambda _: split, state.noise))


def _put_global(tree: PyTree, shardings: PyTree) -> PyTree:
  # make_array_from_callback works across hosts: each process fills only its
  # addressable shards from the same global host value.
  def put(x, sharding):
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])

  return jax.tree.map(put, tree, shardings)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Place a host value (identical on every process) on all devices."""
  sharding = replicated_sharding(mesh)
  return _put_global(tree, jax.tree.map(lambda _: sharding, tree))


def shard_estimator_state(state: PyTree, mesh: Mesh) -> PyTree:
  """Place a host/global-view ``EstimatorState`` with its pair axis split."""
  return _put_global(state, estimator_state_shardings(state, mesh))


def maybe_initialize_distributed() -> bool:
  """Call ``jax.distributed.initialize()`` when launched as several processes.

  Call it first thing, before any other JAX call. Returns whether the
  distributed runtime is (now) initialized. It initializes when one of these
  launch environments is present, and does nothing otherwise:

  * explicit: ``JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N
    JAX_PROCESS_ID=i python -m scripts.meta_train ...`` on each host
    (optionally ``JAX_LOCAL_DEVICE_IDS=0,1,...``);
  * Slurm: ``srun --ntasks=N python -m scripts.meta_train ...`` (detected from
    ``SLURM_NTASKS`` > 1 and ``SLURM_STEP_NODELIST``; JAX reads the rest);
  * Open MPI: ``mpirun -np N python -m scripts.meta_train ...`` (detected from
    ``OMPI_COMM_WORLD_SIZE`` > 1);
  * anything else JAX can auto-detect (Cloud TPU pods, Kubernetes, mpi4py):
    set ``LOPT_DISTRIBUTED=1`` to force ``jax.distributed.initialize()``.

  After it, ``jax.devices()`` lists the devices of every process and
  ``particle_mesh()`` spans them all; every process runs the same program.
  """
  if jax.distributed.is_initialized():
    return True
  env = os.environ
  explicit = all(name in env for name in
                 ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                  "JAX_PROCESS_ID"))
  slurm = (int(env.get("SLURM_NTASKS", "1")) > 1
           and "SLURM_STEP_NODELIST" in env)
  open_mpi = int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
  forced = env.get("LOPT_DISTRIBUTED", "") not in ("", "0")
  if explicit:
    jax.distributed.initialize(
        coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
        num_processes=int(env["JAX_NUM_PROCESSES"]),
        process_id=int(env["JAX_PROCESS_ID"]))
    return True
  if slurm or open_mpi or forced:
    jax.distributed.initialize()
    return True
  return False
