"""The Pallas block-sparse attention kernels against XLA and cuDNN, on the accelerator this runs on.

    python benchmarks/bench_kernels.py [--out benchmarks/results/kernels_<device>.json]
    python benchmarks/bench_kernels.py --smoke      # CPU, interpreted, tiny shapes: checks the script only

Workload (issue 5): batch 1, 12 heads, head_dim 64, bfloat16, T in {4096, 16384, 65536}, sliding window 512
(256 each side) and 1024 (512 each side), 8 global tokens (spread over the sequence, key padding none).
Timed, forward and forward + backward (the gradient of sum(out * cotangent) w.r.t. q, k, v and the globals):

- ``pallas``: the kernels (``common.kernels.pallas_attention``): band + gathered global keys for all rows,
  plus the 8 global query rows over all keys (a second call, as the Longformer layer runs them);
- ``xla_dense``: XLA masked attention over the full [T, T] scores (skipped where they do not fit memory);
- ``cudnn_band``: cuDNN sliding-window attention (``jax.nn.dot_product_attention(implementation="cudnn",
  is_causal=True, local_window_size=(2w, 0))``): cuDNN has no right window, so it runs a causal band with the
  same number of keys per query (2w + 1), against ``pallas_band_causal``, our kernel on that very band;
- ``causal``: full causal attention, ours (right=0) against cuDNN ``is_causal=True``;
- ``layer_*``: one Longformer self-attention layer (hidden 768, projections included) with
  ``impl="pallas" | "blocked" | "reference"``: the blocked XLA implementation is a layer-level function.

Useful FLOPs count only the band and global work (2 per multiply-add, QKᵀ and PV): local rows
4·d·T·(2w + 1 + G), global rows 4·d·G·T; causal 4·d·T(T+1)/2; backward counted as 2.5x forward. The card's
bf16 matmul rate is measured in the same run (8192³), and ``fraction_of_matmul`` = useful TFLOP/s / that rate.
Times: median of timed calls after one warm-up (compilation) call, within a per-case budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from common.kernels import pallas_attention  # noqa: E402
from common.longformer_attention import PROJECTIONS, longformer_self_attention  # noqa: E402

FULL = dict(lengths=(4096, 16384, 65536), windows=(256, 512), heads=12, d=64, n_global=8, dtype="bfloat16",
            matmul=8192, reps=20, budget_s=10.0, dense_limit_bytes=40 << 30, hidden=768)
SMOKE = dict(lengths=(256,), windows=(16,), heads=2, d=16, n_global=3, dtype="float32", matmul=512, reps=2,
             budget_s=2.0, dense_limit_bytes=1 << 30, hidden=32)


def timed(fn, *args, reps: int, budget_s: float) -> dict:
    """Median seconds of ``fn(*args)`` over up to ``reps`` calls after a warm-up (compile) call."""
    r = harness.time_calls(lambda: jax.block_until_ready(fn(*args)), reps, budget_s)
    return {"median_s": r["median_s"], "min_s": r["best_s"], "calls": len(r["times_s"]),
            "compile_s": max(r["first_s"] - r["best_s"], 0.0)}


def band_flops(t: int, w: int, g: int, d: int, heads: int) -> float:
    return 4.0 * d * heads * (t * (2 * w + 1 + g) + g * t)


def causal_flops(t: int, d: int, heads: int, left: int | None = None) -> float:
    i = np.arange(t)
    keys = i + 1 if left is None else np.minimum(i + 1, left + 1)
    return 4.0 * d * heads * float(keys.sum())


def with_grad(fn, n_diff: int):
    """fn -> (forward, forward + backward) jitted; backward of sum(out * cotangent) w.r.t. the first n_diff args."""
    fwd = jax.jit(fn)

    def loss(*args):
        out = fn(*args)
        return jnp.sum(out.astype(jnp.float32) * jnp.cos(out.astype(jnp.float32)))

    return fwd, jax.jit(jax.grad(loss, argnums=tuple(range(n_diff))))


def record(results, name, t, w, flops, measure, peak):
    """Time ``measure()`` and append a row; a case that fails (e.g. out of memory) is recorded with its error."""
    try:
        timing = measure()
    except Exception as e:  # noqa: BLE001 - one failed case must not lose the others
        row = dict(case=name, T=t, one_sided_window=w, error=f"{type(e).__name__}: {str(e)[:300]}")
        results.append(row)
        print(json.dumps(row), flush=True)
        return
    tf = flops / timing["median_s"] / 1e12
    row = dict(case=name, T=t, one_sided_window=w, useful_tflops=round(tf, 2), fraction_of_matmul=round(tf / peak, 3),
               **{k: round(v, 6) if isinstance(v, float) else v for k, v in timing.items()})
    results.append(row)
    print(json.dumps(row), flush=True)


def run(cfg: dict, out: Path, smoke: bool):
    dtype = jnp.dtype(cfg["dtype"])
    backend = jax.default_backend()
    device = jax.devices()[0].device_kind
    kw = dict(reps=cfg["reps"], budget_s=cfg["budget_s"])
    kernel_kw = dict(interpret=True, launcher="triton") if smoke else {}
    peak = harness.xla_matmul_gflops(cfg["matmul"], dtype, **kw) / 1e3  # TFLOP/s
    print(f"{device}: {dtype.name} matmul {peak:.1f} TFLOP/s", flush=True)
    heads, d, g = cfg["heads"], cfg["d"], cfg["n_global"]
    results = []
    for t in cfg["lengths"]:
        key = jax.random.PRNGKey(t)
        q, k, v = (jax.random.normal(jax.random.fold_in(key, i), (1, heads, t, d), dtype) for i in range(3))
        ok = jnp.ones((1, t), bool)
        gpos = jnp.asarray(np.linspace(0, t - 1, g).astype(np.int32))[None]
        gok = jnp.ones((1, g), bool)
        band_ok = ok.at[0, gpos[0]].set(False)  # a global key is seen once, in the global segment

        for w in cfg["windows"]:
            def longformer(q, k, v, w=w):
                take = lambda x: jnp.take_along_axis(x, gpos[:, None, :, None], axis=2)
                local = pallas_attention(q, k, v, band_ok, scale=d ** -0.5, left=w, right=w, global_k=take(k),
                                         global_v=take(v), global_ok=gok, **kernel_kw)
                rows = pallas_attention(take(q), k, v, ok, scale=d ** -0.5, **kernel_kw)  # global query rows
                return local.at[:, :, gpos[0]].set(rows)

            flops = band_flops(t, w, g, d, heads)
            fwd, bwd = with_grad(longformer, 3)
            record(results, "pallas_fwd", t, w, flops, lambda: timed(fwd, q, k, v, **kw), peak)
            record(results, "pallas_fwd_bwd", t, w, 3.5 * flops, lambda: timed(bwd, q, k, v, **kw), peak)

            def dense(q, k, v, w=w):
                i = jnp.arange(t)
                allowed = (jnp.abs(i[:, None] - i[None, :]) <= w) & band_ok[0][None, :]
                allowed = allowed | jnp.zeros((t, t), bool).at[:, gpos[0]].set(True)
                allowed = allowed.at[gpos[0]].set(True)
                s = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) * d ** -0.5
                p = jax.nn.softmax(jnp.where(allowed, s, -1e30), axis=-1).astype(q.dtype)
                return jnp.einsum("bhqk,bhkd->bhqd", p, v)

            if heads * t * t * 4 * 3 <= cfg["dense_limit_bytes"]:
                fwd, bwd = with_grad(dense, 3)
                record(results, "xla_dense_fwd", t, w, flops, lambda: timed(fwd, q, k, v, **kw), peak)
                record(results, "xla_dense_fwd_bwd", t, w, 3.5 * flops, lambda: timed(bwd, q, k, v, **kw), peak)

            # The same band width as a causal left window: what cuDNN can run.
            sw_flops = causal_flops(t, d, heads, left=2 * w)
            ours_sw = lambda q, k, v, w=w: pallas_attention(q, k, v, ok, scale=d ** -0.5, left=2 * w, right=0,
                                                            **kernel_kw)
            fwd, bwd = with_grad(ours_sw, 3)
            record(results, "pallas_band_causal_fwd", t, w, sw_flops, lambda: timed(fwd, q, k, v, **kw), peak)
            record(results, "pallas_band_causal_fwd_bwd", t, w, 3.5 * sw_flops, lambda: timed(bwd, q, k, v, **kw), peak)
            if backend == "gpu":
                bt = lambda x: x.transpose(0, 2, 1, 3)  # cuDNN layout [B, T, heads, d]
                cudnn = lambda q, k, v, w=w: jax.nn.dot_product_attention(
                    bt(q), bt(k), bt(v), is_causal=True, local_window_size=(2 * w, 0), implementation="cudnn")
                fwd, bwd = with_grad(cudnn, 3)
                record(results, "cudnn_band_causal_fwd", t, w, sw_flops, lambda: timed(fwd, q, k, v, **kw), peak)
                record(results, "cudnn_band_causal_fwd_bwd", t, w, 3.5 * sw_flops, lambda: timed(bwd, q, k, v, **kw), peak)

        c_flops = causal_flops(t, d, heads)
        ours_causal = lambda q, k, v: pallas_attention(q, k, v, ok, scale=d ** -0.5, right=0, **kernel_kw)
        fwd, bwd = with_grad(ours_causal, 3)
        record(results, "pallas_causal_fwd", t, None, c_flops, lambda: timed(fwd, q, k, v, **kw), peak)
        record(results, "pallas_causal_fwd_bwd", t, None, 3.5 * c_flops, lambda: timed(bwd, q, k, v, **kw), peak)
        if backend == "gpu":
            bt = lambda x: x.transpose(0, 2, 1, 3)
            cudnn = lambda q, k, v: jax.nn.dot_product_attention(bt(q), bt(k), bt(v), is_causal=True,
                                                                 implementation="cudnn")
            fwd, bwd = with_grad(cudnn, 3)
            record(results, "cudnn_causal_fwd", t, None, c_flops, lambda: timed(fwd, q, k, v, **kw), peak)
            record(results, "cudnn_causal_fwd_bwd", t, None, 3.5 * c_flops, lambda: timed(bwd, q, k, v, **kw), peak)

        # One Longformer self-attention layer (projections included), three implementations.
        h = cfg["hidden"]
        pkeys = jax.random.split(jax.random.PRNGKey(1), len(PROJECTIONS))
        params = {n: {"kernel": (0.02 * jax.random.normal(kk, (h, h))).astype(dtype), "bias": jnp.zeros((h,), dtype)}
                  for n, kk in zip(PROJECTIONS, pkeys)}
        hidden = jax.random.normal(key, (1, t, h), dtype)
        gmask = jnp.zeros((1, t), bool).at[0, gpos[0]].set(True)
        w = cfg["windows"][0]
        for impl in ("pallas", "blocked", "reference"):
            if impl == "reference" and heads * t * t * 4 * 3 > cfg["dense_limit_bytes"]:
                continue
            layer = lambda hd, impl=impl: longformer_self_attention(
                params, hd, num_heads=heads, one_sided_window=w, attention_mask=ok, global_mask=gmask, impl=impl,
                max_num_global=g)[0]
            if smoke and impl == "pallas":
                continue  # the layer calls the kernels with the platform's launcher: not interpreted by request
            record(results, f"layer_{impl}_fwd", t, w, band_flops(t, w, g, d, heads),
                   lambda: timed(jax.jit(layer), hidden, **kw), peak)

    payload = {"device": device, "backend": backend, "machine": harness.machine_info(),
               "matmul_tflops": round(peak, 2), "config": dict(cfg), "results": results}
    best = {r["case"]: r for r in results if r["T"] == 16384 and r["case"] == "pallas_fwd"}
    if best:
        payload["bar_16k_forward_fraction_of_matmul"] = best["pallas_fwd"]["fraction_of_matmul"]
    print(f"wrote {harness.write_results(payload, out)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, kernels interpreted (CPU): checks the script")
    ap.add_argument("--lengths", type=str, default=None, help="comma-separated T values (default 4096,16384,65536)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.lengths:
        cfg["lengths"] = tuple(int(x) for x in args.lengths.split(","))
    if not args.smoke and jax.default_backend() == "cpu":
        sys.exit("no accelerator: the kernels only run interpreted on a CPU (use --smoke to check the script)")
    device = jax.devices()[0].device_kind.lower().replace(" ", "_")
    out = args.out or harness.RESULTS / (f"kernels_{device}.json" if not args.smoke else "kernels_smoke_cpu.json")
    run(cfg, out, args.smoke)


if __name__ == "__main__":
    main()
