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

import contextlib
import itertools
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


def _constrain(tree: PyTree, mesh: Mesh | None, sharding_of) -> PyTree:
  # A no-op without a mesh, so single-device code pays nothing for it.
  if mesh is None:
    return tree
  sharding = sharding_of(mesh)
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def constrain_particles(tree: PyTree, mesh: Mesh | None) -> PyTree:
  """Inside jit: pin every leaf's leading axis to the particle axis."""
  return _constrain(tree, mesh, particle_sharding)


def constrain_replicated(tree: PyTree, mesh: Mesh | None) -> PyTree:
  """Inside jit: pin every leaf to be replicated (θ-shaped results, metrics)."""
  return _constrain(tree, mesh, replicated_sharding)


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
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      # Already global (e.g. built under with_sharding_constraint on a
      # multi-process mesh): keep it, or reshard it on the devices.
      if x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
      return jax.device_put(x, sharding)
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
  On CPU the cross-process collectives are gloo's (JAX's default; set here if
  an older JAX left them off). Malformed launch variables are a ``ValueError``
  naming the variable.
  """
  if jax.distributed.is_initialized():
    return True
  env = os.environ
  explicit = all(name in env for name in
                 ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                  "JAX_PROCESS_ID"))
  slurm = (_env_int("SLURM_NTASKS", 1) > 1 and "SLURM_STEP_NODELIST" in env)
  open_mpi = _env_int("OMPI_COMM_WORLD_SIZE", 1) > 1
  forced = env.get("LOPT_DISTRIBUTED", "") not in ("", "0")
  if not (explicit or slurm or open_mpi or forced):
    return False
  try:
    from jax._src import xla_bridge
    too_late = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):
    too_late = False
  if too_late:
    raise RuntimeError(
        "a multi-process launch was detected, but a JAX backend is already initialized in "
        "this process: call training.sharding.maybe_initialize_distributed() before "
        "importing lopt or training.trainer (importing lopt touches a backend). "
        "scripts/meta_train.py does this for you.")
  _enable_cpu_collectives()
  launch = {}  # not explicit: JAX detects the launch itself
  if explicit:
    num_processes = _env_int("JAX_NUM_PROCESSES", 1)
    process_id = _env_int("JAX_PROCESS_ID", 0)
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"JAX_PROCESS_ID={process_id} and JAX_NUM_PROCESSES={num_processes}: "
                       "need 0 <= JAX_PROCESS_ID < JAX_NUM_PROCESSES.")
    if not env["JAX_COORDINATOR_ADDRESS"].strip():
      raise ValueError("JAX_COORDINATOR_ADDRESS is empty; expected host:port of process 0.")
    launch = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                  num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**launch)
  return True


def _env_int(name: str, default: int) -> int:
  text = os.environ.get(name, "")
  if not text.strip():
    return default
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"environment variable {name}={text!r} is not an integer.") from None


def _enable_cpu_collectives() -> None:
  """Cross-process collectives on CPU: gloo, unless the user chose otherwise."""
  with contextlib.suppress(AttributeError, ValueError):  # a JAX without the option
    if not jax.config.jax_cpu_collectives_implementation:
      jax.config.update("jax_cpu_collectives_implementation", "gloo")


# ---------------------------------------------------------------- process sync
# Control-flow agreement between processes goes through the coordination
# service's key-value store, not through device collectives: on CPU a gloo
# collective gives up if another process is more than 30 s late to its first
# use (e.g. still compiling), while these wait up to an hour.
_SYNC_TIMEOUT_MS = 60 * 60 * 1000
_sync_counter = itertools.count()
_own_keys: dict[str, str] = {}


def _client():
  from jax._src import distributed  # the runtime's coordination-service client
  client = distributed.global_state.client
  if client is None:
    raise RuntimeError("several JAX processes but no jax.distributed client.")
  return client


def process_barrier(name: str) -> None:
  """Wait until every process reaches this call (no-op with one process).
  Every process must make the same sequence of these calls."""
  if jax.process_count() == 1:
    return
  _client().wait_at_barrier(f"lopt/{name}/{next(_sync_counter)}", _SYNC_TIMEOUT_MS)


def all_processes_agree(flag: bool, name: str = "agree") -> bool:
  """True only if ``flag`` is true on every process (``flag`` itself with one
  process). Every process must make the same sequence of these calls."""
  if jax.process_count() == 1:
    return bool(flag)
  client, me = _client(), jax.process_index()
  key = f"lopt/{name}/{next(_sync_counter)}"
  client.key_value_set(f"{key}/{me}", "1" if flag else "0")
  values = [client.blocking_key_value_get(f"{key}/{i}", _SYNC_TIMEOUT_MS)
            for i in range(jax.process_count())]
  # Everyone has written this key, so everyone has read the previous one: drop ours.
  previous = _own_keys.get(name)
  if previous is not None:
    client.key_value_delete(previous)
  _own_keys[name] = f"{key}/{me}"
  return all(v == "1" for v in values)


def any_process(flag: bool, name: str = "any") -> bool:
  """True if ``flag`` is true on any process."""
  return not all_processes_agree(not flag, name)
