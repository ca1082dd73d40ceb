"""Stateless building blocks over plain param dicts (Flax naming: ``kernel``/``bias``/``scale``/``embedding``).

Each layer has an ``init_*`` that returns its params and a function that applies them. Kernels are
``(in, out)``; stacked layers add a leading ``(num_layers,)`` axis that ``lax.scan`` slices away before
these functions see them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from common.qarray import is_qarray
from common.quantization import weight
from common.sharding import explicit_spec, like, reshard_explicit, spec_of

if TYPE_CHECKING:
    import qwix

Params = dict


# ------------------------------------------------------------------------------------------ init
def normal_init(key, shape, std: float, dtype) -> jax.Array:
    return (std * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


def init_dense(key, in_dim: int, out_dim: int, *, bias: bool, std: float, dtype) -> Params:
    p = {"kernel": normal_init(key, (in_dim, out_dim), std, dtype)}
    if bias:
        p["bias"] = jnp.zeros((out_dim,), dtype)
    return p


def init_embedding(key, num: int, dim: int, *, std: float, dtype) -> Params:
    return {"embedding": normal_init(key, (num, dim), std, dtype)}


def init_rms_norm(dim: int, dtype) -> Params:
    return {"scale": jnp.ones((dim,), dtype)}


def init_layer_norm(dim: int, dtype) -> Params:
    return {"scale": jnp.ones((dim,), dtype), "bias": jnp.zeros((dim,), dtype)}


# ----------------------------------------------------------------------------------------- apply
def matmul(x: jax.Array, w: jax.Array, *, transposed: bool = False) -> jax.Array:
    """x: [..., in] @ w: [in, out] -> [..., out] in x's dtype; with ``transposed``, w is [out, in] and the
    product is x @ w.T (a tied LM head over the [vocab, hidden] embedding).

    ``transposed`` contracts w's last axis in place: an explicit ``w.T`` makes XLA:CPU copy the whole matrix
    on every call once anything (a bias) is fused after the product, 50 ms per decoding step for a 50k vocab.
    Low-precision inputs accumulate in float32 (more accurate, and on XLA:CPU it selects the fast bf16
    kernels: ~2x the float32 GEMM rate instead of ~0.7x). XLA:CPU's bf16 matrix-*vector* path is ~10x
    slower than its matrix-matrix path, so a single-row product (batch-1 decoding) is padded to two rows.
    """
    if is_qarray(w) and _int8_product_applies(x, w, transposed):
        return _int8_matmul(x, w, transposed)
    w = weight(w, x.dtype)  # a quantized weight is dequantized here, in x's dtype
    lead, k = x.shape[:-1], x.shape[-1]
    out = w.shape[0] if transposed else w.shape[-1]
    if x.dtype == jnp.float32 or x.dtype == jnp.float64:
        product = _matmul_nt_2d if transposed else _matmul_2d
        return product(x.reshape(-1, k), w).reshape(*lead, out)
    rows = math.prod(lead)
    x2 = x.reshape(rows, k)
    if rows == 1 and jax.default_backend() == "cpu":
        x2 = jnp.pad(x2, ((0, 1), (0, 0)))
    y = jax.lax.dot_general(x2, w, _G_AT_WT if transposed else _X_AT_W, preferred_element_type=jnp.float32,
                            out_sharding=_rows_like(x2))
    return y[:rows].astype(x.dtype).reshape(*lead, out)


# XLA:CPU's GEMM runs at full speed up to a few thousand rows and then degrades (a [16384, 768] x [768, 768]
# product takes 7x the time of a [4096, 768] one, not 4x): beyond ROW_CHUNK_ABOVE rows, a loop over blocks of
# ROW_CHUNK rows keeps each product in the fast regime (measured in benchmarks/README.md, Longformer).
ROW_CHUNK_ABOVE = 4096
ROW_CHUNK = 2048


def _rows_like(x: jax.Array):
    """out_sharding of a product over x [n, k]'s rows under Explicit mesh axes (None otherwise): the rows keep
    x's split, the features are replicated. Under Explicit axes JAX cannot infer it (x's batch split and an
    FSDP weight's split share the fsdp axis), and replicated features let the caller reshape them freely
    (e.g. into heads that the tensor axis need not divide); the compiler gathers the weight (FSDP)."""
    return explicit_spec(x, spec_of(x)[0], None)


def _rows_in_chunks(x: jax.Array, w: jax.Array, dims) -> jax.Array:
    """dot_general(x [n, k], w, dims) contracting x's last axis, in blocks of ROW_CHUNK rows on CPU when n is
    large; a single product otherwise (accelerators, small n, and Explicit mesh axes, whose row split the
    blocking would have to re-derive)."""
    n = x.shape[0]
    out_sharding = _rows_like(x)
    if n <= ROW_CHUNK_ABOVE or jax.default_backend() != "cpu" or out_sharding is not None:
        return jax.lax.dot_general(x, w, dims, out_sharding=out_sharding)
    blocks = -(-n // ROW_CHUNK)
    xp = jnp.pad(x, ((0, blocks * ROW_CHUNK - n), (0, 0))).reshape(blocks, ROW_CHUNK, x.shape[1])
    y = jax.lax.map(lambda xb: jax.lax.dot_general(xb, w, dims), xp)
    return y.reshape(blocks * ROW_CHUNK, y.shape[-1])[:n]


_X_AT_W = (((1,), (0,)), ((), ()))  # x @ w
_G_AT_WT = (((1,), (1,)), ((), ()))  # g @ w.T


@jax.custom_vjp
def _matmul_2d(x: jax.Array, w: jax.Array) -> jax.Array:
    """x: [n, in] @ w: [in, out], with a hand-written backward.

    XLA:CPU differentiates ``x @ w`` into products over explicitly transposed copies of the cotangent
    (e.g. a [vocab, tokens] copy for the LM head); contracting over the token axis directly is 2-3x faster.
    """
    return _rows_in_chunks(x, w, _X_AT_W)


def _matmul_2d_fwd(x, w):
    return _matmul_2d(x, w), (x, w)


def _matmul_2d_bwd(res, g):
    x, w = res
    # The input's cotangent has the input's own type (Explicit axes: its features may be split, the product's
    # are not).
    return (like(_rows_in_chunks(g, w, _G_AT_WT), x),  # g @ w.T  -> [n, in]
            jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())), out_sharding=_same_as(w)))  # x.T @ g -> [in, out]


def _same_as(w: jax.Array):
    """out_sharding of a weight's gradient: the weight's own sharding (its type under Explicit axes)."""
    return explicit_spec(w, *spec_of(w))


_matmul_2d.defvjp(_matmul_2d_fwd, _matmul_2d_bwd)


@jax.custom_vjp
def _matmul_nt_2d(x: jax.Array, w: jax.Array) -> jax.Array:
    """x: [n, in] @ w.T for w: [out, in], never transposing w (see :func:`matmul`), with the same kind of
    hand-written backward as :func:`_matmul_2d`."""
    return _rows_in_chunks(x, w, _G_AT_WT)


def _matmul_nt_2d_fwd(x, w):
    return _matmul_nt_2d(x, w), (x, w)


def _matmul_nt_2d_bwd(res, g):
    x, w = res
    return (like(_rows_in_chunks(g, w, _X_AT_W), x),  # g @ w -> [n, in]
            jax.lax.dot_general(g, x, (((0,), (0,)), ((), ())), out_sharding=_same_as(w)))  # g.T @ x -> [out, in]


_matmul_nt_2d.defvjp(_matmul_nt_2d_fwd, _matmul_nt_2d_bwd)


# ------------------------------------------------------------------ int8 weights: products on the int8 units
# A per-channel int8 weight times float activations, on XLA:CPU, without a float copy of the weight.
#
# Dequantizing first (what :func:`weight` does) writes a float32 copy of every matrix on every call: in
# decoding that costs more than the float32 model's own product (a [768, 32000] LM head at batch 1 on a 2-core
# Xeon: 22 ms against float32's 2 ms). XLA:CPU has no float x int8 product, but its int8 x int8 -> int32 GEMM
# is fast (VNNI: ~5x the float32 rate here). So each activation row is split exactly into INT8_DIGITS int8
# "digits" (the Ozaki scheme's splitting, as used to emulate float64 GEMM on int8 units):
#     x = sx * (d0 + d1 / 128 + d2 / 128^2 + ...),   sx a power of two with max|x| / sx <= 127,
# every step exact in float32 (see :func:`_int8_digits`). The digit products are exact int32 sums; only their
# float32 combination rounds. With 4 digits an element is kept to 2^-21 of its row's scale (every bit of the
# row's larger elements), and the result is as close to the exact product as a float32 GEMM's (its
# accumulation rounds more): the model still computes in its own dtype.
INT8_DIGITS = {jnp.dtype(jnp.float32): 4, jnp.dtype(jnp.bfloat16): 3, jnp.dtype(jnp.float16): 3}
# Where it pays (measured on a 2-core Xeon with AVX-512 VNNI): products with few rows, which read the weight once
# for little arithmetic (decoding, small batches). Llama-110M's matrices at 1-64 rows: 1.3-2.5x float32; greedy
# decoding of the main job's small model (256 wide), 0.94x / 1.06x float32 at batch 1 / 8 against 0.68x / 0.74x
# dequantizing. With many rows the product is compute-bound and the digits multiply the int8 work: a [2048, 256] x
# [256, 688] product ran 0.6x float32, and without VNNI int8 GEMM is slower still. There the weight is
# dequantized (0.95-1x float32).
INT8_MAX_ROWS = 64


def _int8_product_applies(x: jax.Array, w: qwix.QArray, transposed: bool) -> bool:
    """Whether x @ w runs on the int8 units: an int8 weight with one scale per output channel, at most INT8_MAX_ROWS
    rows of float32 / 16-bit activations, on CPU. Elsewhere (int4 groups; GPU / TPU, where XLA fuses
    dequantization into the product) the weight is dequantized."""
    contracted = 1 if transposed else 0
    return (jax.default_backend() == "cpu" and jnp.dtype(w.qtype) == jnp.int8 and w.qvalue.ndim == 2
            and w.scale.shape[contracted] == 1 and jnp.dtype(x.dtype) in INT8_DIGITS
            and math.prod(x.shape[:-1]) <= INT8_MAX_ROWS)


def _int8_matmul(x: jax.Array, w: qwix.QArray, transposed: bool) -> jax.Array:
    """x: [..., in] @ w (see :func:`matmul`) for a per-channel int8 w, on the int8 units."""
    lead, k = x.shape[:-1], x.shape[-1]
    scale = reshard_explicit(w.scale.reshape(-1).astype(jnp.float32), P())  # [out], whole on every device
    y = _int8_rows_product(x.reshape(-1, k), w.qvalue, scale, transposed)
    return y.astype(x.dtype).reshape(*lead, scale.shape[0])


def _int8_digits(x: jax.Array, digits: int) -> tuple[jax.Array, jax.Array]:
    """x: [n, k] float -> (d: [n * digits, k] int8, the digits of each row in turn; sx: [n, 1] float32) with
    x = sx * sum_i d_i / 128^i to 2^-(7 * digits - 7) * sx. A row with a non-finite entry gets sx = NaN, so its
    products are NaN as a float product's would be (the digits of inf / NaN are meaningless)."""
    x = x.astype(jnp.float32)
    top = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    exponent = jnp.ceil(jnp.log2(jnp.where(top > 0, top, 1.0) / 127.0))
    sx = _power_of_two(exponent)
    sx = jnp.where(top / sx > 127.0, 2.0 * sx, sx)  # log2's rounding must not let a digit reach 128
    r = x / jnp.where(jnp.isfinite(top), sx, 1.0)  # |r| <= 127, exact
    # Digit i of r is R(r 128^i) - 128 R(r 128^(i-1)) (R: round half to even; the subtrahend is 0 for i = 0): the
    # same digits as taking remainders in turn (R(a - m) = R(a) - m for an even integer m), but each computed from
    # r alone, so XLA runs one vectorized loop over [n, digits, k] (a stack of the digits in turn fused as a
    # per-element select, 10x slower). Every step is exact: powers of two, integers below 2^24 or multiples of
    # the unit in the last place, and a difference of at most 64.
    power = jnp.asarray([128.0 ** i for i in range(digits)], jnp.float32)[None, :, None]  # [1, digits, 1]
    scaled = r[:, None, :] * power
    below = jnp.where(power > 1.0, jnp.round(scaled * (1.0 / 128.0)), 0.0)
    d = (jnp.round(scaled) - 128.0 * below).astype(jnp.int8)  # [n, digits, k]: a row's digits adjacent
    return d.reshape(-1, x.shape[-1]), jnp.where(jnp.isfinite(top), sx, jnp.nan)


def _power_of_two(exponent: jax.Array) -> jax.Array:
    """2^exponent in float32, exactly (``exp2`` may be off by an ulp), the exponent held to the normal range."""
    biased = jnp.clip(exponent, -126, 126).astype(jnp.int32) + 127
    return jax.lax.bitcast_convert_type(biased << 23, jnp.float32)


def _int8_rows_raw(x: jax.Array, q: jax.Array, transposed: bool) -> jax.Array:
    """x: [n, k] float @ q (int8 [k, out], or [out, k] with ``transposed``) -> [n, out] float32, unscaled: the
    rows' digits times q, the digit products summed in float32."""
    digits = INT8_DIGITS[jnp.dtype(x.dtype)]
    d, sx = _int8_digits(x, digits)
    dims = _G_AT_WT if transposed else _X_AT_W
    p = jax.lax.dot_general(d, q, dims, preferred_element_type=jnp.int32, out_sharding=_rows_like(d))
    p = p.astype(jnp.float32).reshape(x.shape[0], digits, -1)
    y = p[:, digits - 1]
    for i in range(digits - 2, -1, -1):  # the small digits first: fewer roundings of the large terms
        y = y * (1.0 / 128.0) + p[:, i]
    return y * sx


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _int8_rows_product(x: jax.Array, q: jax.Array, scale: jax.Array, transposed: bool) -> jax.Array:
    """x: [n, k] @ (q * scale) -> [n, out] float32; ``scale``: [out]. Differentiable in x and scale (the
    digits' rounding has no useful derivative, so the backward is written out)."""
    return _int8_rows_raw(x, q, transposed) * scale


def _int8_rows_product_fwd(x, q, scale, transposed):
    raw = _int8_rows_raw(x, q, transposed)
    return raw * scale, (x, q, scale, raw)


def _int8_rows_product_bwd(transposed, res, g):
    x, q, scale, raw = res
    g = g.astype(jnp.float32)
    dx = _int8_rows_raw((g * scale).astype(x.dtype), q, not transposed)  # (g * scale) @ q.T
    return (like(dx.astype(x.dtype), x), np.zeros(q.shape, jax.dtypes.float0),
            jnp.sum(g * raw, axis=0).astype(scale.dtype))


_int8_rows_product.defvjp(_int8_rows_product_fwd, _int8_rows_product_bwd)


def dense(p: Params, x: jax.Array) -> jax.Array:
    """x: [..., in] -> [..., out], computed in x's dtype, through p["kernel"] [in, out] or p["kernel_t"] [out, in]
    (decoding's layout: :func:`transposed_kernels`)."""
    y = matmul(x, p["kernel_t"], transposed=True) if "kernel_t" in p else matmul(x, p["kernel"])
    if "bias" in p:
        y = y + p["bias"].astype(x.dtype)
    return y


def transposed_kernels(tree):
    """``tree`` with every float ``{"kernel": [in, out]}`` stored as ``{"kernel_t": [out, in]}`` (quantized ones
    kept): for decoding steps, whose few-row products XLA:CPU runs ~20% faster at 8 rows, ~40% at 32, reading the
    weight row by row (measured on Llama-110M's layers). Inside jit, so that XLA keeps the transposed copy rather
    than folding the transpose back into each product, it is made behind an optimization barrier: once per call,
    outside its decoding loop. The copy costs a call up to ~0.35 s on XLA:CPU (Llama-110M's 350 MB: the transpose
    at ~2.7 GB/s, and fresh memory), so it pays only where one call runs many steps (continuous batching), not in a
    static batch of a few dozen (8 rows x 64 tokens: 2.40 s with or without it)."""
    if isinstance(tree, dict):
        kernel = tree.get("kernel")
        if kernel is not None and not is_qarray(kernel) and kernel.ndim == 2:
            rest = {k: v for k, v in tree.items() if k != "kernel"}
            return {**rest, "kernel_t": jax.lax.optimization_barrier(kernel.T)}
        return {k: transposed_kernels(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(transposed_kernels(v) for v in tree)
    return tree


def embed(p: Params, ids: jax.Array, dtype, padding_idx: int | None = None) -> jax.Array:
    """ids: [...] int -> [..., dim]. Ids must be validated on the host first: XLA clamps bad gathers.

    ``padding_idx`` mirrors torch's ``nn.Embedding(padding_idx=...)``: that row receives no gradient.
    """
    table = p["embedding"]
    if is_qarray(table):  # the rows' int values and their own scales, dequantized
        x = weight(dataclasses.replace(table, qvalue=_rows(table.qvalue, ids), scale=_rows(table.scale, ids)), dtype)
    else:
        x = _rows(table, ids).astype(dtype)
    if padding_idx is not None:
        x = jnp.where((ids == padding_idx)[..., None], jax.lax.stop_gradient(x), x)
    return x


def _rows(table: jax.Array, ids: jax.Array) -> jax.Array:
    """table[ids] ([rows, dim] -> [..., dim]). Under Explicit mesh axes the rows follow the ids' (batch) split and
    the features are replicated: JAX cannot infer it when the table's feature split shares an axis with the
    batch split (FSDP)."""
    return table.at[ids].get(mode="fill", out_sharding=explicit_spec(ids.shape + (table.shape[1],), *spec_of(ids),
                                                                     None))


def rms_norm(p: Params, x: jax.Array, eps: float) -> jax.Array:
    """HF Llama RMSNorm: normalise in float32, cast back to x's dtype, *then* multiply by the scale."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return p["scale"].astype(x.dtype) * y.astype(x.dtype)


def layer_norm(p: Params, x: jax.Array, eps: float) -> jax.Array:
    """LayerNorm with float32 statistics (biased variance, as torch)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps)
    return (y * p["scale"].astype(jnp.float32) + p["bias"].astype(jnp.float32)).astype(x.dtype)


# ------------------------------------------------------------------------------------ activations
def gelu_exact(x):
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x):
    return jax.nn.gelu(x, approximate=True)


def gelu_fast(x):
    # HF "gelu_fast": 0.5 x (1 + tanh(x * 0.7978845608 * (1 + 0.044715 x^2)))
    return 0.5 * x * (1.0 + jnp.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x):
    return x * jax.nn.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_exact,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_fast,
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation {name!r} is not supported; expected one of {sorted(ACTIVATIONS)}") from None


# -------------------------------------------------------------------------------------- dropout
def dropout(x: jax.Array, rate: float, *, deterministic: bool, rng) -> jax.Array:
    """Inverted dropout. A no-op when deterministic or rate == 0; otherwise ``rng`` is required."""
    if deterministic or rate == 0.0:
        return x
    if rng is None:
        raise ValueError("dropout with deterministic=False needs an `rng` key")
    keep = like(jax.random.bernoulli(rng, 1.0 - rate, x.shape), x)  # the mask takes x's sharding (Explicit axes)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def fold_rng(rng, *data: int):
    """Derive a per-use key (per layer, per site) so dropout masks never repeat; None passes through."""
    if rng is None:
        return None
    for d in data:
        rng = jax.random.fold_in(rng, d)
    return rng
