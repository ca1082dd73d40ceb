"""Several JAX processes as one job: one process per TPU host or GPU node, or N processes on one machine.

Every process runs the same program. It calls :func:`initialize` first, builds the same mesh over
``jax.devices()`` (all processes' devices), and from then on works with global arrays of which it holds only
the shards of its own devices:

- loading: ``conversion.from_pretrained(path, mesh=mesh)`` reads only the part of each tensor its devices hold;
- data: each process feeds its own rows of the global batch (:func:`process_rows`, :func:`global_batch`);
- checkpoints: Orbax writes and reads each process's shards (``common.checkpoint.Checkpointer``);
- export: :func:`fetch` gathers a sharded param to every host, and ``conversion.save_pretrained`` lets process 0
  alone write the files.

A process that dies (killed, out of memory) stops sending heartbeats; after ``heartbeat_timeout_seconds`` JAX's
coordination service ends every other process with an error that names the dead one ("The following tasks are
unhealthy (stopped sending heartbeats)"), so a job never hangs on a lost host; a restart resumes from the last
complete checkpoint.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from common.sharding import batch_sharding


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, heartbeat_timeout_seconds: int = 100,
               initialization_timeout: int = 300) -> None:
    """``jax.distributed.initialize`` for this process (a no-op when already done), with CPU collectives on.

    coordinator_address: "host:port" of process 0 (it runs the coordination service there); num_processes,
    process_id (0 .. num_processes - 1). All three None: JAX detects them on a TPU pod, under SLURM, Open MPI or
    Kubernetes. heartbeat_timeout_seconds: how long a silent process is waited for before the job is ended with
    an error naming it. CPU devices exchange data over gloo (JAX's CPU collectives), so N CPU-only processes
    can run one sharded program; the setting does nothing on GPU and TPU.
    """
    if jax.distributed.is_initialized():
        return
    given = [coordinator_address is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise ValueError("initialize: give coordinator_address, num_processes and process_id together (or none of "
                         f"them, to let JAX detect the cluster); got coordinator_address={coordinator_address!r}, "
                         f"num_processes={num_processes!r}, process_id={process_id!r}")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id = {process_id} is invalid: expected 0..{num_processes - 1} "
                         f"(num_processes = {num_processes})")
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, KeyError, ValueError):  # pragma: no cover - a JAX where gloo is the only choice
        pass
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=heartbeat_timeout_seconds,
                               initialization_timeout=initialization_timeout)


def process_rows(sharding: NamedSharding, global_shape: tuple[int, ...]) -> slice:
    """The rows of a global batch of ``global_shape`` (split over its leading dim by ``sharding``) that this
    process's devices hold: the rows it feeds to ``jax.make_array_from_process_local_data``."""
    global_rows = global_shape[0]
    spans = sorted({index[0].indices(global_rows)[:2] for index in
                    sharding.addressable_devices_indices_map(tuple(global_shape)).values()})
    start, stop = spans[0][0], spans[-1][1]
    covered = sum(b - a for a, b in spans)
    if covered != stop - start:
        raise ValueError(f"this process's devices hold rows {spans} of the global batch, not one contiguous block: "
                         "build the mesh with each process's devices next to each other along the batch axes "
                         "(jax.make_mesh does)")
    return slice(start, stop)


def global_batch(local: dict[str, np.ndarray], mesh, global_rows: int) -> dict[str, jax.Array]:
    """Global arrays [global_rows, ...] split over the mesh's batch axes (data x fsdp), from this process's rows
    of each (``local[k]``: [rows of process_rows, ...]); every process calls it with its own rows."""
    out = {}
    for name, value in local.items():
        value = np.asarray(value)
        sharding = batch_sharding(mesh, value.ndim)
        rows = process_rows(sharding, (global_rows,) + value.shape[1:])
        if value.shape[0] != rows.stop - rows.start:
            raise ValueError(f"global_batch: {name!r} has {value.shape[0]} rows on process {jax.process_index()}, "
                             f"expected {rows.stop - rows.start} (rows {rows.start}..{rows.stop - 1} of "
                             f"{global_rows}, the ones this process's devices hold)")
        out[name] = jax.make_array_from_process_local_data(sharding, value, (global_rows,) + value.shape[1:])
    return out


def fetch(x) -> np.ndarray:
    """The whole of ``x`` as a numpy array on this host, gathered from every process when it is sharded over
    devices of other processes (a collective: every process must call it, in the same order)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def is_writer() -> bool:
    """Whether this process writes the files that one process writes for all (HF export, summaries): process 0."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process has reached the barrier ``name`` (nothing to do with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
