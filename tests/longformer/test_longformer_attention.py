"""Longformer self-attention: parity with HF's own module, blocked == reference, no T x T in blocked."""

from __future__ import annotations

import re

import chex
import jax
import jax.extend.core as jex_core
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers.models.longformer.modeling_longformer as lf
from transformers import LongformerConfig
from transformers.masking_utils import create_bidirectional_mask

from common import longformer_attention as LA
from common.longformer_attention import PROJECTIONS, count_max_num_global, longformer_self_attention

H, HEADS = 32, 4


# ------------------------------------------------------------------------------------------ helpers
def _masks(b, t, pad_lens, globals_per_row):
    """attention_mask [B, T] (the last pad_lens[r] positions padded) and global_mask [B, T] bool."""
    am = np.ones((b, t), bool)
    gm = np.zeros((b, t), bool)
    for r in range(b):
        if pad_lens[r]:
            am[r, t - pad_lens[r]:] = False
        gm[r, list(globals_per_row[r])] = True
    return am, gm


def _hf_layer(w_full, seed):
    cfg = LongformerConfig(hidden_size=H, num_attention_heads=HEADS, num_hidden_layers=1,
                           attention_window=[w_full], attention_probs_dropout_prob=0.0)
    cfg._attn_implementation = "eager"  # what LongformerModel sets; create_bidirectional_mask reads it
    torch.manual_seed(seed)
    layer = lf.LongformerSelfAttention(cfg, layer_id=0).eval()
    with torch.no_grad():
        for name in PROJECTIONS:  # random weights AND non-zero biases, different per projection
            lin = getattr(layer, name)
            lin.weight.normal_(0.0, 0.3)
            lin.bias.normal_(0.0, 0.3)
    params = {name: {"kernel": jnp.asarray(getattr(layer, name).weight.detach().numpy().T),
                     "bias": jnp.asarray(getattr(layer, name).bias.detach().numpy())} for name in PROJECTIONS}
    return cfg, layer, params


def _hf_forward(cfg, layer, hidden, am, gm):
    """Run HF's layer with the mask built exactly as LongformerModel.forward / LongformerEncoder do."""
    h = torch.from_numpy(hidden)
    merged = torch.from_numpy(am.astype(np.int64)) * (torch.from_numpy(gm.astype(np.int64)) + 1)  # 0/1/2
    ext = create_bidirectional_mask(config=cfg, inputs_embeds=h, attention_mask=torch.clamp(merged, min=0, max=1),
                                    allow_is_bidirectional_skip=False)[:, 0, 0, :]
    ext[merged == 2] = torch.finfo(h.dtype).max
    is_index_masked = ext < 0
    is_index_global_attn = ext > 0
    is_global_attn = is_index_global_attn.flatten().any().item()
    with torch.no_grad():
        outs = layer(h, attention_mask=ext, is_index_masked=is_index_masked, is_index_global_attn=is_index_global_attn,
                     is_global_attn=is_global_attn, output_attentions=True)
    out = outs[0].numpy()
    attn = outs[1].transpose(1, 2).numpy()  # LongformerEncoder: [B, heads, T, X + 2w + 1]
    gattn = outs[2].transpose(2, 3).numpy() if is_global_attn else None  # [B, heads, T, X]
    return out, attn, gattn


def _maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


# ------------------------------------------------------------------------------------- 1. HF parity
HF_CASES = [
    # (attention_window, T, pad_lens, global positions per row)
    (4, 8, [0, 0], [[], []]),                   # no global at all, no padding: T = 2w
    (4, 16, [0, 3], [[5], []]),                 # one global in one row, padding in the other
    (4, 24, [5, 0, 2], [[0, 7, 9], [23], [3, 4, 12, 21]]),  # different counts, first/last, adjacent
    (8, 32, [7, 0], [[1, 2, 30], [0, 31, 16]]),  # a global flagged on padding (30) is not global
    (8, 16, [0, 9], [[], [2]]),
    # X * heads >= hidden: global rows through the projected keys/values, not the folded form
    (4, 24, [0, 2], [list(range(0, 24, 3)), [5]]),
]


@pytest.mark.parametrize("w_full,t,pad_lens,glob", HF_CASES)
def test_parity_with_hf_module(w_full, t, pad_lens, glob):
    b = len(pad_lens)
    cfg, layer, params = _hf_layer(w_full, seed=t + w_full)
    rng = np.random.default_rng(t)
    hidden = rng.normal(size=(b, t, H)).astype(np.float32)
    am, gm = _masks(b, t, pad_lens, glob)
    ref_out, ref_attn, ref_g = _hf_forward(cfg, layer, hidden, am, gm)
    x = count_max_num_global(am, gm)
    assert ref_attn.shape == (b, HEADS, t, x + w_full + 1)
    for impl in ("reference", "blocked"):
        fn = jax.jit(lambda p, hd, am, gm, impl=impl: longformer_self_attention(
            p, hd, num_heads=HEADS, one_sided_window=w_full // 2, attention_mask=am, global_mask=gm, impl=impl,
            output_attentions=True, max_num_global=x))
        out, attn, g = fn(params, jnp.asarray(hidden), am, gm)
        rows = am  # non-padded rows (padding rows are compared too, below: both are exactly 0)
        assert _maxdiff(np.asarray(out)[rows], ref_out[rows]) <= 1e-5, impl
        assert np.all(np.asarray(out)[~am] == 0) and np.all(ref_out[~am] == 0)
        assert attn.shape == ref_attn.shape, impl
        assert _maxdiff(np.asarray(attn).transpose(0, 2, 1, 3)[rows], ref_attn.transpose(0, 2, 1, 3)[rows]) <= 1e-5
        if ref_g is None:
            assert g is None, impl
        else:
            assert g.shape == ref_g.shape == (b, HEADS, t, x), impl
            # all of it, padding keys and HF's uniform padding-slot rows included
            assert _maxdiff(g, ref_g) <= 1e-5, impl


def test_parity_fails_on_wrong_semantics():
    """The parity check can fail: swapping the global projections for the local ones is detected."""
    cfg, layer, params = _hf_layer(4, seed=0)
    hidden = np.random.default_rng(0).normal(size=(1, 16, H)).astype(np.float32)
    am, gm = _masks(1, 16, [0], [[3]])
    ref_out, _, _ = _hf_forward(cfg, layer, hidden, am, gm)
    bad = dict(params, query_global=params["query"], key_global=params["key"], value_global=params["value"])
    out, _, _ = longformer_self_attention(bad, jnp.asarray(hidden), num_heads=HEADS, one_sided_window=2,
                                          attention_mask=am, global_mask=gm)
    assert _maxdiff(out, ref_out) > 1e-3


# ------------------------------------------------------------------------ 2. blocked == reference
def _random_params(key, h):
    ks = jax.random.split(key, 2 * len(PROJECTIONS))
    return {n: {"kernel": 0.3 * jax.random.normal(ks[2 * i], (h, h)),
                "bias": 0.3 * jax.random.normal(ks[2 * i + 1], (h,))} for i, n in enumerate(PROJECTIONS)}


def _close(a, b, tol=1e-5):
    scale = max(1.0, float(np.max(np.abs(np.asarray(b)))) if np.size(b) else 1.0)
    return _maxdiff(a, b) <= tol * scale


BLOCKED_CASES = [
    # (w, T, B, pad_lens, globals per row, extra global slots)
    (2, 4, 1, [0], [[]], 0),                       # T = 2w, nothing global
    (3, 6, 2, [0, 2], [[0], [3]], 0),              # odd w, T = 2w
    (2, 24, 2, [0, 5], [[0, 23], [1, 2, 3]], 0),   # first/last position, many blocks
    (4, 64, 2, [10, 0], [[5, 40, 60], [63]], 2),   # a global on padding; extra (padding) slots
    (1, 10, 1, [1], [[4, 5]], 0),                  # w = 1 (HF itself crashes here)
    (5, 40, 3, [0, 13, 39], [[], [7, 8, 9, 10], [0]], 1),  # a row with one real token
    (2, 24, 2, [0, 3], [list(range(1, 20, 2)), [4]], 0),   # X * heads >= hidden: projected global keys
]


LAYER_HEADS = 2


def layer_case(w, t, b, pad_lens, glob, extra, h=16):
    """One BLOCKED_CASES row as inputs of a layer with LAYER_HEADS heads: (key, params, hidden [B, T, h],
    attention_mask, global_mask, max_num_global)."""
    key = jax.random.PRNGKey(w * 100 + t)
    params = _random_params(key, h)
    hidden = jax.random.normal(jax.random.fold_in(key, 1), (b, t, h))
    am, gm = _masks(b, t, pad_lens, glob)
    return key, params, hidden, am, gm, count_max_num_global(am, gm) + extra


# Query blocks of w rows (the default at these small windows), and blocks smaller than w (MAX_QUERY_BLOCK = 2:
# blocks of 2 rows for w = 4, of 1 row for w = 3 and 5), as the real windows (w = 256, 512) run.
@pytest.mark.parametrize("w,t,b,pad_lens,glob,extra,max_block",
                         [c + (None,) for c in BLOCKED_CASES] + [c + (2,) for c in BLOCKED_CASES if c[0] > 2])
def test_blocked_matches_reference(w, t, b, pad_lens, glob, extra, max_block, monkeypatch):
    if max_block is not None:
        monkeypatch.setattr(LA, "MAX_QUERY_BLOCK", max_block)
        assert LA.query_block(w) < w
    key, params, hidden, am, gm, x = layer_case(w, t, b, pad_lens, glob, extra)
    heads = LAYER_HEADS

    def run(impl, params, hidden):
        return longformer_self_attention(params, hidden, num_heads=heads, one_sided_window=w, attention_mask=am,
                                         global_mask=gm, impl=impl, output_attentions=True, max_num_global=x)

    shapes = jax.eval_shape(lambda: run("reference", params, hidden))
    cts = [jax.random.normal(jax.random.fold_in(key, 10 + i), o.shape) for i, o in enumerate(shapes) if o is not None]

    def loss(impl, params, hidden):
        outs = run(impl, params, hidden)
        return sum(jnp.sum(o * c) for o, c in zip([o for o in outs if o is not None], cts)), outs

    @jax.jit  # one compilation per case: eager dispatch of every op dominated the run time
    def both(params, hidden):
        return tuple(jax.value_and_grad(lambda p, hd: loss(impl, p, hd), argnums=(0, 1), has_aux=True)(params, hidden)
                     for impl in ("reference", "blocked"))

    ((_, ref), g_ref), ((_, blk), g_blk) = both(params, hidden)
    assert len(ref) == len(blk)
    for r, o in zip(ref, blk):
        if r is None:
            assert o is None and x == 0
            continue
        assert r.shape == o.shape and _close(o, r), (r.shape, _maxdiff(o, r))
    assert not any(np.isnan(np.asarray(o)).any() for o in blk if o is not None)
    chex.assert_trees_all_equal_shapes_and_dtypes(g_blk, g_ref)  # same tree: the zip pairs every leaf
    chex.assert_tree_all_finite(g_blk)
    for (path, r), o in zip(jax.tree_util.tree_leaves_with_path(g_ref), jax.tree_util.tree_leaves(g_blk)):
        assert _close(o, r), (jax.tree_util.keystr(path), _maxdiff(o, r))


def test_query_block_divides_the_window():
    assert [LA.query_block(w) for w in (1, 5, 128, 256, 384, 512, 300)] == [1, 5, 128, 128, 128, 128, 100]
    assert LA.query_block(257) == 257  # a prime window: no usable divisor, blocks of w
    assert LA.query_block(512, limit=256) == 256


# -------------------------------------------------------------------------- 3. no T x T anywhere
def _big_shapes(closed_jaxpr, t):
    """Every intermediate shape (in all nested jaxprs) with two or more dimensions >= t."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            for v in eqn.outvars:
                shape = getattr(v.aval, "shape", ())
                if sum(d >= t for d in shape) >= 2:
                    found.append((str(eqn.primitive), shape))
            for param in eqn.params.values():
                for sub in (param if isinstance(param, (tuple, list)) else (param,)):
                    if isinstance(sub, jex_core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jex_core.Jaxpr):
                        walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


def test_blocked_has_no_t_by_t_intermediate():
    t, w, h, heads = 512, 4, 16, 2
    params = _random_params(jax.random.PRNGKey(0), h)
    hidden = jax.random.normal(jax.random.PRNGKey(1), (2, t, h))
    am, gm = _masks(2, t, [7, 0], [[0, 100, 300], [511]])
    x = count_max_num_global(am, gm)

    def loss(impl):
        def f(p, hd):
            out, local, g = longformer_self_attention(p, hd, num_heads=heads, one_sided_window=w, attention_mask=am,
                                                      global_mask=gm, impl=impl, output_attentions=True,
                                                      max_num_global=x)
            return jnp.sum(out ** 2) + jnp.sum(local) + jnp.sum(g)
        return jax.value_and_grad(f, argnums=(0, 1))

    assert _big_shapes(jax.make_jaxpr(loss("blocked"))(params, hidden), t) == []
    # The scan can fail: the dense oracle materialises [B, heads, T, T].
    assert _big_shapes(jax.make_jaxpr(loss("reference"))(params, hidden), t)
    # And after XLA's optimisations: no buffer with two dimensions >= T in the compiled HLO.
    hlo = jax.jit(loss("blocked")).lower(params, hidden).compile().as_text()
    dims = [[int(d) for d in m.split(",") if d] for m in re.findall(r"\[([\d,]+)\]", hlo)]
    assert dims and not [d for d in dims if sum(x >= t for x in d) >= 2]


# ------------------------------------------------------------------------------ 4. jit, grad, dropout
def test_jit_grad_and_dropout():
    t, w, h, heads = 32, 4, 16, 2
    params = _random_params(jax.random.PRNGKey(2), h)
    hidden = jax.random.normal(jax.random.PRNGKey(3), (2, t, h))
    am, gm = _masks(2, t, [0, 6], [[3, 17], []])
    kw = dict(num_heads=heads, one_sided_window=w, max_num_global=2)

    @jax.jit
    def f(p, hd, am, gm):
        return longformer_self_attention(p, hd, attention_mask=am, global_mask=gm, **kw)[0]

    eager = longformer_self_attention(params, hidden, attention_mask=am, global_mask=gm, **kw)[0]
    assert _close(f(params, hidden, am, gm), eager)
    grads = jax.jit(jax.grad(lambda p, hd: jnp.sum(f(p, hd, am, gm) ** 2), argnums=(0, 1)))(params, hidden)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    assert float(jnp.abs(grads[0]["query_global"]["kernel"]).sum()) > 0  # the global path is differentiated

    with pytest.raises(ValueError, match="max_num_global"):  # a traced mask needs the static slot count
        jax.jit(lambda am: longformer_self_attention(params, hidden, num_heads=heads, one_sided_window=w,
                                                     attention_mask=am, global_mask=gm))(am)
    with pytest.raises(ValueError, match="multiple"):
        longformer_self_attention(params, hidden[:, :28], attention_mask=am[:, :28], global_mask=gm[:, :28], **kw)

    def _fwd(p, hd, rng, impl, rate, deterministic):
        return longformer_self_attention(p, hd, attention_mask=am, global_mask=gm, impl=impl, dropout_rate=rate,
                                         deterministic=deterministic, rng=rng, **kw)[0]

    fwd = jax.jit(_fwd, static_argnames=("impl", "rate", "deterministic"))
    for impl in ("blocked", "reference"):
        det = fwd(params, hidden, None, impl, 0.0, True)
        drop = fwd(params, hidden, jax.random.PRNGKey(4), impl, 0.3, False)
        assert _maxdiff(drop, det) > 1e-3, impl
        assert _maxdiff(drop[0, 3], det[0, 3]) > 1e-3, impl  # a global row: its probabilities are dropped too
        same = fwd(params, hidden, jax.random.PRNGKey(4), impl, 0.3, True)
        assert _maxdiff(same, det) == 0.0
        with pytest.raises(ValueError, match="rng"):
            longformer_self_attention(params, hidden, attention_mask=am, global_mask=gm, impl=impl,
                                      dropout_rate=0.3, deterministic=False, **kw)
