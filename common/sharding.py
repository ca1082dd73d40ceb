"""Meshes, partition rules and activation constraints.

Mesh axes are always ``("data", "fsdp", "tensor")``: ``data`` splits the batch only, ``fsdp`` splits the
batch *and* the parameters (gathered per layer by XLA), ``tensor`` splits matmul dimensions (Megatron
style: column-parallel q/k/v/gate/up, row-parallel o/down).

A family declares ``PARTITION_RULES``: (regex over the "/"-joined param path, PartitionSpec) pairs; the
first match wins. A param of two or more dimensions that no rule matches is an error naming it (a forgotten
rule would otherwise replicate a whole matrix on every device); vectors may go unmatched (replicated), and
per-layer vectors stacked to [layers, dim] are replicated by the shared :data:`STACKED_VECTORS` rule that every
family ends with. A mesh axis that does not divide a dimension is dropped for that dimension (replicated
there) rather than failing, so tiny test models and odd vocab sizes still load; :func:`param_shardings`
logs what it dropped.

Explicit and Auto meshes: ``jax.make_mesh`` gives Explicit axes by default (shardings are part of array
types, checked as the program is traced), :func:`make_mesh` gives Auto axes (the compiler propagates them);
the model code supports both and mixed ones. :func:`constrain` states an activation's sharding in either
mode; under Explicit axes the ops whose result sharding JAX cannot infer get ``out_sharding=`` from
:func:`explicit_spec` (None, i.e. unchanged behaviour, without Explicit axes), and :func:`like` /
:func:`take` / :func:`replicate` keep loop carries, cache writes and gathers type-consistent.

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

from common.qarray import is_qarray

AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")  # the mesh axes a batch dimension is split over
Rules = Sequence[tuple[str, P]]

# Norm scales and biases of the stacked layers, [layers, dim]: small, replicated. Every family's rules end with
# it, after any rule that splits such a vector (e.g. a column-parallel bias over "tensor").
STACKED_VECTORS = (r"(.+/)?layers/.+/(scale|bias)", P())

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
    """The PartitionSpec of one param: the first matching rule, with non-dividing axes dropped.
    Raises ValueError for a param of rank >= 2 that no rule matches."""
    for pattern, spec in rules:
        if re.fullmatch(pattern, path):
            break
    else:
        if len(shape) >= 2:
            raise ValueError(f"no partition rule matches param {path} of shape {tuple(shape)}: every param with "
                             "two or more dimensions needs a rule (PartitionSpec() to replicate it on purpose); "
                             f"the rules' patterns are {[pattern for pattern, _ in rules]}")
        return P()
    if len(spec) > len(shape):
        raise ValueError(f"partition rule {pattern!r} gives {spec} for {path} of rank {len(shape)}")
    fitted = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if entry is not None and dim % _axis_size(mesh, entry):
            log.info("replicating dim of size %d of %s: mesh axis %s does not divide it", dim, path, entry)
            entry = None
        fitted.append(split_axes(mesh, entry))
    return P(*fitted)


def split_axes(mesh, entry):
    """A spec entry without the mesh axes of size 1 (None when none is left). They split nothing, and under
    Explicit axes ``("data", "fsdp")`` and ``("data",)`` would be different types on a (n, 1, 1) mesh."""
    names = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
    names = tuple(n for n in names if n in mesh.axis_names and mesh.shape[n] > 1)
    if not names:
        return None
    return names if isinstance(entry, tuple) else names[0]  # the rule's own form: "tensor" or ("data", "fsdp")


def tree_specs(tree, rules: Rules, mesh: Mesh):
    """PartitionSpecs for a tree of arrays or ShapeDtypeStructs (same structure). A quantized param (a
    ``qwix.QArray``) is split like the float param it stands for: its int values by the param's rule, its scales
    along the same axes where they divide (an axis of scales shared by all entries, size 1, is replicated)."""
    def one(path, leaf):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        spec = spec_for(name, np.shape(leaf), rules, mesh)
        if is_qarray(leaf):
            from qwix import QArray

            entries = tuple(spec) + (None,) * (leaf.ndim - len(spec))
            return QArray(qvalue=spec, scale=fitted_spec(mesh, leaf.scale.shape, *entries), qtype=leaf.qtype)
        return spec

    return jax.tree_util.tree_map_with_path(one, tree, is_leaf=is_qarray)


def param_shardings(tree, rules: Rules, mesh: Mesh):
    """NamedShardings for every leaf of ``tree`` under ``rules``."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), tree_specs(tree, rules, mesh),
                        is_leaf=lambda x: isinstance(x, P))


def place(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A host array as a global array, copying to each device only the shard it holds."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def batch_sharding(mesh: Mesh, rank: int) -> NamedSharding:
    """Inputs: split the leading (batch) dimension over data x fsdp, replicate the rest."""
    return NamedSharding(mesh, P(split_axes(mesh, BATCH), *([None] * (rank - 1))))


def constrain(x: jax.Array, *spec) -> jax.Array:
    """Shard ``x`` as ``P(*spec)`` under an active mesh (``jax.set_mesh``); a no-op without one.

    Axes the mesh lacks or that do not divide the dimension are dropped, so model code can state its
    intent (e.g. ``constrain(h, BATCH, None, None)``) independently of the mesh shape. Explicit mesh axes
    (``jax.make_mesh``'s default) are part of the array's type, so they are changed with
    ``jax.sharding.reshard`` (``with_sharding_constraint`` only asserts them); Auto axes get a
    ``with_sharding_constraint`` hint. A mixed mesh gets both, each over its own axes.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    target = fitted_spec(mesh, x.shape, *spec)
    x = reshard_explicit(x, target)
    if mesh.auto_axes:
        x = jax.lax.with_sharding_constraint(x, only_axes(target, mesh.auto_axes))
    return x


def reshard_explicit(x: jax.Array, spec: P) -> jax.Array:
    """``x`` resharded to ``spec``'s Explicit axes of the context mesh; a no-op without Explicit axes (Auto
    axes are left to the compiler)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return x
    return jax.sharding.reshard(x, only_axes(spec, mesh.explicit_axes))


def only_axes(spec: P, names: Sequence[str]) -> P:
    """``spec`` with every mesh axis outside ``names`` removed (a dimension left with none is replicated)."""
    def keep(entry):
        kept = tuple(n for n in (entry if isinstance(entry, tuple) else (entry,)) if n in names)
        return kept if kept else None

    return P(*(None if entry is None else keep(entry) for entry in spec))


def explicit_spec(x, *spec) -> P | None:
    """The ``out_sharding=`` for an op whose result (shaped like ``x``, or ``x`` a shape) JAX cannot infer
    under Explicit mesh axes: ``P(*spec)`` fitted to the context mesh and restricted to its Explicit axes.
    None (JAX's default inference) without a mesh or with only Auto axes, so the Auto path is unchanged."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return None
    shape = x if isinstance(x, tuple) else np.shape(x)
    return only_axes(fitted_spec(mesh, shape, *spec), mesh.explicit_axes)


def like(x, ref):
    """``x`` (a tree) resharded to the Explicit sharding in ``ref``'s type (a tree of the same structure): the
    carry of a loop, a branch of a ``cond`` and a ``dynamic_update_slice`` need their types to agree exactly.
    A no-op outside Explicit mode, and where they already agree."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return x

    def one(a, r):
        want = jax.typeof(r).sharding
        return a if jax.typeof(a).sharding == want else jax.sharding.reshard(a, P(*spec_of(r)))

    return jax.tree.map(one, x, ref)


def take(x: jax.Array, indices: jax.Array, axis: int = 0) -> jax.Array:
    """``jnp.take(x, indices, axis)`` whose result keeps ``x``'s sharding (its ``axis`` split moves to the
    indices' first dimension) under Explicit mesh axes, where JAX cannot infer a gather over a split axis."""
    indices = jax.numpy.asarray(indices)
    spec = spec_of(x)
    shape = x.shape[:axis] + indices.shape + x.shape[axis + 1:]
    out = explicit_spec(shape, *spec[:axis], spec[axis], *([None] * (indices.ndim - 1)), *spec[axis + 1:])
    if out is None:
        return jax.numpy.take(x, indices, axis=axis)
    return x.at[(slice(None),) * axis + (indices,)].get(mode="fill", out_sharding=out)


def replicate(x):
    """``x`` (a tree) replicated over the Explicit mesh axes; a no-op outside Explicit mode (Auto leaves the
    choice to the compiler). For small bookkeeping arrays, e.g. generation's [batch, vocab] scores, so that
    they combine with other replicated arrays without per-op sharding decisions."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or not mesh.explicit_axes:
        return x
    return jax.tree.map(lambda a: jax.sharding.reshard(a, P()), x)


def spec_of(x) -> tuple:
    """The Explicit sharding in ``x``'s type, one entry per dimension (all None outside Explicit mode)."""
    spec = tuple(jax.typeof(x).sharding.spec)
    return spec + (None,) * (np.ndim(x) - len(spec))


def fitted_spec(mesh, shape: Sequence[int], *spec) -> P:
    """``P(*spec)`` for an array of ``shape`` with the axes ``mesh`` lacks, or that do not divide their
    dimension, dropped."""
    fitted = []
    for dim, entry in zip(shape, spec):
        names = split_axes(mesh, entry) or ()
        names = names if isinstance(names, tuple) else (names,)
        size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
        fitted.append(names if names and dim % size == 0 else None)
    return P(*fitted)


def batch_reshape(x: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``x.reshape(shape)`` for a reshape that keeps the leading (batch) dimension: under Explicit mesh axes JAX
    cannot infer the sharding of a reshape that merges or splits other dimensions, so it is stated (the batch
    keeps its split, the rest is replicated). A plain reshape without Explicit axes."""
    shape = tuple(shape)
    if shape[0] != x.shape[0]:
        raise ValueError(f"batch_reshape keeps the leading dimension: {x.shape} -> {shape}")
    return jax.numpy.reshape(x, shape, out_sharding=explicit_spec(shape, spec_of(x)[0], *([None] * (len(shape) - 1))))
