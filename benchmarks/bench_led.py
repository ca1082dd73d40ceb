"""LED on CPU: this project (JAX/XLA) against Hugging Face PyTorch, side by side: summarising a long input
(encoder once, then the decoder with its KV cache) and the encoder alone.

    python benchmarks/bench_led.py [--quick] [--out benchmarks/results/led_cpu.json]

Both sides load the same random weights: ``transformers.LEDForConditionalGeneration`` at LED-base size
(d_model 768, 6 + 6 layers, 12 heads, FFN 3072, attention_window 1024, vocab 50265, 16,384 encoder and 1,024
decoder positions, as allenai/led-base-16384) built under ``torch.manual_seed``, written with
``save_pretrained`` and read back by ``conversion.from_pretrained`` (ours, float32) and
``LEDForConditionalGeneration.from_pretrained`` (HF, eager, ``.eval()``, ``torch.inference_mode()``, all cores).

Workloads, batch 1, random tokens, global attention on the first token (as LED's summarisation recipe):

- ``generate``: 4,096 input tokens -> 32 and -> 128 new tokens, greedy and beam search (4 beams). EOS is held
  off with ``min_new_tokens = max_new_tokens`` on both sides, so both generate exactly that many tokens; the
  token sequences of both sides are compared (``tokens_equal``).
- ``encoder``: the encoder alone (HF ``model.get_encoder()``; ours ``led_jax.model.encode`` under jit) at 4,096
  and 16,384 tokens; ``max_abs_diff`` of its output. Its FLOP floor: the useful FLOPs of the layers (as
  ``bench_longformer.forward_flops``) over the better float32 matmul rate measured in the same run.

Each side runs in its own subprocess (loaded once, every case in turn). Time: one warm-up call (for ours the
compilation; ``compile_s`` = first - best), then the best of up to N timed calls within a time budget.
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

BASE = dict(vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
            decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, attention_window=1024,
            max_encoder_position_embeddings=16384, max_decoder_position_embeddings=1024, pad_token_id=1,
            bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
# (kind, input tokens, new tokens, beams)
CASES = (("generate", 4096, 32, 1), ("generate", 4096, 128, 1), ("generate", 4096, 32, 4),
         ("generate", 4096, 128, 4), ("encoder", 4096, 0, 0), ("encoder", 16384, 0, 0))
FULL = dict(reps=3, budget_s=30.0, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(reps=2, budget_s=2.0, floor_reps=3, floor_budget_s=1.5)
QUICK_CONFIG = dict(BASE, d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                    decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, attention_window=256,
                    max_encoder_position_embeddings=2048, max_decoder_position_embeddings=64)
QUICK_CASES = (("generate", 1024, 8, 1), ("generate", 1024, 8, 4), ("encoder", 2048, 0, 0))
NUM_GLOBAL = 1


def case_name(case) -> str:
    kind, seq, new, beams = case
    if kind == "encoder":
        return f"encoder {seq}"
    return f"{seq}->{new} " + ("greedy" if beams == 1 else f"beam {beams}")


def encoder_inputs(seq: int):
    import numpy as np
    ids = np.random.default_rng(seq).integers(3, 50000, (1, seq)).astype(np.int64)
    ids[0, 0], ids[0, -1] = 0, 2  # <s> ... </s>
    mask = np.ones_like(ids)
    global_mask = np.zeros_like(ids)
    global_mask[:, :NUM_GLOBAL] = 1
    return ids, mask, global_mask


# ------------------------------------------------------------------------------------ one side
def measure(side: str, directory: str, cases, reps: int, budget_s: float, out_dir: str) -> list[dict]:
    """Runs in a fresh process: load one side, then warm up and time every case; saves each case's output."""
    import numpy as np

    if side == "ours":
        import jax

        import conversion
        from common.longformer_attention import count_max_num_global
        from led_jax.model import encode
        model = conversion.from_pretrained(directory, progress=False)
        run_encoder = jax.jit(encode, static_argnums=(1, 5))  # config, max_num_global

        def make_call(kind, ids, mask, glob, new, beams):
            if kind == "generate":
                return lambda: model.generate(ids, attention_mask=mask, global_attention_mask=glob,
                                              max_new_tokens=new, min_new_tokens=new, num_beams=beams)
            slots = count_max_num_global(mask.astype(bool), glob.astype(bool))
            args = (ids.astype(np.int32), mask.astype(np.int32), glob.astype(np.int32))
            return lambda: np.asarray(run_encoder(model.params, model.config, *args, slots).last_hidden_state)
    else:
        import torch
        import transformers
        harness.setup_torch()
        model = transformers.LEDForConditionalGeneration.from_pretrained(directory, attn_implementation="eager")
        model.eval()

        def make_call(kind, ids, mask, glob, new, beams):
            tids, tmask, tglob = (torch.as_tensor(a) for a in (ids, mask, glob))
            if kind == "generate":
                def call():
                    with torch.inference_mode():
                        return model.generate(input_ids=tids, attention_mask=tmask, global_attention_mask=tglob,
                                              max_new_tokens=new, min_new_tokens=new, num_beams=beams,
                                              do_sample=False).numpy()
                return call

            def call():
                with torch.inference_mode():
                    out = model.get_encoder()(input_ids=tids, attention_mask=tmask, global_attention_mask=tglob)
                return out.last_hidden_state.numpy()
            return call

    results = []
    for i, (kind, seq, new, beams) in enumerate(cases):
        ids, mask, glob = encoder_inputs(seq)
        call = make_call(kind, ids, mask, glob, new, beams)
        r = harness.time_calls(call, reps, budget_s)
        out = np.asarray(call())
        np.save(Path(out_dir) / f"{side}_{i}.npy", out)
        row = {"first_s": r["first_s"], "times_s": r["times_s"], "best_s": r["best_s"]}
        if side == "ours":
            row["compile_s"] = max(0.0, r["first_s"] - r["best_s"])
        results.append(row)
        print(f"  {side} {case_name((kind, seq, new, beams))}: {r['best_s']:.2f} s", file=sys.stderr, flush=True)
    return results


# ------------------------------------------------------------------------------------------- driver
def build_checkpoint(cfg: dict, directory: Path) -> int:
    import transformers
    model = harness.build_random_checkpoint(transformers.LEDForConditionalGeneration,
                                            transformers.LEDConfig(**cfg), directory)
    return harness.count_params(model)


def run_side(side, directory, cases, settings, tmp) -> list[dict]:
    """Every case of one side in one subprocess (its per-case progress lines go to our stderr)."""
    return harness.run_child(__file__, [side, directory, json.dumps(cases), settings["reps"], settings["budget_s"],
                                        tmp], show_progress=True)


def encoder_flops(cfg: dict, seq: int) -> float:
    """Useful FLOPs of the LED encoder (Longformer's layer stack, see bench_longformer.forward_flops)."""
    from benchmarks.bench_longformer import forward_flops
    return forward_flops(dict(hidden_size=cfg["d_model"], intermediate_size=cfg["encoder_ffn_dim"],
                              num_hidden_layers=cfg["encoder_layers"], attention_window=cfg["attention_window"]),
                         seq, NUM_GLOBAL)


def plot(rows, path: Path, device: str, title: str) -> None:
    import numpy as np
    plt = harness.pyplot("bench_led's plot")
    names = [r["case"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.bar(x - 0.2, [r["ours"]["best_s"] for r in rows], 0.4, label="ours (JAX)")
    ax.bar(x + 0.2, [r["hf"]["best_s"] for r in rows], 0.4, label="HF PyTorch (eager)")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['ratio']:.1f}x", (i, max(r["ours"]["best_s"], r["hf"]["best_s"])), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=15, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("time (s, best of N)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend()
    ax.set_title(f"{title}, float32 - {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        side, directory, cases, reps, budget, out_dir = argv[1:]
        cases = [tuple(c) for c in json.loads(cases)]
        print(json.dumps(measure(side, directory, cases, int(reps), float(budget), out_dir)))
        return 0

    import numpy as np

    args = harness.parse_args_and_setup(argv, __doc__, "led_cpu", "2+2-layer 256-wide config at 1,024 / 2,048 tokens")
    settings = dict(QUICK if args.quick else FULL)
    cfg = QUICK_CONFIG if args.quick else BASE
    cases = QUICK_CASES if args.quick else CASES
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32"], settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(harness.floor_lines(floor)), flush=True)
    rate = floor["matmul_gflops"]["best"]["float32"] * 1e9
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_led_") as tmp:
        directory = str(Path(tmp) / "ckpt")
        params = build_checkpoint(cfg, Path(directory))
        ours = run_side("ours", directory, cases, settings, tmp)
        hf = run_side("hf", directory, cases, settings, tmp)
        rows = []
        for i, case in enumerate(cases):
            a, b = np.load(Path(tmp) / f"ours_{i}.npy"), np.load(Path(tmp) / f"hf_{i}.npy")
            row = {"case": case_name(case), "kind": case[0], "input_tokens": case[1], "new_tokens": case[2],
                   "num_beams": case[3], "ours": ours[i], "hf": hf[i], "ratio": hf[i]["best_s"] / ours[i]["best_s"]}
            if case[0] == "generate":
                row["tokens_equal"] = bool(a.shape == b.shape and (a == b).all())
                row["tokens_generated"] = int(a.shape[1] - 1)
            else:
                row["max_abs_diff"] = harness.max_abs_diff(a, b)
                row["floor_s"] = encoder_flops(cfg, case[1]) / rate
                for side in ("ours", "hf"):
                    row[side]["fraction_of_floor"] = row["floor_s"] / row[side]["best_s"]
            rows.append(row)
    header = f"{'case':<22} {'ours':>8} {'HF':>8} {'HF/ours':>7} {'compile':>7}  check"
    print(header + "\n" + "-" * len(header))
    for r in rows:
        check = (f"tokens equal: {r['tokens_equal']}" if "tokens_equal" in r else
                 f"max diff {r['max_abs_diff']:.1e}, floor {r['floor_s']:.2f} s "
                 f"(ours {r['ours']['fraction_of_floor']:.2f}, HF {r['hf']['fraction_of_floor']:.2f} of it)")
        print(f"{r['case']:<22} {r['ours']['best_s']:>7.2f}s {r['hf']['best_s']:>7.2f}s {r['ratio']:>7.2f} "
              f"{r['ours']['compile_s']:>6.1f}s  {check}")
    total = time.perf_counter() - start
    title = "LED-base (768, 6+6 layers, window 1024)" if not args.quick else "LED quick config"
    result = {"machine": info, "quick": args.quick, "settings": settings, "floor": floor, "config": cfg,
              "params": params, "num_global": NUM_GLOBAL, "results": rows, "total_runtime_s": total,
              "notes": {"ratio": "HF best time / our best time (> 1: ours faster)",
                        "generate": "min_new_tokens = max_new_tokens on both sides (EOS held off); the "
                                    "time includes the encoder",
                        "fraction_of_floor": "floor_s / best_s; floor_s = encoder FLOPs / best float32 matmul rate",
                        "hf": "LEDForConditionalGeneration, attn_implementation='eager', eval(), "
                              "torch.inference_mode()"}}
    out = harness.write_results(result, args.out)
    png = out.with_suffix(".png")
    plot(rows, png, f"{info['cpu']}, {info['cores']} cores", title)
    print(f"wrote {out} and {png} ({total:.0f} s)")
    bad = [r["case"] for r in rows if not r.get("tokens_equal", True) or r.get("max_abs_diff", 0.0) > 1e-3]
    if bad:
        print(f"ERROR: outputs differ from HF in {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
