"""LiltForTokenClassification on CPU: this project (JAX/XLA) against Hugging Face PyTorch, side by side.

    python benchmarks/bench_lilt.py [--quick] [--out benchmarks/results/lilt_cpu.json]

Both sides load the same random weights: ``transformers.LiltForTokenClassification`` at LiLT-base size (as
SCUT-DLVCLab/lilt-roberta-en-base: hidden 768, 12 layers, 12 heads, FFN 3072, channel_shrink_ratio 4, vocab
50265, 514 positions, layer_norm_eps 1e-5; 7 labels as FUNSD) built under ``torch.manual_seed``, written with
``save_pretrained``, read back by ``conversion.from_pretrained`` (ours, float32) and by HF (eager, ``.eval()``,
``torch.inference_mode()``, all cores).

Workload: batch 8 x 512 tokens, random ids and legal random boxes (0..1000, x0 <= x1, y0 <= y1), attention mask
all ones; the logits of both sides are compared. Each side runs in its own subprocess: one warm-up call (ours:
compilation, ``compile_s``), then the best of up to N calls within a time budget. Floor: the useful FLOPs of
the forward (both streams' projections and feed-forwards, the attention products of both streams) over the
better float32 matmul rate measured in the same run.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402

BASE = dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, channel_shrink_ratio=4, max_2d_position_embeddings=1024, num_labels=7)
BATCH, SEQ = 8, 512
FULL = dict(reps=5, budget_s=30.0, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(reps=2, budget_s=2.0, floor_reps=3, floor_budget_s=1.5)
QUICK_CONFIG = dict(BASE, hidden_size=192, num_hidden_layers=2, num_attention_heads=4, intermediate_size=768)
QUICK_SHAPE = (2, 128)


def forward_flops(cfg: dict, batch: int, seq: int) -> float:
    """Per layer, for N = batch * seq tokens: text 4·2·N·H² (q, k, v, output) + 2·2·N·H·I (FFN); layout the same
    at Hl = H / r, Il = I / r; attention 2·2·batch·seq²·H (scores and values) in the text stream and
    2·batch·seq²·H/r (scores) + 2·batch·seq²·H/r (values) in the layout stream. Embeddings ignored."""
    h, i, r, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["channel_shrink_ratio"], \
        cfg["num_hidden_layers"]
    n = batch * seq
    hl, il = h // r, i // r
    per_layer = 8 * n * h * h + 4 * n * h * i + 8 * n * hl * hl + 4 * n * hl * il \
        + 4 * batch * seq * seq * h + 4 * batch * seq * seq * hl
    return float(layers * per_layer)


def make_inputs(batch: int, seq: int):
    import numpy as np
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 50000, (batch, seq)).astype(np.int64)
    ids[:, 0], ids[:, -1] = 0, 2
    corners = np.sort(rng.integers(0, 1001, (batch, seq, 2, 2)), axis=2)
    boxes = np.stack([corners[..., 0, 0], corners[..., 0, 1], corners[..., 1, 0], corners[..., 1, 1]], -1)
    return ids, np.ones_like(ids), boxes.astype(np.int64)


def measure(side: str, directory: str, batch: int, seq: int, reps: int, budget_s: float, out_npy: str) -> dict:
    """Runs in a fresh process: load one side, warm up, time, save the logits."""
    import numpy as np

    ids, mask, boxes = make_inputs(batch, seq)
    if side == "ours":
        import jax

        import conversion
        model = conversion.from_pretrained(directory, progress=False)

        def call():
            return jax.block_until_ready(model(input_ids=ids, bbox=boxes, attention_mask=mask).logits)
    else:
        import torch
        import transformers
        harness.setup_torch()
        model = transformers.LiltForTokenClassification.from_pretrained(directory, attn_implementation="eager").eval()
        t_ids, t_mask, t_boxes = (torch.as_tensor(a) for a in (ids, mask, boxes))

        def call():
            with torch.inference_mode():
                return model(input_ids=t_ids, bbox=t_boxes, attention_mask=t_mask).logits
    r = harness.time_calls(call, reps, budget_s)
    np.save(out_npy, np.asarray(call(), np.float32))
    result = {"first_s": r["first_s"], "times_s": r["times_s"], "best_s": r["best_s"]}
    if side == "ours":
        result["compile_s"] = max(0.0, r["first_s"] - r["best_s"])
    return result


def build_checkpoint(cfg: dict, directory: Path) -> int:
    import transformers
    model = harness.build_random_checkpoint(transformers.LiltForTokenClassification, transformers.LiltConfig(**cfg),
                                            directory)
    return harness.count_params(model)


def run_side(side, directory, batch, seq, settings, tmp):
    import numpy as np
    out_npy = str(Path(tmp) / f"{side}.npy")
    result = harness.run_child(__file__, [side, directory, batch, seq, settings["reps"], settings["budget_s"], out_npy])
    return result, np.load(out_npy)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        side, directory, batch, seq, reps, budget, out_npy = argv[1:]
        print(json.dumps(measure(side, directory, int(batch), int(seq), int(reps), float(budget), out_npy)))
        return 0

    args = harness.parse_args_and_setup(argv, __doc__, "lilt_cpu", "2-layer 192-wide config at 2 x 128")
    settings = dict(QUICK if args.quick else FULL)
    cfg = QUICK_CONFIG if args.quick else BASE
    batch, seq = QUICK_SHAPE if args.quick else (BATCH, SEQ)
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32"], settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(harness.floor_lines(floor)), flush=True)
    rate = floor["matmul_gflops"]["best"]["float32"] * 1e9
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_lilt_") as tmp:
        directory = str(Path(tmp) / "ckpt")
        params = build_checkpoint(cfg, Path(directory))
        ours, a = run_side("ours", directory, batch, seq, settings, tmp)
        hf, b = run_side("hf", directory, batch, seq, settings, tmp)
    flops = forward_flops(cfg, batch, seq)
    row = {"batch": batch, "seq_len": seq, "flops": flops, "floor_s": flops / rate, "ours": ours, "hf": hf,
           "ratio": hf["best_s"] / ours["best_s"], "max_abs_diff": harness.max_abs_diff(a, b)}
    for side in ("ours", "hf"):
        row[side]["fraction_of_floor"] = row["floor_s"] / row[side]["best_s"]
    print(f"{batch}x{seq}: ours {ours['best_s']:.2f} s (compile {ours['compile_s']:.1f} s), HF {hf['best_s']:.2f} s, "
          f"HF/ours {row['ratio']:.2f}; floor {row['floor_s']:.2f} s (ours {ours['fraction_of_floor']:.2f}, "
          f"HF {hf['fraction_of_floor']:.2f} of it); max diff {row['max_abs_diff']:.1e}")
    total = time.perf_counter() - start
    result = {"machine": info, "quick": args.quick, "settings": settings, "floor": floor, "config": cfg,
              "params": params, "results": [row], "total_runtime_s": total,
              "notes": {"ratio": "HF best time / our best time (> 1: ours faster)",
                        "hf": "LiltForTokenClassification, attn_implementation='eager', eval(), "
                              "torch.inference_mode()"}}
    print(f"wrote {harness.write_results(result, args.out)} ({total:.0f} s)")
    if row["max_abs_diff"] > 1e-3:
        print("ERROR: logits differ from HF")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
