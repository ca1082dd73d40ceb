"""Attention: one entry point, implementations chosen by name.

``reference`` is dense einsum attention with an explicit boolean mask: the oracle in tests, and the
right choice for causal decoder attention at the lengths a CPU sees. ``pallas`` runs causal self-attention
(:func:`causal_attention`) through the block-sparse flash kernels of :mod:`common.kernels`, skipping the key
blocks above the diagonal; ``auto`` picks it on GPU and TPU. (Sliding-window + global attention lives in
:mod:`common.longformer_attention`.)

Shapes: q ``[batch, q_len, heads, head_dim]``, k/v ``[batch, kv_len, kv_heads, head_dim]`` (or, with
``kv_heads_major``, ``[batch, kv_heads, kv_len, head_dim]``: keys reused over many calls, such as an
encoder-decoder's cross-attention keys while decoding, are stored that way once instead of transposed on every
call), mask ``[batch, q_len, kv_len]`` bool (True = may attend). GQA follows HF's ``repeat_kv``: query head ``h``
reads kv head ``h // (heads // kv_heads)``; we group the query heads instead of copying k/v.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common.attention_impls import CAUSAL, DENSE
from common.kernels.ops import pallas_attention
from common.layers import dropout
from common.sharding import batch_reshape


def causal_mask(key_valid: jax.Array, query_slots: jax.Array) -> jax.Array:
    """Mask for causal attention over a key buffer.

    key_valid: [batch, kv_len] bool (False for padding and unwritten cache slots);
    query_slots: [q_len] int, the key-buffer index of each query. Returns [batch, q_len, kv_len] bool.
    Query rows that are themselves padding stay unmasked here, as in HF; their outputs are garbage there too.
    """
    kv_pos = jnp.arange(key_valid.shape[-1])
    causal = kv_pos[None, :] <= query_slots[:, None]
    return causal[None, :, :] & key_valid[:, None, :]


def causal_attention(q, k, v, key_valid, *, scale: float, impl: str = "reference", dropout_rate: float = 0.0,
                     deterministic: bool = True, rng=None, return_probs: bool = False):
    """Causal self-attention of a sequence over itself, keys masked by ``key_valid``.

    q: [batch, T, heads, head_dim]; k, v: [batch, T, kv_heads, head_dim]; key_valid: [batch, T] bool.
    Returns (out [batch, T, heads, head_dim], probs [batch, heads, T, T] or None).

    ``pallas`` visits only the key blocks on or below the diagonal and never stores scores. It returns no
    probabilities and applies no dropout, so a call asking for either runs ``reference`` (same results).
    """
    impl = CAUSAL.resolve(impl)
    if impl == "pallas" and not return_probs and (deterministic or dropout_rate == 0.0):
        heads_major = [x.transpose(0, 2, 1, 3) for x in (q, k, v)]
        out = pallas_attention(*heads_major, key_valid, scale=scale, right=0).transpose(0, 2, 1, 3)
        return _rows_without_keys_as_hf(q, k, v, key_valid, out, scale), None
    mask = causal_mask(key_valid, jnp.arange(q.shape[1]))
    return reference_attention(q, k, v, mask, scale=scale, dropout_rate=dropout_rate, deterministic=deterministic,
                               rng=rng, return_probs=return_probs)


def _rows_without_keys_as_hf(q, k, v, key_valid, out, scale):
    """Queries that see no valid key (left-padding rows before the first real token) get HF's value and gradient.

    HF adds finfo.min to every masked score, so such a row's softmax is uniform over the whole key buffer: its
    output is mean(v), and autograd still sends gradient to q and k through the (rounded-away) scores. These rows
    matter: a causal-LM loss on a left-padded batch reads the last one (it predicts the first real token). With
    p = 1/T the softmax Jacobian is linear, so the gradient is that of q·C with C = scale/T · Σ_j k_j (v_j - v̄)ᵀ
    ([d, d] per kv head, O(T·d²)); ``lin - stop_gradient(lin)`` adds that gradient and nothing to the value.
    q: [B, T, H, d]; k, v: [B, T, Hkv, d]; key_valid: [B, T]; out: the kernel's output (0 on those rows).
    """
    b, t, h, d = q.shape
    kvh = k.shape[2]
    f32 = dict(preferred_element_type=jnp.float32)
    no_keys = jnp.cumsum(key_valid.astype(jnp.int32), axis=1) == 0  # causal: row i sees keys 0..i
    v_mean = jnp.mean(v.astype(jnp.float32), axis=1)  # [B, Hkv, d]
    centred = jax.lax.stop_gradient(v.astype(jnp.float32) - v_mean[:, None])
    cov = jnp.einsum("btgd,btge->bgde", k.astype(jnp.float32), centred, **f32) * (scale / t)
    lin = jnp.einsum("btgrd,bgde->btgre", q.reshape(b, t, kvh, h // kvh, d).astype(jnp.float32), cov, **f32)
    as_hf = (v_mean[:, None, :, None, :] + lin - jax.lax.stop_gradient(lin)).reshape(b, t, h, d)
    return jnp.where(no_keys[:, :, None, None], as_hf.astype(out.dtype), out)


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    *,
    scale: float,
    impl: str = "reference",
    dropout_rate: float = 0.0,
    deterministic: bool = True,
    rng=None,
    return_probs: bool = False,
    kv_heads_major: bool = False,
):
    """Scaled dot-product attention with an explicit mask (decoding steps, cross-attention, encoders).
    Returns (out [batch, q_len, heads, head_dim], probs or None).

    probs, when asked for, are [batch, heads, q_len, kv_len] in q's dtype (HF's ``attentions``). An explicit
    [q_len, kv_len] mask has no block structure for the kernels to skip, so every implementation runs the
    dense ``reference`` here; :func:`causal_attention` is where ``pallas`` applies.
    """
    DENSE.resolve(impl)  # rejects an unknown name
    return reference_attention(
        q, k, v, mask, scale=scale, dropout_rate=dropout_rate, deterministic=deterministic, rng=rng,
        return_probs=return_probs, kv_heads_major=kv_heads_major,
    )


def reference_attention(q, k, v, mask, *, scale, dropout_rate=0.0, deterministic=True, rng=None, return_probs=False,
                        kv_heads_major=False):
    b, tq, h, d = q.shape
    if not kv_heads_major:
        k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    kvh, tk = k.shape[1], k.shape[2]
    if h % kvh:
        raise ValueError(f"num heads {h} is not a multiple of kv heads {kvh}")
    rep = h // kvh
    # Heads-major layout with each kv head's query group folded into the row dimension:
    # [B, G, R*Tq, D] x [B, G, Tk, D] is one plain batched matmul, ~4x faster on XLA:CPU than a
    # five-index einsum that leaves R and Tq as separate free dimensions.
    qh = batch_reshape(batch_reshape(q, (b, tq, kvh, rep, d)).transpose(0, 2, 3, 1, 4), (b, kvh, rep * tq, d))
    kh, vh = k, v
    # Scores in float32 whatever the compute dtype; the scale is applied after the product, as HF does.
    scores = jnp.einsum("bgqd,bgkd->bgqk", qh, kh, preferred_element_type=jnp.float32) * scale
    scores = batch_reshape(scores, (b, kvh, rep, tq, tk))
    # HF adds finfo.min to masked scores: s + min rounds to exactly min, so a fully masked row is uniform
    # (HF eager's values, never NaN). Adding, rather than selecting min, also keeps HF's gradient: d/ds = 1
    # through every score, which matters for those fully masked rows when their outputs reach a loss.
    scores = scores + jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :, :]
    probs = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    kept = dropout(probs, dropout_rate, deterministic=deterministic, rng=rng)
    out = jnp.einsum("bgqk,bgkd->bgqd", batch_reshape(kept, (b, kvh, rep * tq, tk)), vh,
                     preferred_element_type=jnp.float32).astype(q.dtype)
    out = batch_reshape(batch_reshape(out, (b, kvh, rep, tq, d)).transpose(0, 3, 1, 2, 4), (b, tq, h, d))
    return out, (batch_reshape(probs, (b, h, tq, tk)) if return_probs else None)
