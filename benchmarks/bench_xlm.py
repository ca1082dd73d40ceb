"""XLMWithLMHeadModel on CPU: this project (JAX/XLA) against Hugging Face PyTorch, side by side.

    python benchmarks/bench_xlm.py [--quick] [--out benchmarks/results/xlm_cpu.json]

Both sides load the same random weights: ``transformers.XLMWithLMHeadModel`` at xlm-mlm-en-2048 size (emb_dim
2048, 12 layers, 16 heads, FFN 8192, vocab 30145, 1 language, 512 positions, gelu, pad 2, layer_norm_eps 1e-12;
the LM head tied to the word embedding) built under ``torch.manual_seed``, written with ``save_pretrained``, read
back by ``conversion.from_pretrained`` (ours) and by HF (eager, ``.eval()``, ``torch.inference_mode()``, all
cores). bfloat16 is ``dtype=jnp.bfloat16`` for ours and ``model.to(torch.bfloat16)`` for HF.

Workload: batch 8 x 128 tokens, random ids in [14, vocab) with <s> = 0 first and </s> = 1 last, no padding,
attention mask all ones. Cases: the LM head (``lm``: logits [8, 128, 30145]) and the bare encoder (``model``:
``architecture="XLMModel"`` / ``transformers.XLMModel`` from the same directory, last_hidden_state), each in
float32 and bfloat16. Every (side, case) runs in its own subprocess: one warm-up call, then the best of up to N
calls within a time budget. Ours: ``compile_s`` = first call - best call, and ``lower_s`` / ``xla_compile_s`` =
trace + lower and compile of the same forward under a fresh ``jax.jit`` before the warm-up, timed apart;
``unrolled``: the same params with ``scan_layers=False``, timed after. Outputs are compared in float32: ours
against HF in float32, and both bfloat16 outputs against HF's float32 output.

Floor: the useful FLOPs of the forward (q/k/v/out projections, the feed-forward, the attention products and, for
``lm``, the tied LM head's 2·N·D·V) over the better matmul rate (XLA or torch, 2048^3) of the dtype measured in
the same run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402

# xlm-mlm-en-2048 (transformers' XLMConfig defaults, spelled out).
BASE = dict(vocab_size=30145, emb_dim=2048, n_layers=12, n_heads=16, n_langs=1, max_position_embeddings=512,
            gelu_activation=True, sinusoidal_embeddings=False, causal=False, asm=False, pad_token_id=2,
            bos_token_id=0, eos_token_id=1, layer_norm_eps=1e-12)
BATCH, SEQ = 8, 128
FULL = dict(reps=5, budget_s=25.0, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(reps=2, budget_s=2.0, floor_reps=3, floor_budget_s=1.5)
QUICK_CONFIG = dict(BASE, emb_dim=256, n_layers=2, n_heads=4)
QUICK_SHAPE = (2, 32)
FIRST_ID = 14  # ids below are special tokens (<s>, </s>, <pad>, <unk>, <special0..9>)
# (head, dtype) in the order they run: the float32 outputs of HF are the reference of the bfloat16 ones.
CASES = (("lm", "float32"), ("model", "float32"), ("lm", "bfloat16"), ("model", "bfloat16"))
HF_CLASS = {"lm": "XLMWithLMHeadModel", "model": "XLMModel"}


def forward_flops(cfg: dict, batch: int, seq: int, lm_head: bool) -> float:
    """For N = batch * seq tokens, per layer: 4·2·N·D² (q, k, v, out) + 2·2·N·D·4D (FFN) + 2·2·batch·seq²·D
    (scores and values); the LM head 2·N·D·V. Embeddings, norms and the softmax ignored."""
    d, layers, vocab = cfg["emb_dim"], cfg["n_layers"], cfg["vocab_size"]
    n = batch * seq
    per_layer = 8 * n * d * d + 16 * n * d * d + 4 * batch * seq * seq * d
    return float(layers * per_layer + (2 * n * d * vocab if lm_head else 0))


def make_inputs(batch: int, seq: int, vocab: int):
    import numpy as np
    rng = np.random.default_rng(0)
    ids = rng.integers(FIRST_ID, vocab, (batch, seq)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 0, 1
    return ids, np.ones_like(ids)


def measure(side: str, head: str, dtype: str, directory: str, batch: int, seq: int, reps: int, budget_s: float,
            out_npy: str) -> dict:
    """Runs in a fresh process: load one side, warm up, time, save the output (logits or last hidden state)."""
    import numpy as np

    t0 = time.perf_counter()
    if side == "ours":
        import jax
        import jax.numpy as jnp

        import conversion
        model = conversion.from_pretrained(directory, dtype=jnp.dtype(dtype), architecture=HF_CLASS[head],
                                           progress=False)
        vocab = model.config.vocab_size

        def call(m=model):
            out = m(input_ids=ids, attention_mask=mask)
            return jax.block_until_ready(out.logits if head == "lm" else out.last_hidden_state)

        def to_numpy(y):
            return np.asarray(y.astype(jnp.float32))
    else:
        import torch
        import transformers
        harness.setup_torch()
        cls = getattr(transformers, HF_CLASS[head])
        model = cls.from_pretrained(directory, attn_implementation="eager").to(getattr(torch, dtype)).eval()
        vocab = model.config.vocab_size

        def call():
            with torch.inference_mode():
                out = model(input_ids=t_ids, attention_mask=t_mask)
                return out.logits if head == "lm" else out.last_hidden_state

        def to_numpy(y):
            return y.float().numpy()
    load_s = time.perf_counter() - t0
    ids, mask = make_inputs(batch, seq, vocab)
    if side == "hf":
        t_ids, t_mask = (torch.as_tensor(a) for a in (ids, mask))
    compile_times = _lower_compile_s(model, ids, mask) if side == "ours" else {}  # before the forward's first call
    r = harness.time_calls(call, reps, budget_s)
    np.save(out_npy, to_numpy(call()))
    result = {"load_s": load_s, "first_s": r["first_s"], "times_s": r["times_s"], "best_s": r["best_s"]}
    if side == "ours":
        result["compile_s"] = max(0.0, r["first_s"] - r["best_s"])
        result.update(compile_times)
        result["unrolled"] = _time_unrolled(model, call, min(reps, 3), budget_s / 2)
    return result


def _time_unrolled(model, call, reps: int, budget_s: float) -> dict:
    """The same params with the layer loop unrolled (``scan_layers=False``). In bfloat16, XLA:CPU converts every
    stacked layer weight to a float32 copy before the scanned loop and slices + converts it back inside (see the
    XLM section of benchmarks/README.md); unrolled, the layers read their bfloat16 weights directly."""
    import dataclasses

    from common.model import Model
    unrolled = Model(dataclasses.replace(model.config, scan_layers=False), model.params, model.spec)
    r = harness.time_calls(lambda: call(unrolled), reps, budget_s)
    return {"first_s": r["first_s"], "times_s": r["times_s"], "best_s": r["best_s"],
            "compile_s": max(0.0, r["first_s"] - r["best_s"])}


def _lower_compile_s(model, ids, mask) -> dict:
    """Trace + lower, and XLA compile, of the same forward under a fresh jit, timed apart. Called before the
    model's first call, so nothing of this forward is cached yet."""
    import jax
    arrays = model.spec.validate_inputs(model.config, {"input_ids": ids, "attention_mask": mask})
    fn = jax.jit(lambda p, a: model.spec.forward(p, model.config, **a))
    t0 = time.perf_counter()
    lowered = fn.lower(model.params, arrays)
    t1 = time.perf_counter()
    lowered.compile()
    return {"lower_s": t1 - t0, "xla_compile_s": time.perf_counter() - t1}


def build_checkpoint(cfg: dict, directory: Path) -> dict:
    import transformers
    model = harness.build_random_checkpoint(transformers.XLMWithLMHeadModel, transformers.XLMConfig(**cfg), directory)
    total = harness.count_params(model)  # the tied head counted once
    embedding = model.transformer.embeddings.weight.numel()
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def run_side(side, head, dtype, directory, batch, seq, settings, tmp):
    import numpy as np
    out_npy = str(Path(tmp) / f"{side}_{head}_{dtype}.npy")
    result = harness.run_child(__file__, [side, head, dtype, directory, batch, seq, settings["reps"],
                                          settings["budget_s"], out_npy])
    out = np.load(out_npy)
    os.remove(out_npy)
    return result, out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        side, head, dtype, directory, batch, seq, reps, budget, out_npy = argv[1:]
        print(json.dumps(measure(side, head, dtype, directory, int(batch), int(seq), int(reps), float(budget),
                                 out_npy)))
        return 0

    args = harness.parse_args_and_setup(argv, __doc__, "xlm_cpu", "2-layer 256-wide config at 2 x 32")
    settings = dict(QUICK if args.quick else FULL)
    cfg = QUICK_CONFIG if args.quick else BASE
    batch, seq = QUICK_SHAPE if args.quick else (BATCH, SEQ)
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32", "bfloat16"], settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(harness.floor_lines(floor)), flush=True)
    mm = floor["matmul_gflops"]
    start = time.perf_counter()
    rows, reference = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_xlm_") as tmp:
        directory = str(Path(tmp) / "ckpt")
        params = build_checkpoint(cfg, Path(directory))
        for head, dtype in CASES:
            ours, a = run_side("ours", head, dtype, directory, batch, seq, settings, tmp)
            hf, b = run_side("hf", head, dtype, directory, batch, seq, settings, tmp)
            flops = forward_flops(cfg, batch, seq, head == "lm")
            rate = mm["best"][dtype] * 1e9
            row = {"head": head, "hf_class": HF_CLASS[head], "dtype": dtype, "batch": batch, "seq_len": seq,
                   "flops": flops, "floor_s": flops / rate, "floor_float32_s": flops / (mm["best"]["float32"] * 1e9),
                   "ours": ours, "hf": hf, "ratio": hf["best_s"] / ours["best_s"],
                   "ratio_unrolled": hf["best_s"] / ours["unrolled"]["best_s"]}
            if dtype == "float32":
                reference[head] = b
                row["max_abs_diff"] = harness.max_abs_diff(a, b)
                row["max_abs_reference"] = float(abs(b).max())
            else:
                ref = reference[head]
                row["ours"]["max_abs_diff_vs_hf_float32"] = harness.max_abs_diff(a, ref)
                row["hf"]["max_abs_diff_vs_hf_float32"] = harness.max_abs_diff(b, ref)
                row["max_abs_diff"] = harness.max_abs_diff(a, b)
            del a, b
            for side in ("ours", "hf"):
                row[side]["fraction_of_floor"] = row["floor_s"] / row[side]["best_s"]
            rows.append(row)
            extra = "" if dtype == "float32" else (f" (vs HF f32: ours {ours['max_abs_diff_vs_hf_float32']:.1e}, "
                                                   f"HF {hf['max_abs_diff_vs_hf_float32']:.1e})")
            print(f"{head:<5} {dtype:<8} {batch}x{seq}: ours {ours['best_s']:.3f} s (compile "
                  f"{ours['lower_s'] + ours['xla_compile_s']:.1f} s), HF {hf['best_s']:.3f} s, HF/ours "
                  f"{row['ratio']:.2f}; floor {row['floor_s']:.3f} s (ours {ours['fraction_of_floor']:.2f}, HF "
                  f"{hf['fraction_of_floor']:.2f} of it); max diff {row['max_abs_diff']:.1e}{extra}; ours unrolled "
                  f"{ours['unrolled']['best_s']:.3f} s (HF/ours {row['ratio_unrolled']:.2f})", flush=True)
    total = time.perf_counter() - start
    result = {"machine": info, "device": f"cpu: {info['cpu']} ({info['cores']} cores)", "quick": args.quick,
              "settings": settings, "floor": floor, "config": cfg, "params": params,
              "inputs": {"batch": batch, "seq_len": seq, "ids": f"uniform in [{FIRST_ID}, vocab), <s>=0 first, "
                         "</s>=1 last", "attention_mask": "all ones"},
              "results": rows, "total_runtime_s": total,
              "notes": {"ratio": "HF best time / our best time (> 1: ours faster)",
                        "compile_s": "ours: first call - best call; lower_s / xla_compile_s: trace + lower and "
                                     "compile of the same forward under a fresh jax.jit, timed apart, before the "
                                     "warm-up (the process's first compilation)",
                        "floor_s": "flops / the better (XLA, torch) 2048^3 matmul rate of the row's dtype; "
                                   "floor_float32_s: at the float32 rate",
                        "max_abs_diff": "float32 rows: ours vs HF; bfloat16 rows: ours bf16 vs HF bf16 "
                                        "(each side's max_abs_diff_vs_hf_float32: against HF float32)",
                        "hf": "attn_implementation='eager', eval(), torch.inference_mode(), "
                              "torch.set_num_threads(os.cpu_count()); bfloat16: model.to(torch.bfloat16)",
                        "ours": "conversion.from_pretrained(dir, dtype=..., architecture=hf_class)",
                        "unrolled": "ours with config.scan_layers=False (same params), best of up to 3 calls; "
                                    "ratio_unrolled = HF best / that"}}
    print(f"wrote {harness.write_results(result, args.out)} ({total:.0f} s)")
    bad = [r for r in rows if r["dtype"] == "float32" and r["max_abs_diff"] > 1e-3]
    if bad:
        print("ERROR: float32 outputs differ from HF: "
              + ", ".join(f"{r['head']} {r['max_abs_diff']:.1e}" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
