"""Meshes, partition rules and activation constraints.

Mesh axes are always ``("data", "fsdp", "tensor")``: ``data`` splits the batch only, ``fsdp`` splits the
batch *and* the parameters (gathered per layer by XLA), ``tensor`` splits matmul dimensions (Megatron
style: column-parallel q/k/v/gate/up, row-parallel o/down).

A family declares ``PARTITION_RULES``: (regex over the "/"-joined param path, PartitionSpec) pairs; the
first match wins and unmatched params are replicated. A mesh axis that does not divide a dimension is
dropped for that dimension (replicated there) rather than failing, so tiny test models and odd vocab
sizes still load; :func:`param_shardings` reports what it dropped.

Multi-host: call ``jax.distributed.initialize()`` on every host first, then build the same mesh over
``jax.devices()`` (all hosts' devices); everything here works on global arrays unchanged, and
``from_pretrained(..., mesh=mesh)`` places on each host only the shards its devices hold.
"""

from __future__ import annotations

import logging
import re
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")  # the mesh axes a batch dimension is split over
Rules = Sequence[tuple[str, P]]

log = logging.getLogger(__name__)


def make_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A (data, fsdp, tensor) mesh over ``devices`` (default: all). data * fsdp * tensor must equal their count."""
    devices = list(jax.devices() if devices is None else devices)
    shape = (data, fsdp, tensor)
    if any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"mesh shape (data, fsdp, tensor) = {shape} is invalid: expected positive integers")
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh shape (data, fsdp, tensor) = {shape} needs {int(np.prod(shape))} devices, "
                         f"but {len(devices)} are available")
    return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def parse_mesh(text: str) -> tuple[int, int, int]:
    """"2,2,2" or "2x2x2" -> (data, fsdp, tensor)."""
    parts = re.split(r"[,x]", text.strip())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise ValueError(f"mesh {text!r} is invalid: expected three integers 'data,fsdp,tensor', e.g. '1,2,1'")
    return shape  # type: ignore[return-value]


def _axis_size(mesh: Mesh, entry) -> int:
    names = entry if isinstance(entry, tuple) else (entry,)
    return int(np.prod([mesh.shape[n] for n in names]))


def spec_for(path: str, shape: Sequence[int], rules: Rules, mesh: Mesh) -> P:
    """The PartitionSpec of one param: the first matching rule, with non-dividing axes dropped."""
    for pattern, spec in rules:
        if re.fullmatch(pattern, path):
            break
    else:
        return P()
    if len(spec) > len(shape):
        raise ValueError(f"partition rule {pattern!r} gives {spec} for {path} of rank {len(shape)}")
    fitted = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if entry is not None and dim % _axis_size(mesh, entry):
            log.info("replicating dim of size %d of %s: mesh axis %s does not divide it", dim, path, entry)
            entry = None
        fitted.append(entry)
    return P(*fitted)


def tree_specs(tree, rules: Rules, mesh: Mesh):
    """PartitionSpecs for a tree of arrays or ShapeDtypeStructs (same structure)."""
    def one(path, leaf):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        return spec_for(name, np.shape(leaf), rules, mesh)

    return jax.tree_util.tree_map_with_path(one, tree)


def param_shardings(tree, rules: Rules, mesh: Mesh):
    """NamedShardings for every leaf of ``tree`` under ``rules``."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), tree_specs(tree, rules, mesh),
                        is_leaf=lambda x: isinstance(x, P))


def shard_tree(tree, rules: Rules, mesh: Mesh):
    """Place an existing param tree on the mesh by the rules."""
    return jax.device_put(tree, param_shardings(tree, rules, mesh))


def place(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array as a global array, copying to each device only the shard it holds."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def batch_sharding(mesh: Mesh, rank: int) -> NamedSharding:
    """Inputs: split the leading (batch) dimension over data x fsdp, replicate the rest."""
    return NamedSharding(mesh, P(BATCH, *([None] * (rank - 1))))


def constrain(x: jax.Array, *spec) -> jax.Array:
    """with_sharding_constraint under an active mesh (``jax.set_mesh``); a no-op without one.

    Axes the mesh lacks or that do not divide the dimension are dropped, so model code can state its
    intent (e.g. ``constrain(h, BATCH, None, None)``) independently of the mesh shape.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, fitted_spec(mesh, x.shape, *spec))


def fitted_spec(mesh, shape: Sequence[int], *spec) -> P:
    """``P(*spec)`` for an array of ``shape`` with the axes ``mesh`` lacks, or that do not divide their
    dimension, dropped."""
    fitted = []
    for dim, entry in zip(shape, spec):
        names = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
        names = tuple(n for n in names if n in mesh.axis_names)
        size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
        fitted.append(names if names and dim % size == 0 else None)
    return P(*fitted)
