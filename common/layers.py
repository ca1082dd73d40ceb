"""Stateless building blocks over plain param dicts (Flax naming: ``kernel``/``bias``/``scale``/``embedding``).

Each layer has an ``init_*`` that returns its params and a function that applies them. Kernels are
``(in, out)``; stacked layers add a leading ``(num_layers,)`` axis that ``lax.scan`` slices away before
these functions see them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp

from common.quantization import QArray, weight
from common.sharding import explicit_spec, like, spec_of

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


def dense(p: Params, x: jax.Array) -> jax.Array:
    """x: [..., in] -> [..., out], computed in x's dtype."""
    y = matmul(x, p["kernel"])
    if "bias" in p:
        y = y + p["bias"].astype(x.dtype)
    return y


def embed(p: Params, ids: jax.Array, dtype, padding_idx: int | None = None) -> jax.Array:
    """ids: [...] int -> [..., dim]. Ids must be validated on the host first: XLA clamps bad gathers.

    ``padding_idx`` mirrors torch's ``nn.Embedding(padding_idx=...)``: that row receives no gradient.
    """
    table = p["embedding"]
    if isinstance(table, QArray):  # the rows' int values and their own scales, dequantized
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
