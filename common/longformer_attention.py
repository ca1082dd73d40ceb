"""Longformer self-attention (sliding window + global tokens), HF ``LongformerSelfAttention`` semantics.

One layer, pure functions over a param dict (Flax naming, kernels ``(in, out)``)::

    {"query", "key", "value", "query_global", "key_global", "value_global"}: {"kernel": [H, H], "bias": [H]}

Semantics (HF transformers 5.23, ``modeling_longformer.py``; LED's encoder attention is a verbatim copy).
With w = one_sided_window, M = masked (padding) keys, G = global tokens (global AND not padding):

- a non-global, non-padding query i takes ONE softmax over the band keys {j : |i-j| <= w} minus M and G,
  plus every global token. A global key inside the band is counted once, in its global column: HF adds
  ``finfo.min`` to the band score of every key whose merged mask is != 0 (masked or global), so the band
  copy gets probability exactly 0. Scores use ``query``/``key`` (local projections, even for global keys),
  values use ``value``; q is divided by sqrt(head_dim) after the bias, BEFORE the product.
- a global query takes a softmax over all non-padding keys with ``query_global``/``key_global``/
  ``value_global``; its result overwrites the local one.
- a padding query outputs exactly 0 (HF zeroes its probabilities after the softmax).

Masking values, as HF (they matter only for which rows are uniform and for gradients):
- band keys that are padding or global: ``score + finfo.min`` (additive; rounds to finfo.min in f32);
- band positions outside [0, T): ``-inf`` (HF's ``_mask_invalid_locations``);
- padding global slots (rows with fewer than max_num_global globals): score SET to finfo.min;
- global rows: padding keys and padding slots SET to finfo.min (so a padding slot's row is a uniform
  1/T, which HF returns as-is in ``global_attentions``).
No row is ever all ``-inf`` (the query's own position is always inside its band), so nothing is NaN.

Outputs (HF's layouts after ``LongformerEncoder`` transposes them):
- ``local_probs`` = HF ``attentions``: [B, heads, T, X + 2w + 1], X = max_num_global. Columns 0..X-1
  are the global slots (ascending position order; 0 for padding slots), then band offsets -w..+w (self at
  X + w; 0 for global, padding and out-of-range keys). Rows of global tokens and of padding are all 0.
  When X == 0 there are no global columns.
- ``global_probs`` = HF ``global_attentions``: [B, heads, T, X] (None when X == 0, as HF): entry
  [b, h, j, g] is the probability that global slot g attends to key j; padding slots hold 1/T.
Both are recorded after dropout, as HF does.

The caller pads T to a multiple of 2 * one_sided_window (HF pads in ``LongformerModel``, not the layer).

``max_num_global`` (X) must be static: HF's is data dependent (max over the batch of the number of global
tokens). Leave it None to compute it on the host from concrete masks (what HF does); under ``jit`` pass
it (e.g. :func:`count_max_num_global` on the host batch). A larger X only adds padding slots, which change
nothing but the width of the returned probabilities; with a smaller X the global tokens beyond the first X
of a row are treated as ordinary local tokens (consistently everywhere; never garbage).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from common.attention_impls import SLIDING_WINDOW
from common.kernels.ops import pallas_attention
from common.layers import dense, dropout, fold_rng
from common.quantization import weight
from common.sharding import BATCH, constrain, replicate
from common.validation import host_value, on_device

PROJECTIONS = ("query", "key", "value", "query_global", "key_global", "value_global")

_F32_MIN = float(jnp.finfo(jnp.float32).min)

# Queries per block of the blocked implementation, at most: a block of qb queries reads qb + 2w keys, so
# smaller blocks waste less of the (qb + 2w)-wide score rows and keep them in cache; below ~128 the products
# get too thin. Measured on CPU at T = 4,096: see benchmarks/README.md (LED).
MAX_QUERY_BLOCK = 128


def query_block(w: int, limit: int | None = None) -> int:
    """The blocked implementation's query block for one-sided window w: the largest divisor of w that is at
    most ``limit`` (default MAX_QUERY_BLOCK), or w itself when that divisor would be under a quarter of the
    limit (a window with no usable divisor keeps blocks of w)."""
    limit = MAX_QUERY_BLOCK if limit is None else limit
    if w <= limit:
        return w
    best = max(q for q in range(1, limit + 1) if w % q == 0)
    return best if 4 * best >= limit else w


def count_max_num_global(attention_mask, global_mask) -> int:
    """The largest number of (non-padding) global tokens in any batch row (HF's ``max_num_global_attn_indices``),
    as a Python int. attention_mask, global_mask: [B, T] bool or 0/1, concrete numpy or device arrays (then only
    the count is read back)."""
    attention_mask, global_mask = (m if on_device(m) else np.asarray(m) for m in (attention_mask, global_mask))
    if global_mask.size == 0:
        return 0
    with jax.ensure_compile_time_eval():  # concrete masks closed over by a function being traced stay concrete
        eff = global_mask.astype(bool) & attention_mask.astype(bool)
        return int(host_value(eff.sum(axis=1).max()))


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _heads(x, num_heads):
    """[B, T, H] -> heads-major [B, heads, T, head_dim]."""
    b, t, h = x.shape
    x = x.reshape(b, t, num_heads, h // num_heads).transpose(0, 2, 1, 3)
    return constrain(x, BATCH, "tensor", None, None)


def _global_slots(attention_mask, global_mask, x: int):
    """Static-size gather plan for the global tokens.

    Returns eff_global [B, T] bool (global, not padding, among the first x of its row), idx [B, x] int
    (positions in ascending order, 0 in padding slots), slot_valid [B, x] bool, slot_of_pos [B, T] int
    (the slot of each global position; clipped garbage elsewhere).
    """
    g = global_mask & attention_mask  # HF merge: mask * (global + 1), so a padding token is never global
    rank = jnp.cumsum(g.astype(jnp.int32), axis=1)  # 1-based slot of each global position
    eff = g & (rank <= x)
    counts = jnp.sum(eff.astype(jnp.int32), axis=1)
    slot_valid = jnp.arange(x)[None, :] < counts[:, None]
    if x:
        idx = jax.vmap(lambda row: jnp.nonzero(row, size=x, fill_value=0)[0])(eff)
    else:
        idx = jnp.zeros((attention_mask.shape[0], 0), jnp.int32)
    slot_of_pos = jnp.clip(rank - 1, 0, max(x - 1, 0))
    return eff, idx.astype(jnp.int32), slot_valid, slot_of_pos


def _local_qkv(p, hidden, num_heads):
    """The local projections, heads-major [B, heads, T, d] each; q is scaled after the bias, before the
    product, as HF does."""
    d = hidden.shape[-1] // num_heads
    q = _heads(dense(p["query"], hidden) / math.sqrt(d), num_heads)
    return q, _heads(dense(p["key"], hidden), num_heads), _heads(dense(p["value"], hidden), num_heads)


def _global_queries(p, hidden, num_heads, idx, slot_valid):
    """query_global of the gathered global tokens: [B, heads, X, d]. HF gathers the global hidden states into
    zeroed slots, then projects them (so a padding slot's query is the bias alone)."""
    d = hidden.shape[-1] // num_heads
    hg = jnp.take_along_axis(hidden, idx[:, :, None], axis=1)
    hg = jnp.where(slot_valid[:, :, None], hg, jnp.zeros_like(hg))
    return _heads(dense(p["query_global"], hg) / math.sqrt(d), num_heads)


def _gather_rows(x, idx):
    """x [B, heads, T, d], idx [B, X] -> [B, heads, X, d]."""
    return jnp.take_along_axis(x, idx[:, None, :, None], axis=2)


def _global_rows(p, hidden, num_heads, idx, slot_valid, attention_mask, *, rate, deterministic, rng):
    """Global queries over all keys with the *_global projections: linear in T.

    Returns (out [B, heads, X, d] in hidden's dtype, probs [B, heads, X, T] after dropout).

    HF projects every token through key_global and value_global (2·T·H² FLOPs) for only X query rows. When
    X·heads < H it is cheaper to fold the projections into the queries and the probabilities instead:
    q·(h Wk + bk) = (q Wkᵀ)·h + q·bk and P (h Wv + bv) = (P h) Wv + (Σ P) bv, 2·X·heads·T·H FLOPs each.
    """
    b, t, h = hidden.shape
    d = h // num_heads
    f32 = dict(preferred_element_type=jnp.float32)
    qg = _global_queries(p, hidden, num_heads, idx, slot_valid)  # [B, heads, X, d]
    folded = idx.shape[1] * num_heads < h
    if folded:
        # The weights enter raw einsums here: gathered whole (a no-op outside Explicit mesh axes), as dense() does.
        wk = replicate(weight(p["key_global"]["kernel"], hidden.dtype)).reshape(h, num_heads, d)
        bk = replicate(p["key_global"]["bias"]).astype(hidden.dtype).reshape(num_heads, d)
        qk = jnp.einsum("bhxd,ehd->bhxe", qg, wk, **f32).astype(hidden.dtype)  # [B, heads, X, H]
        s = jnp.einsum("bhxe,bte->bhxt", qk, hidden, **f32) + jnp.einsum("bhxd,hd->bhx", qg, bk, **f32)[..., None]
    else:
        kg = _heads(dense(p["key_global"], hidden), num_heads)  # [B, heads, T, d]
        s = jnp.einsum("bhxd,bhtd->bhxt", qg, kg, **f32)
    # HF assigns (not adds) finfo.min to padding slots' rows and to padding keys.
    keep = slot_valid[:, None, :, None] & attention_mask[:, None, None, :]
    s = jnp.where(keep, s, _F32_MIN)
    probs = jax.nn.softmax(s, axis=-1).astype(hidden.dtype)
    probs = dropout(probs, rate, deterministic=deterministic, rng=rng)
    if folded:
        wv = replicate(weight(p["value_global"]["kernel"], hidden.dtype)).reshape(h, num_heads, d)
        bv = replicate(p["value_global"]["bias"]).astype(jnp.float32).reshape(num_heads, d)
        ph = jnp.einsum("bhxt,bte->bhxe", probs, hidden, **f32).astype(hidden.dtype)  # [B, heads, X, H]
        out = jnp.einsum("bhxe,ehd->bhxd", ph, wv, **f32)
        out = out + jnp.sum(probs.astype(jnp.float32), axis=-1)[..., None] * bv[None, :, None, :]
    else:
        vg = _heads(dense(p["value_global"], hidden), num_heads)
        out = jnp.einsum("bhxt,bhtd->bhxd", probs, vg, **f32)
    return out.astype(hidden.dtype), probs


def longformer_self_attention(p, hidden, *, num_heads: int, one_sided_window: int, attention_mask, global_mask,
                              impl: str = "blocked", dropout_rate: float = 0.0, deterministic: bool = True,
                              rng=None, output_attentions: bool = False, max_num_global: int | None = None):
    """One Longformer self-attention layer, before the output dense.

    hidden: [B, T, H]; attention_mask: [B, T] bool (False = padding); global_mask: [B, T] bool (True =
    global). T must be a multiple of 2 * one_sided_window. Returns (out [B, T, H], local_probs
    [B, heads, T, X + 2w + 1] or None, global_probs [B, heads, T, X] or None); see the module docstring.
    """
    impl = SLIDING_WINDOW.resolve(impl)
    b, t, h = hidden.shape
    w = int(one_sided_window)
    if w < 1:
        raise ValueError(f"one_sided_window must be >= 1, got {one_sided_window}")
    if h % num_heads:
        raise ValueError(f"hidden size {h} is not a multiple of num_heads {num_heads}")
    if t % (2 * w):
        raise ValueError(f"sequence length {t} must be a multiple of 2 * one_sided_window = {2 * w}; "
                         "pad it first (HF pads in LongformerModel)")
    attention_mask = jnp.asarray(attention_mask, bool)
    global_mask = jnp.asarray(global_mask, bool)
    if attention_mask.shape != (b, t) or global_mask.shape != (b, t):
        raise ValueError(f"attention_mask {attention_mask.shape} and global_mask {global_mask.shape} must be {(b, t)}")
    if _is_concrete(attention_mask, global_mask):
        needed = count_max_num_global(attention_mask, global_mask)
        if max_num_global is None:
            max_num_global = needed
        elif max_num_global < needed:
            raise ValueError(f"max_num_global={max_num_global} but a batch row has {needed} global tokens")
    elif max_num_global is None:
        raise ValueError("under jit, pass max_num_global (a static int, e.g. count_max_num_global(mask, gmask) "
                         "computed on the host): the number of global slots must be static")
    x = int(max_num_global)
    if not deterministic and dropout_rate > 0.0 and rng is None:
        raise ValueError("dropout with deterministic=False needs an `rng` key")
    if impl == "pallas" and (output_attentions or (dropout_rate > 0.0 and not deterministic)):
        # The kernels neither return probabilities nor apply dropout: such calls run blocked (same results, the
        # same dropout stream as an explicit "blocked").
        impl = "blocked"
    fn = {"blocked": _blocked, "reference": _reference, "pallas": _pallas}[impl]
    return fn(p, hidden, num_heads=num_heads, w=w, x=x, attention_mask=attention_mask, global_mask=global_mask,
              rate=dropout_rate, deterministic=deterministic, rng=rng, output_attentions=output_attentions)


# ----------------------------------------------------------------------------------------- blocked
def _key_bias(attention_mask, eff_global, w):
    """Additive score bias per key position, padded by w on each side: [B, T + 2w] float32.

    0 for usable keys, finfo.min for padding or global keys (HF adds it to the band score, so a global key
    counts once, in its global column), -inf for the positions outside [0, T) (HF's invalid locations)."""
    bias = jnp.where(~attention_mask | eff_global, _F32_MIN, 0.0).astype(jnp.float32)
    return jnp.pad(bias, ((0, 0), (w, w)), constant_values=-jnp.inf)


def _blocked(p, hidden, *, num_heads, w, x, attention_mask, global_mask, rate, deterministic, rng,
             output_attentions, qb=None):
    """O(T·w): a loop over blocks of qb query rows (:func:`query_block`, a divisor of w), each against its
    qb + 2w neighbouring keys (positions i·qb - w .. (i+1)·qb + w - 1) plus the X gathered global keys, in
    one softmax.

    The loop keeps one block's scores ([B, heads, qb, X + qb + 2w]) live at a time: on CPU that working set
    stays in cache, which is 3x faster than one batched einsum over all blocks at T = 4096, and keeps time
    and memory linear in T beyond it.
    """
    b, t, h = hidden.shape
    d = h // num_heads
    qb = query_block(w) if qb is None else qb
    n = t // qb
    eff_g, idx, slot_valid, slot_of_pos = _global_slots(attention_mask, global_mask, x)
    q, k, v = _local_qkv(p, hidden, num_heads)
    pad = ((0, 0), (0, 0), (w, w), (0, 0))
    kp, vp = jnp.pad(k, pad), jnp.pad(v, pad)  # [B, heads, T + 2w, d]: block i's keys start at row i * qb
    key_bias = _key_bias(attention_mask, eff_g, w)
    # Query r of a block sees window column s iff the offset s - w - r lies in [-w, w].
    r, s = np.arange(qb)[:, None], np.arange(qb + 2 * w)[None, :]
    in_band = jnp.asarray((s >= r) & (s <= r + 2 * w))
    if x:
        kg = jnp.where(slot_valid[:, None, :, None], _gather_rows(k, idx), 0.0)  # [B, heads, X, d]
        vg = jnp.where(slot_valid[:, None, :, None], _gather_rows(v, idx), 0.0)
    band_cols = jnp.asarray(np.arange(qb)[:, None] + np.arange(2 * w + 1)[None, :])  # offset c - w at r + c
    drop_rng = fold_rng(rng, 0)

    def block(i):
        start = i * qb
        qs = jax.lax.dynamic_slice_in_dim(q, start, qb, axis=2)  # [B, heads, qb, d]
        ks = jax.lax.dynamic_slice_in_dim(kp, start, qb + 2 * w, axis=2)  # [B, heads, qb + 2w, d]
        vs = jax.lax.dynamic_slice_in_dim(vp, start, qb + 2 * w, axis=2)
        bias = jax.lax.dynamic_slice_in_dim(key_bias, start, qb + 2 * w, axis=1)  # [B, qb + 2w]
        band = jnp.einsum("bhqd,bhkd->bhqk", qs, ks, preferred_element_type=jnp.float32)
        band = jnp.where(in_band, band + bias[:, None, None, :], -jnp.inf)
        scores = band
        if x:
            gcols = jnp.einsum("bhqd,bhxd->bhqx", qs, kg, preferred_element_type=jnp.float32)
            gcols = jnp.where(slot_valid[:, None, None, :], gcols, _F32_MIN)  # HF sets padding slots
            scores = jnp.concatenate([gcols, band], axis=-1)  # [B, heads, qb, X + qb + 2w]: one softmax
        probs = jax.nn.softmax(scores, axis=-1)
        qmask = jax.lax.dynamic_slice_in_dim(attention_mask, start, qb, axis=1)
        probs = jnp.where(qmask[:, None, :, None], probs, 0.0).astype(hidden.dtype)  # padding queries output 0
        probs = dropout(probs, rate, deterministic=deterministic,
                        rng=None if drop_rng is None else jax.random.fold_in(drop_rng, i))
        out = jnp.einsum("bhqk,bhkd->bhqd", probs[..., x:], vs, preferred_element_type=jnp.float32)
        if x:
            out = out + jnp.einsum("bhqx,bhxd->bhqd", probs[..., :x], vg, preferred_element_type=jnp.float32)
        out = out.astype(hidden.dtype)
        if not output_attentions:
            return out, None
        bandp = jnp.take_along_axis(probs[..., x:], band_cols[None, None], axis=-1)  # [B, heads, qb, 2w+1]
        return out, jnp.concatenate([probs[..., :x], bandp], axis=-1)

    out, local = jax.lax.map(block, jnp.arange(n))  # [n, B, heads, qb, d], [n, B, heads, qb, X + 2w + 1]
    out = out.transpose(1, 2, 0, 3, 4).reshape(b, num_heads, t, d)

    gprobs = None
    if x:
        gout, gprobs = _global_rows(p, hidden, num_heads, idx, slot_valid, attention_mask, rate=rate,
                                    deterministic=deterministic, rng=fold_rng(rng, 1))
        # Global rows overwrite the (wasted) local result: a gather by slot, no scatter.
        from_slot = _gather_rows(gout, slot_of_pos)  # [B, heads, T, d]
        out = jnp.where(eff_g[:, None, :, None], from_slot, out)
    out = out.transpose(0, 2, 1, 3).reshape(b, t, h)
    out = constrain(out, BATCH, None, None)
    if not output_attentions:
        return out, None, None
    local = local.transpose(1, 2, 0, 3, 4).reshape(b, num_heads, t, x + 2 * w + 1)
    local = jnp.where(eff_g[:, None, :, None], 0.0, local).astype(hidden.dtype)  # HF zeroes global rows
    gp = None if gprobs is None else gprobs.transpose(0, 1, 3, 2)  # [B, heads, T, X]
    return out, local, gp


# ------------------------------------------------------------------------------------------ pallas
def _pallas(p, hidden, *, num_heads, w, x, attention_mask, global_mask, rate, deterministic, rng,
            output_attentions):
    """The block-sparse kernels (:mod:`common.kernels`): local rows over their band + the gathered global keys,
    global rows over all keys with the *_global projections. Memory O(T·d): no score matrix is stored.

    No probabilities, no dropout: :func:`longformer_self_attention` sends such calls to the blocked path.
    """
    b, t, h = hidden.shape
    eff_g, idx, slot_valid, slot_of_pos = _global_slots(attention_mask, global_mask, x)
    q, k, v = _local_qkv(p, hidden, num_heads)
    # A global key is seen once, through the global segment: its band copy is invalid (HF's finfo.min).
    band_ok = attention_mask & ~eff_g
    glob = {}
    if x:
        glob = dict(global_k=_gather_rows(k, idx), global_v=_gather_rows(v, idx), global_ok=slot_valid)
    out = pallas_attention(q, k, v, band_ok, scale=1.0, left=w, right=w, **glob)
    out = jnp.where(attention_mask[:, None, :, None], out, jnp.zeros_like(out))  # padding queries output 0
    if x:
        qg = _global_queries(p, hidden, num_heads, idx, slot_valid)
        kg = _heads(dense(p["key_global"], hidden), num_heads)
        vg = _heads(dense(p["value_global"], hidden), num_heads)
        gout = pallas_attention(qg, kg, vg, attention_mask, scale=1.0)  # every key: no window
        out = jnp.where(eff_g[:, None, :, None], _gather_rows(gout, slot_of_pos), out)
    out = out.transpose(0, 2, 1, 3).reshape(b, t, h)
    return constrain(out, BATCH, None, None), None, None


# --------------------------------------------------------------------------------------- reference
def _reference(p, hidden, *, num_heads, w, x, attention_mask, global_mask, rate, deterministic, rng,
               output_attentions):
    """Dense oracle: explicit [B, heads, T, T] scores with the set semantics, one softmax per row."""
    b, t, h = hidden.shape
    d = h // num_heads
    eff_g, idx, slot_valid, _ = _global_slots(attention_mask, global_mask, x)
    q, k, v = _local_qkv(p, hidden, num_heads)
    pos = jnp.arange(t)
    band = jnp.abs(pos[:, None] - pos[None, :]) <= w
    allowed = (band[None] | eff_g[:, None, :]) & attention_mask[:, None, :]  # [B, T(q), T(k)]
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    s = s + jnp.where(allowed, 0.0, _F32_MIN)[:, None]
    probs = jax.nn.softmax(s, axis=-1)
    probs = jnp.where(attention_mask[:, None, :, None], probs, 0.0).astype(hidden.dtype)
    probs = dropout(probs, rate, deterministic=deterministic, rng=fold_rng(rng, 0))
    out = jnp.einsum("bhqk,bhkd->bhqd", probs, v, preferred_element_type=jnp.float32).astype(hidden.dtype)

    # Global rows: every query through the *_global projections, over all non-padding keys.
    qg = _heads(dense(p["query_global"], hidden) / math.sqrt(d), num_heads)
    kg = _heads(dense(p["key_global"], hidden), num_heads)
    vg = _heads(dense(p["value_global"], hidden), num_heads)
    sg = jnp.einsum("bhqd,bhkd->bhqk", qg, kg, preferred_element_type=jnp.float32)
    sg = jnp.where(attention_mask[:, None, None, :], sg, _F32_MIN)
    pg = jax.nn.softmax(sg, axis=-1).astype(hidden.dtype)
    pg = dropout(pg, rate, deterministic=deterministic, rng=fold_rng(rng, 1))
    outg = jnp.einsum("bhqk,bhkd->bhqd", pg, vg, preferred_element_type=jnp.float32).astype(hidden.dtype)
    out = jnp.where(eff_g[:, None, :, None], outg, out)
    out = out.transpose(0, 2, 1, 3).reshape(b, t, h)
    if not output_attentions:
        return out, None, None

    # HF layout: X global-slot columns, then band offsets -w..w (0 where the key is global or outside).
    gcols = jnp.take_along_axis(probs, jnp.broadcast_to(idx[:, None, None, :], (b, num_heads, t, x)), axis=-1)
    gcols = jnp.where(slot_valid[:, None, None, :], gcols, 0.0)
    j = pos[:, None] + jnp.arange(-w, w + 1)[None, :]  # [T, 2w+1]
    inside = (j >= 0) & (j < t)
    bandp = jnp.take_along_axis(probs, jnp.broadcast_to(jnp.clip(j, 0, t - 1), (b, num_heads, t, 2 * w + 1)), -1)
    key_global = jnp.take(eff_g, jnp.clip(j, 0, t - 1), axis=1)  # [B, T, 2w+1]
    bandp = jnp.where(inside[None, None] & ~key_global[:, None], bandp, 0.0)
    local = jnp.concatenate([gcols, bandp], axis=-1)
    local = jnp.where(eff_g[:, None, :, None], 0.0, local).astype(hidden.dtype)
    gp = None
    if x:
        rows = _gather_rows(pg, idx)  # [B, heads, X, T]
        # HF's padding slots have all-finfo.min rows: a uniform 1/T (returned as-is in global_attentions).
        rows = jnp.where(slot_valid[:, None, :, None], rows, jnp.asarray(1.0 / t, rows.dtype))
        gp = rows.transpose(0, 1, 3, 2)
    return out, local, gp
