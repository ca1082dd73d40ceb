"""Weight-only quantization: int8 per output channel, int4 in groups along the input, for every family.

A quantized param is a ``qwix.QArray`` (qwix, Google's JAX quantization library) in place of the float
array: ``qvalue`` (int8 / int4, the array's shape) and ``scale`` (float, the same rank; 1 along the axes that
share a scale). It is a pytree, so quantized params go through ``jit``, ``lax.scan`` over stacked layers (each
layer's slice is again a QArray), sharding and Orbax unchanged. Every product dequantizes its weight into the
compute dtype where it is used (:func:`weight`; ``common.layers.matmul`` / ``embed``), so activations and the
arithmetic stay in the model's dtype and only the stored weights shrink. One exception, for speed, not
meaning: on CPU an int8 matrix multiplies on the int8 units, its float activations split exactly into int8
digits (``common.layers._int8_matmul``; as accurate as the float32 product, and no float copy of the weight).

What is quantized (:func:`targets`): every matrix (a ``kernel`` of rank >= 2, stacked or not) of every family,
heads included. Embedding tables (``embedding``) and the LM head (the output projection onto the vocabulary,
``lm_head`` / XLM's ``pred_layer``) only on request: they dominate small models' quality loss. Norms, biases and
the rest stay float.

- int8: one scale per output channel (per row of an embedding table), absmax: ``w ~= q * s``, |q| <= 127.
- int4: one scale per ``group_size`` inputs of each output channel (the HF / GPTQ convention, 128 by default);
  the group size must divide the input dimension (an error names the param otherwise), or with ``fit_groups``
  each param takes the largest group up to it that divides its own.

qwix does the arithmetic (calibration, rounding, the packed int4 dtype, dequantization); this module only picks
the axes per param and walks the tree, because qwix's own model-level entry points (``quantize_model``,
``PtqProvider``) intercept Flax modules and these models are plain functions over dicts.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from common.qarray import is_qarray
from common.sharding import fitted_spec, param_shardings, spec_of

if TYPE_CHECKING:
    import qwix

QTYPES = {8: jnp.int8, 4: jnp.int4}
# The output projection onto the vocabulary (quantized only with lm_head=True): Llama / LED "lm_head",
# Longformer's "lm_head" (dense + decoder), XLM's "pred_layer".
LM_HEAD = re.compile(r"(lm_head|pred_layer)(/.*)?")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    bits: int = 8  # 8: int8 per output channel; 4: int4 in groups of group_size inputs
    group_size: int = 128  # int4 only
    embeddings: bool = False  # also the embedding tables (word, position, ...)
    lm_head: bool = False  # also the output projection onto the vocabulary
    # int4: where group_size does not divide a param's input dimension, use the largest group below it that does
    # (e.g. 86 for an MLP 688 wide, 64 for LiLT's 192-wide layout stream); otherwise that is an error
    fit_groups: bool = False

    def __post_init__(self):
        if self.bits not in QTYPES:
            raise ValueError(f"bits = {self.bits!r} is invalid: expected one of {sorted(QTYPES)}")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ValueError(f"group_size = {self.group_size!r} is invalid: expected a positive integer")

    @classmethod
    def of(cls, quantize) -> "QuantConfig":
        """From what ``from_pretrained(quantize=...)`` accepts: "int8", "int4", 8, 4, a dict or a QuantConfig."""
        if isinstance(quantize, QuantConfig):
            return quantize
        if isinstance(quantize, dict):
            unknown = set(quantize) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ValueError(f"quantize: unknown keys {sorted(unknown)}; expected some of "
                                 f"{[f.name for f in dataclasses.fields(cls)]}")
            return cls(**quantize)
        names = {"int8": 8, "int4": 4, 8: 8, 4: 4}
        if isinstance(quantize, bool) or quantize not in names:
            raise ValueError(f"quantize = {quantize!r} is invalid: expected 'int8' or 'int4' (or a QuantConfig)")
        return cls(bits=names[quantize])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def group_for(self, size: int) -> int | None:
        """The int4 group size for an input dimension of ``size``: group_size if it divides size; with fit_groups
        the largest divisor of size below it; else None."""
        if size % self.group_size == 0:
            return self.group_size
        if self.fit_groups:
            return max(g for g in range(1, min(self.group_size, size) + 1) if size % g == 0)
        return None


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def targets(name: str, shape: tuple[int, ...], qc: QuantConfig) -> str | None:
    """How the param ``name`` ("/"-joined path) of ``shape`` is quantized: "kernel" (a matrix [..., in, out]),
    "table" (an embedding table [..., rows, dim]) or None (left float)."""
    leaf = name.rsplit("/", 1)[-1]
    if LM_HEAD.fullmatch(name) and not qc.lm_head:
        return None
    if leaf == "kernel" and len(shape) >= 2:
        return "kernel"
    if leaf == "embedding" and len(shape) >= 2 and qc.embeddings:
        return "table"
    if leaf == "weight" and LM_HEAD.fullmatch(name) and len(shape) >= 2:  # XLM's untied pred_layer/weight [V, D]
        return "table"
    return None


def quantize_array(w: jax.Array, kind: str, qc: QuantConfig, name: str = "param") -> qwix.QArray:
    """One param as a QArray. A kernel [..., in, out] shares scales along ``in`` (in groups for int4); a table
    [..., rows, dim] has one scale per row (in groups along ``dim`` for int4), so a looked-up row needs only its
    own scale. Leading (stacked-layer) axes get their own scales."""
    shared = w.ndim - 2 if kind == "kernel" else w.ndim - 1  # the axis whose entries share a scale
    channelwise = tuple(a for a in range(w.ndim) if a != shared)
    tiled = None
    if qc.bits == 4:
        size = w.shape[shared]
        group = qc.group_for(size)
        if group is None:
            raise ValueError(f"group_size = {qc.group_size} does not divide {name}'s dimension {shared} of size {size} "
                             f"(shape {tuple(w.shape)}): choose a group size that divides it, or fit_groups=True "
                             "(the largest group below it that divides each param's dimension)")
        tiled = {shared: group}
    import qwix  # imported when first used: see common.qarray

    quantize = functools.partial(qwix.quantize, qtype=QTYPES[qc.bits], channelwise_axes=channelwise,
                                 tiled_axes=tiled)
    if tiled and _explicit_axes():
        # The groups split the shared axis in two ([.., in, ..] -> [.., in / g, g, ..]); under Explicit mesh axes
        # JAX infers no sharding for that reshape when the groups do not fall evenly on the devices that split
        # the axis (3 groups over 2). The compiler places it (Auto axes inside); the result is split as
        # tree_specs splits it: the int values like the float param, the scales along the same axes where they
        # divide.
        out = jax.eval_shape(quantize, jax.ShapeDtypeStruct(w.shape, w.dtype))
        spec = spec_of(w)
        out = dataclasses.replace(out, qvalue=P(*spec),
                                  scale=fitted_spec(jax.sharding.get_abstract_mesh(), out.scale.shape, *spec))
        return jax.sharding.auto_axes(quantize, out_sharding=out)(w)
    return quantize(w)


def _explicit_axes() -> bool:
    """Whether the context mesh has Explicit axes (then every array's type carries its sharding)."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and bool(mesh.explicit_axes)


def _tiled(q: qwix.QArray) -> bool:
    """Whether q's scales cover groups of entries along an axis (int4): dequantizing splits that axis in two."""
    return any(1 < s < d for s, d in zip(q.scale.shape, q.shape))


def quantize_params(params, qc: QuantConfig):
    """``params`` with every target (see :func:`targets`) replaced by its QArray. Works under jit and on sharded
    arrays; call it through :func:`quantize_placed` to keep a mesh's shardings."""
    def one(path, x):
        name = _path_name(path)
        kind = targets(name, x.shape, qc)
        return x if kind is None else quantize_array(x, kind, qc, name)

    return jax.tree_util.tree_map_with_path(one, params)


def quantize_placed(params, qc: QuantConfig, rules=(), mesh=None):
    """:func:`quantize_params` in one compiled call; on a mesh the int values and scales land split like the float
    params they replace (``rules``: the family's partition rules)."""
    if mesh is None:
        return jax.jit(quantize_params, static_argnums=1)(params, qc)
    with jax.set_mesh(mesh):  # the params' mesh is the context's (also for eval_shape: quantize_array reads it)
        shardings = param_shardings(jax.eval_shape(lambda p: quantize_params(p, qc), params), rules, mesh)
        return jax.jit(quantize_params, static_argnums=1, out_shardings=shardings)(params, qc)


def is_quantized(params) -> bool:
    return any(is_qarray(x) for x in jax.tree.leaves(params, is_leaf=is_qarray))


def quant_config_of(params) -> QuantConfig | None:
    """The QuantConfig a quantized tree was made with, read off its QArrays (None for a float tree): the bits
    from the storage type, the int4 group size from the scales' shapes (the largest, with fit_groups where params
    differ), and whether embedding tables and the LM head are among them."""
    found = {}
    for path, x in jax.tree_util.tree_leaves_with_path(params, is_leaf=is_qarray):
        if is_qarray(x):
            found[_path_name(path)] = x
    if not found:
        return None
    any_q = next(iter(found.values()))
    bits = 4 if jnp.dtype(any_q.qtype) == jnp.int4 else 8
    group, fitted = QuantConfig.group_size, False
    if bits == 4:  # the shared axis of a kernel [..., in, out] is in; of a table [..., rows, dim], dim
        groups = set()
        for n, q in found.items():
            axis = q.ndim - 2 if n.rsplit("/", 1)[-1] == "kernel" else q.ndim - 1
            groups.add(q.shape[axis] // q.scale.shape[axis])
        # Fitted groups: each param's is the largest divisor of its dimension up to the largest found, so that
        # largest with fit_groups rebuilds the same tree.
        group, fitted = max(groups), len(groups) > 1
    return QuantConfig(bits=bits, group_size=group,
                       embeddings=any(n.rsplit("/", 1)[-1] == "embedding" for n in found),
                       lm_head=any(LM_HEAD.fullmatch(n) for n in found), fit_groups=fitted)


def dequantize_params(params):
    """The float params a quantized tree stands for (each QArray dequantized into its scale's dtype)."""
    return jax.tree.map(lambda x: _dequantize(x) if is_qarray(x) else x, params, is_leaf=is_qarray)


def weight(w, dtype) -> jax.Array:
    """A weight as an array of ``dtype``: a QArray is dequantized there (inside the jitted computation, so XLA
    fuses the conversion with its use), a float array is cast."""
    if is_qarray(w):
        w = dataclasses.replace(w, scale=w.scale.astype(dtype))
        if _tiled(w) and _explicit_axes():
            # Dequantizing int4 reshapes the int values into groups: as in quantize_array, the compiler places
            # that reshape, and the float weight is split like the int values.
            return jax.sharding.auto_axes(_dequantize, out_sharding=P(*spec_of(w.qvalue)))(w)
        return _dequantize(w)
    return w.astype(dtype)


def float_dtype(params):
    """The dtype of the params' float arrays (a quantized tree's first leaves may be int8)."""
    for x in jax.tree.leaves(params):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return x.dtype
    raise ValueError("the params hold no floating-point array")


def param_bytes(params) -> int:
    """Bytes the params take, scales included, int4 counted at 4 bits (XLA packs two per byte on the host and on
    accelerators; ``jax.Array.nbytes`` counts a byte each)."""
    total = 0
    for x in jax.tree.leaves(params):
        bits = 4 if x.dtype == jnp.int4 else 8 * x.dtype.itemsize
        total += (x.size * bits + 7) // 8
    return total


def _dequantize(q):
    """qwix.dequantize (qwix is loaded: ``q`` is one of its arrays)."""
    import qwix

    return qwix.dequantize(q)


def __getattr__(name):
    if name == "QArray":  # ``from common.quantization import QArray``: qwix's class, importing qwix then
        import qwix

        return qwix.QArray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
