"""The Pallas block-sparse attention kernels (common/kernels), interpreted on CPU.

1. Values and gradients of both launchers (TPU-style grid-driven, Triton-style loop-driven) against a dense
   masked softmax: sliding windows that are not a block multiple, odd lengths, gathered global keys (at the
   ends, inside the band, next to padding, a different count per row), fully padded rows, causal with GQA and
   left padding, causal with a left window, all-keys rows. Float32: values <= 1e-5, gradients <= 1e-4 relative.
2. The Longformer layer through the kernels == the dense reference (values and gradients of every param).
3. Lowering for TPU (Mosaic) and GPU (Triton) from this CPU at the production block sizes, forward and
   backward, and illegal block shapes rejected by those lowerings.
4. Block tables, and bad arguments named.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jax.experimental.pallas import tpu as pltpu

from common.kernels import Layout, Plan, block_sparse_attention, pallas_attention
from common.kernels import ops as kernel_ops
from common.kernels.tables import forward_table, transposed_table, visits
from common.longformer_attention import longformer_self_attention
from tests.longformer.test_longformer_attention import BLOCKED_CASES, LAYER_HEADS, layer_case


# ------------------------------------------------------------------------------------------- oracle
def dense_oracle(q, k, v, key_ok, *, scale, left=None, right=None, global_k=None, global_v=None, global_ok=None):
    """Masked softmax over explicit [Tq, Tk (+ G)] scores; rows with no visible key output 0."""
    rep = q.shape[1] // k.shape[1]
    tq, tk = q.shape[2], k.shape[2]
    i, j = np.arange(tq)[:, None], np.arange(tk)[None, :]
    near = np.ones((tq, tk), bool)
    if left is not None:
        near &= j >= i - left
    if right is not None:
        near &= j <= i + right
    visible = jnp.asarray(near)[None] & key_ok[:, None, :]
    if global_k is not None:
        k, v = jnp.concatenate([k, global_k], 2), jnp.concatenate([v, global_v], 2)
        visible = jnp.concatenate([visible, jnp.broadcast_to(global_ok[:, None, :], visible.shape[:2] +
                                                             global_ok.shape[1:])], 2)
    k, v = jnp.repeat(k, rep, axis=1), jnp.repeat(v, rep, axis=1)
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision="highest") * scale
    s = jnp.where(visible[:, None], s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True)
    p = jnp.exp(s - jnp.where(jnp.isfinite(m), m, 0.0))
    p = p / jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), 1e-30)
    return jnp.einsum("bhqk,bhkd->bhqd", p, v, precision="highest")


def _rand(key, shape):
    return jax.random.normal(jax.random.PRNGKey(key), shape, jnp.float32)


def _band_case(t=37, w=5, heads=2, d=16):
    """4 rows: globals at both ends; in the band and next to padding; none; a fully padded row."""
    b = 4
    q, k, v = _rand(0, (b, heads, t, d)), _rand(1, (b, heads, t, d)), _rand(2, (b, heads, t, d))
    key_ok = np.ones((b, t), bool)
    pad_from = t - 6
    key_ok[1, pad_from:] = False
    key_ok[3, :] = False
    glob = [[0, t - 1], [t // 2, t // 2 + 1, pad_from - 1], [], []]
    g = 3
    idx = np.zeros((b, g), np.int32)
    gok = np.zeros((b, g), bool)
    for r, pos in enumerate(glob):
        idx[r, :len(pos)], gok[r, :len(pos)] = pos, True
        key_ok[r, pos] = False  # a global key is seen once: through the global segment
    take = lambda x: jnp.take_along_axis(x, jnp.asarray(idx)[:, None, :, None], axis=2)
    return q, k, v, jnp.asarray(key_ok), dict(left=w, right=w), dict(global_k=take(k), global_v=take(v),
                                                                       global_ok=jnp.asarray(gok))


def _causal_case(t=29, heads=4, kv_heads=2, d=8):
    b = 3
    q, k, v = _rand(3, (b, heads, t, d)), _rand(4, (b, kv_heads, t, d)), _rand(5, (b, kv_heads, t, d))
    key_ok = np.ones((b, t), bool)
    key_ok[1, :11] = False  # left padding
    key_ok[2, :28] = False
    return q, k, v, jnp.asarray(key_ok), dict(right=0), {}


def _all_keys_case(tq=5, t=37, d=16):
    q, k, v = _rand(6, (2, 2, tq, d)), _rand(7, (2, 2, t, d)), _rand(8, (2, 2, t, d))
    key_ok = np.ones((2, t), bool)
    key_ok[0, 20:] = False
    return q, k, v, jnp.asarray(key_ok), {}, {}


CASES = {
    "band_w5_block8": (_band_case, dict(block_q=8, block_k=8)),
    "band_w5_blocks16x8": (_band_case, dict(block_q=16, block_k=8)),
    "band_w12_blocks8x16": (lambda: _band_case(t=45, w=12), dict(block_q=8, block_k=16)),
    "causal_gqa_left_padding": (_causal_case, dict(block_q=8, block_k=8)),
    "causal_left_window": (lambda: (lambda c: c[:4] + (dict(right=0, left=6), {}))(_causal_case()),
                           dict(block_q=8, block_k=16)),
    "all_keys": (_all_keys_case, dict(block_q=8, block_k=8)),
}


@pytest.mark.parametrize("launcher", ["tpu", "triton"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_dense(case, launcher):
    make, blocks = CASES[case]
    q, k, v, key_ok, window, glob = make()
    scale = 0.37
    kw = dict(scale=scale, **window)
    diff = list(glob.get(n) for n in ("global_k", "global_v")) if glob else []

    def loss(fn, q, k, v, *gkv):
        extra = dict(glob, global_k=gkv[0], global_v=gkv[1]) if gkv else {}
        out = fn(q, k, v, key_ok, **kw, **extra)
        return jnp.sum(jnp.sin(3.0 * out)), out

    kernel = lambda *a, **kw_: pallas_attention(*a, **kw_, launcher=launcher, interpret=True, **blocks)
    argnums = tuple(range(3 + len(diff)))
    (_, got), g_got = jax.jit(jax.value_and_grad(lambda *a: loss(kernel, *a), argnums, has_aux=True))(q, k, v, *diff)
    (_, want), g_want = jax.value_and_grad(lambda *a: loss(dense_oracle, *a), argnums, has_aux=True)(q, k, v, *diff)
    assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 1e-5
    chex.assert_trees_all_equal_shapes_and_dtypes(g_got, g_want)
    assert len(g_got) == len(argnums)
    for name, a, b in zip(("dq", "dk", "dv", "d global_k", "d global_v"), g_got, g_want):
        a, b = np.asarray(a), np.asarray(b)
        assert np.isfinite(a).all(), name
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max(), (name, np.abs(a - b).max(), np.abs(b).max())
    if case.startswith("band"):
        assert np.all(np.asarray(got)[3] == 0.0)  # the fully padded row: no visible key, output 0, no NaN
    if case.startswith("causal"):
        assert np.all(np.asarray(got)[2, :, :28] == 0.0)


def test_tpu_interpreter_checks_races_and_bounds():
    """Mosaic's own interpreter (simulated VMEM/SMEM, DMAs, two cores splitting the parallel axes) with race
    detection and out-of-bounds reads raising: the grid-driven launcher's forward and backward are race-free."""
    q, k, v, key_ok, window, glob = _band_case(t=24, w=5, heads=1, d=8)
    q, k, v, key_ok = q[:2], k[:2], v[:2], key_ok[:2]
    glob = {n: x[:2] for n, x in glob.items()}
    params = pltpu.InterpretParams(detect_races=True, out_of_bounds_reads="raise", num_cores_or_threads=2)
    with pltpu.force_tpu_interpret_mode(params):
        f = lambda q: pallas_attention(q, k, v, key_ok, scale=0.5, launcher="tpu", interpret=False, block_q=8,
                                       block_k=8, **window, **glob)
        out, vjp = jax.vjp(f, q)
        (dq,) = vjp(jnp.ones_like(out))
        jax.block_until_ready(dq)
        from jax._src.pallas.mosaic.interpret import interpret_pallas_call as ipc  # where jax keeps the verdict
        races = ipc.races
    pltpu.reset_tpu_interpret_mode_state()
    assert races is not None and not races.races_found
    want = dense_oracle(q, k, v, key_ok, scale=0.5, **window, **glob)
    assert np.abs(np.asarray(out) - np.asarray(want)).max() <= 1e-5


# ------------------------------------------------------------------------------------- Longformer layer
@pytest.mark.parametrize("case", BLOCKED_CASES, ids=[f"w{c[0]}_t{c[1]}_b{c[2]}" for c in BLOCKED_CASES])
def test_longformer_layer_through_kernels(case):
    w = case[0]
    _, params, hidden, am, gm, x = layer_case(*case)
    heads = LAYER_HEADS

    def loss(impl):
        def f(p, hd):
            out = longformer_self_attention(p, hd, num_heads=heads, one_sided_window=w, attention_mask=am,
                                            global_mask=gm, impl=impl, max_num_global=x)[0]
            return jnp.sum(jnp.sin(out)), out
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

    (_, want), g_want = loss("reference")(params, hidden)
    (_, got), g_got = loss("pallas")(params, hidden)
    assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 1e-5
    assert np.all(np.asarray(got)[~am] == 0.0)
    chex.assert_trees_all_equal_shapes_and_dtypes(g_got, g_want)  # same tree: the zip pairs every leaf
    for (path, a), bb in zip(jax.tree_util.tree_leaves_with_path(g_got), jax.tree_util.tree_leaves(g_want)):
        a, bb = np.asarray(a), np.asarray(bb)
        assert np.abs(a - bb).max() <= 1e-4 * max(1.0, np.abs(bb).max()), jax.tree_util.keystr(path)


# ------------------------------------------------------------------------------------------- lowering
def _lower(launcher, platform, *, bq, bk, t=2048, d=64, dtype=jnp.bfloat16, heads=4, kv_heads=4, n_global=8,
           left=256, right=256, tq=None):
    """Export forward + backward of pallas_attention for ``platform``; returns the MLIR text."""
    b, tq = 2, t if tq is None else tq
    sds = jax.ShapeDtypeStruct
    args = [sds((b, heads, tq, d), dtype), sds((b, kv_heads, t, d), dtype), sds((b, kv_heads, t, d), dtype),
            sds((b, t), jnp.bool_)]
    glob = {}
    if n_global:
        args += [sds((b, kv_heads, n_global, d), dtype)] * 2 + [sds((b, n_global), jnp.bool_)]

    def f(q, k, v, ok, *g):
        if g:
            glob.update(global_k=g[0], global_v=g[1], global_ok=g[2])

        def run(q, k, v):
            return pallas_attention(q, k, v, ok, scale=d ** -0.5, left=left, right=right, block_q=bq, block_k=bk,
                                    launcher=launcher, interpret=False, **glob)
        out, vjp = jax.vjp(run, q, k, v)
        return out, vjp(out)

    checks = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")] if platform == "cuda" else []
    return export.export(jax.jit(f), platforms=[platform], disabled_checks=checks)(*args).mlir_module()


LOWERING = {  # name: (kwargs); the benchmark's shapes, the models' shapes
    "window256_8_globals": dict(),
    "window512_bf16": dict(left=512, right=512, n_global=0),
    "causal_gqa_f32": dict(left=None, right=0, n_global=0, kv_heads=1, dtype=jnp.float32, d=128),
    "all_keys_global_rows": dict(left=None, right=None, n_global=0, tq=8),
}


@pytest.mark.parametrize("name", sorted(LOWERING))
def test_lowers_for_tpu(name):
    text = _lower("tpu", "tpu", bq=128, bk=128, **LOWERING[name])
    assert text.count("tpu_custom_call") >= 3  # forward, dq, dk/dv (twice with global keys)


@pytest.mark.parametrize("name", sorted(LOWERING))
def test_lowers_for_gpu_triton(name):
    text = _lower("triton", "cuda", bq=64, bk=64, **LOWERING[name])
    assert text.count("__gpu$xla.gpu.triton") >= 3


def test_lowering_rejects_illegal_blocks():
    """The lowering checks can fail: Mosaic's (8, 128) tiling and Triton's power-of-two shapes."""
    sds = jax.ShapeDtypeStruct

    def call(plan, t):
        args = [sds((1, 2, t, 64), jnp.float32)] * 3 + [sds((1, t), jnp.bool_)]
        return lambda q, k, v, ok: block_sparse_attention(q, k, v, ok, plan), args

    lay = Layout(block_q=100, block_k=100, q_len=1000, k_len=1000, band_len=1000, left=100, right=100)
    f, args = call(Plan(lay, 0.1, launcher="tpu"), 1000)
    with pytest.raises(ValueError, match="divisible by 8 and 128"):
        export.export(jax.jit(f), platforms=["tpu"])(*args)
    lay = Layout(block_q=48, block_k=48, q_len=960, k_len=960, band_len=960, left=100, right=100)
    f, args = call(Plan(lay, 0.1, launcher="triton"), 960)
    with pytest.raises(ValueError, match="power of 2"):
        export.export(jax.jit(f), platforms=["cuda"],
                      disabled_checks=[export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)


# ---------------------------------------------------------------------------------- tables and errors
def test_block_tables():
    band = Layout(block_q=8, block_k=8, q_len=64, k_len=72, band_len=64, left=5, right=5)
    table, counts = forward_table(band)
    rows = [set(table[i, :counts[i]]) for i in range(band.n_q)]
    assert rows[0] == {0, 1, 8} and rows[3] == {2, 3, 4, 8} and rows[7] == {6, 7, 8}  # band + the global block
    for j in range(band.n_k):  # the transposed tables list exactly the query blocks that visit each key block
        first, count = (0, band.n_band) if j < band.n_band else (band.n_band, 1)
        t, c = transposed_table(band, first, count)
        assert set(t[j - first, :c[j - first]]) == {i for i in range(band.n_q) if j in rows[i]}
    assert transposed_table(band, 8, 1)[1][0] == band.n_q  # the global block: every query block
    causal = Layout(block_q=8, block_k=16, q_len=64, k_len=64, band_len=64, right=0)
    ok = visits(causal)
    assert all(ok[i, j] == (j * 16 <= i * 8 + 7) for i in range(8) for j in range(4))  # nothing above the diagonal
    t, c = forward_table(causal)
    assert (t[:, -1] == t[np.arange(8), c - 1]).all()  # unused slots repeat the last block (no new copy)


def test_bad_arguments_are_named():
    q = jnp.zeros((1, 2, 16, 8))
    ok = jnp.ones((1, 16), bool)
    with pytest.raises(ValueError, match="block_q=48 is invalid: expected a power of two"):
        pallas_attention(q, q, q, ok, scale=1.0, block_q=48)
    with pytest.raises(ValueError, match="block_k=4 is invalid"):
        pallas_attention(q, q, q, ok, scale=1.0, block_k=4)
    with pytest.raises(ValueError, match="launcher='cuda' is invalid"):
        pallas_attention(q, q, q, ok, scale=1.0, launcher="cuda")
    with pytest.raises(ValueError, match=r"key_ok \(1, 15\) must be \(1, 16\)"):
        pallas_attention(q, q, q, ok[:, :15], scale=1.0)
    with pytest.raises(ValueError, match="windowed call needs as many queries"):
        pallas_attention(q[:, :, :8], q, q, ok, scale=1.0, right=0)
    with pytest.raises(ValueError, match="kv_heads"):
        pallas_attention(jnp.zeros((1, 3, 16, 8)), q, q, ok, scale=1.0)
    with pytest.raises(ValueError, match="go together"):
        pallas_attention(q, q, q, ok, scale=1.0, global_k=q)


def test_platform_defaults():
    assert kernel_ops.platform_launcher() == ("triton", True)  # CPU: interpreted
    assert not kernel_ops.on_accelerator()


def test_benchmark_script_runs(tmp_path):
    """benchmarks/bench_kernels.py (run on a GPU when one is lent) works end to end: here interpreted, tiny."""
    from benchmarks import bench_kernels
    out = tmp_path / "kernels.json"
    bench_kernels.main(["--smoke", "--lengths", "64", "--out", str(out)])
    import json
    payload = json.loads(out.read_text())
    cases = {r["case"] for r in payload["results"]}
    assert {"pallas_fwd", "pallas_fwd_bwd", "xla_dense_fwd", "pallas_causal_fwd", "layer_blocked_fwd"} <= cases
    assert not [r for r in payload["results"] if "error" in r]
