"""LongformerModel on CPU: this project (JAX/XLA, blocked attention) against Hugging Face PyTorch, side by side.

    python benchmarks/bench_longformer.py [--quick] [--out benchmarks/results/longformer_cpu.json]

Both sides load the same random weights: ``transformers.LongformerModel`` at base size (hidden 768, 12 layers,
12 heads, MLP 3072, attention_window 512, vocab 50265; 16386 positions so that 16,384 tokens fit) is built
under ``torch.manual_seed``, written with ``save_pretrained``, and read back by ``conversion.from_pretrained``
(ours, float32, ``attention="auto"`` = blocked on CPU) and ``LongformerModel.from_pretrained`` (HF, eager,
``.eval()``, ``torch.inference_mode()``, all cores).

Workload: batch 1, T in {1024, 4096, 16384} random tokens, attention mask all ones, global attention on the
first token (what sequence classification uses), ``last_hidden_state`` + ``pooler_output``.

Every (side, T) runs in its own subprocess, so that the memory of one does not leak into the next:

- ``time``: one warm-up call (for ours: compilation, reported as ``compile_s`` = first - best), then the best of
  up to N timed calls within a time budget.
- ``peak memory``: after the warm-up call, Linux's peak-RSS counter is reset (``/proc/self/clear_refs``), and
  ``peak_rss_delta`` = peak RSS during the timed calls - RSS just before them: the memory one forward call
  takes on top of the loaded model (compilation and caches are in the baseline). Same method for both
  sides; memory an allocator kept from the warm-up and reuses is not counted (it is in the baseline, also
  reported). For ours, XLA's own figure for the compiled program (temp + output buffers) is added as
  ``xla_temp_bytes``.
- the outputs of both sides are compared (``max_abs_diff`` of last_hidden_state, float32).

The floor: matmul rate measured in the same run (2048^3, the better of XLA and torch, ``harness.measure_floor``)
and the useful FLOPs of one forward (:func:`forward_flops`); ``fraction_of_floor`` = floor_s / best_s.
Growth: time and peak memory at 16,384 over 4,096 for each side. Written to JSON and a PNG (time and memory
against length, both sides, log-log).
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

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            attention_window=512, vocab_size=50265, max_position_embeddings=16386, type_vocab_size=1,
            pad_token_id=1, bos_token_id=0, eos_token_id=2, sep_token_id=2)
LENGTHS = (1024, 4096, 16384)
NUM_GLOBAL = 1
FULL = dict(reps=5, budget_s=20.0, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(reps=2, budget_s=2.0, floor_reps=3, floor_budget_s=1.5)
QUICK_CONFIG = dict(BASE, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024,
                    attention_window=128)
QUICK_LENGTHS = (512, 2048)


def forward_flops(cfg: dict, seq: int, num_global: int) -> float:
    """Useful FLOPs of one batch-1 LongformerModel forward at length ``seq`` (padded to the window).

    Per layer: 2·T·H² for each of query, key, value and the output dense; 2·T·H·I twice for the MLP;
    2·2·T·(2w+1)·H for the band (scores and values, 2w+1 keys per query); 2·2·X·T·H for X global rows over all
    keys, and 2·X·H² for their query projection. HF's key_global/value_global projections of every token are
    not counted (an implementation need not compute them). Pooler and embeddings are negligible, ignored.
    """
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    w = cfg["attention_window"]
    t = -(-seq // w) * w
    per_layer = 4 * 2 * t * h * h + 2 * 2 * t * h * i + 2 * 2 * t * (w + 1) * h \
        + 2 * 2 * num_global * t * h + 2 * num_global * h * h
    return float(layers * per_layer)


# ------------------------------------------------------------------------------------ one measurement
def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(side: str, directory: str, seq: int, reps: int, budget_s: float, out_npy: str) -> dict:
    """Runs in a fresh process: load one side, warm up, time, record peak memory, save the output."""
    import gc

    import numpy as np

    ids = np.random.default_rng(seq).integers(3, 50000, (1, seq)).astype(np.int64)
    ids[0, 0] = 0  # <s>
    mask = np.ones_like(ids)
    global_mask = np.zeros_like(ids)
    global_mask[:, :NUM_GLOBAL] = 1
    result = {}
    if side == "ours":
        import jax

        import conversion
        model = conversion.from_pretrained(directory, progress=False)

        def call():
            out = model(input_ids=ids, attention_mask=mask, global_attention_mask=global_mask)
            return jax.block_until_ready(out)
    else:
        import torch
        import transformers
        harness.setup_torch()
        model = transformers.LongformerModel.from_pretrained(directory, attn_implementation="eager").eval()
        tids, tmask, tglob = (torch.as_tensor(a) for a in (ids, mask, global_mask))

        def call():
            with torch.inference_mode():
                return model(input_ids=tids, attention_mask=tmask, global_attention_mask=tglob)
    gc.collect()
    loaded = _rss_bytes("VmRSS")
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    del out
    gc.collect()
    base = _rss_bytes("VmRSS")
    result["peak_reset"] = _reset_peak_rss()
    r = harness.time_calls(call, reps, budget_s, warmup=False)
    result.update(first_s=first, times_s=r["times_s"], best_s=r["best_s"], rss_after_load_bytes=loaded,
                  rss_after_warmup_bytes=base, peak_rss_bytes=_rss_bytes("VmHWM"))
    result["peak_rss_delta_bytes"] = result["peak_rss_bytes"] - base
    out = call()
    if side == "ours":
        result["compile_s"] = max(0.0, first - r["best_s"])
        result["xla_temp_bytes"] = _xla_temp_bytes(model, ids, mask, global_mask)
    np.save(out_npy, np.asarray(out.last_hidden_state, np.float32))
    return result


def _xla_temp_bytes(model, ids, mask, global_mask) -> int | None:
    """XLA's temp + output buffer bytes for the compiled forward (None if the backend does not report it)."""
    import jax
    import numpy as np

    from common.longformer_attention import count_max_num_global
    from longformer_jax import longformer_model
    x = count_max_num_global(mask.astype(bool), global_mask.astype(bool))
    fn = jax.jit(lambda p, i, m, g: longformer_model(p, model.config, i, m, g, max_num_global=x))
    try:
        stats = fn.lower(model.params, ids.astype(np.int32), mask, global_mask).compile().memory_analysis()
        return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)
    except Exception:  # noqa: BLE001 - an optional statistic
        return None


# ------------------------------------------------------------------------------------------- driver
def build_checkpoint(cfg: dict, directory: Path) -> int:
    import transformers
    model = harness.build_random_checkpoint(transformers.LongformerModel, transformers.LongformerConfig(**cfg),
                                            directory)
    return harness.count_params(model)


def run_one(side, directory, seq, settings, tmp) -> tuple[dict, object]:
    import numpy as np
    out_npy = str(Path(tmp) / f"{side}_{seq}.npy")
    result = harness.run_child(__file__, [side, directory, seq, settings["reps"], settings["budget_s"], out_npy])
    return result, np.load(out_npy)


def plot(rows, path: Path, device: str) -> None:
    plt = harness.pyplot("bench_longformer's plot")
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for side, label, style in (("ours", "ours (JAX, blocked)", "o-"), ("hf", "HF PyTorch (eager)", "s--")):
        lengths = [r["seq_len"] for r in rows]
        ax_t.plot(lengths, [r[side]["best_s"] for r in rows], style, label=label)
        ax_m.plot(lengths, [r[side]["peak_rss_delta_bytes"] / 2**30 for r in rows], style, label=label)
    for ax, ylabel in ((ax_t, "forward time (s, best of N)"), (ax_m, "peak memory during forward (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (tokens, batch 1)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"LongformerModel base (768 hidden, 12 layers, window 512), float32 - {device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--measure":
        side, directory, seq, reps, budget, out_npy = argv[1:]
        print(json.dumps(measure(side, directory, int(seq), int(reps), float(budget), out_npy)))
        return 0

    args = harness.parse_args_and_setup(argv, __doc__, "longformer_cpu",
                                        "2-layer 256-wide config at 512 and 2048 tokens")
    settings = dict(QUICK if args.quick else FULL)
    cfg = QUICK_CONFIG if args.quick else BASE
    lengths = QUICK_LENGTHS if args.quick else LENGTHS
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32"], settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(harness.floor_lines(floor)), flush=True)
    rate = floor["matmul_gflops"]["best"]["float32"] * 1e9
    header = (f"{'T':>6} {'ours':>9} {'HF':>9} {'HF/ours':>7} {'floor':>8} {'ours/fl':>7} {'HF/fl':>6} "
              f"{'mem ours':>9} {'mem HF':>9} {'compile':>7} {'maxdiff':>8}")
    print(header + "\n" + "-" * len(header), flush=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_longformer_") as tmp:
        directory = str(Path(tmp) / "ckpt")
        params = build_checkpoint(cfg, Path(directory))
        for seq in lengths:
            ours, a = run_one("ours", directory, seq, settings, tmp)
            hf, b = run_one("hf", directory, seq, settings, tmp)
            flops = forward_flops(cfg, seq, NUM_GLOBAL)
            row = {"seq_len": seq, "batch": 1, "num_global": NUM_GLOBAL, "flops": flops, "floor_s": flops / rate,
                   "ours": ours, "hf": hf, "ratio": hf["best_s"] / ours["best_s"],
                   "max_abs_diff": harness.max_abs_diff(a, b)}
            for side in ("ours", "hf"):
                row[side]["fraction_of_floor"] = row["floor_s"] / row[side]["best_s"]
            rows.append(row)
            gib = 2 ** 30
            print(f"{seq:>6} {ours['best_s']:>8.2f}s {hf['best_s']:>8.2f}s {row['ratio']:>7.2f} "
                  f"{row['floor_s']:>7.2f}s {ours['fraction_of_floor']:>7.3f} {hf['fraction_of_floor']:>6.3f} "
                  f"{ours['peak_rss_delta_bytes'] / gib:>7.2f}Gi {hf['peak_rss_delta_bytes'] / gib:>7.2f}Gi "
                  f"{ours['compile_s']:>6.1f}s {row['max_abs_diff']:>8.1e}", flush=True)
    growth = {}
    if len(rows) >= 2:
        lo, hi = rows[-2], rows[-1]
        for side in ("ours", "hf"):
            growth[side] = {"from": lo["seq_len"], "to": hi["seq_len"],
                            "time": hi[side]["best_s"] / lo[side]["best_s"],
                            "peak_memory": hi[side]["peak_rss_delta_bytes"] / lo[side]["peak_rss_delta_bytes"]}
        print("growth {from}->{to}: ".format(**growth["ours"])
              + ", ".join(f"{s} time {g['time']:.2f}x memory {g['peak_memory']:.2f}x" for s, g in growth.items()))
    total = time.perf_counter() - start
    result = {"machine": info, "quick": args.quick, "settings": settings, "floor": floor,
              "config": cfg, "params": params, "results": rows, "growth": growth, "total_runtime_s": total,
              "notes": {"ratio": "HF best time / our best time (> 1: ours faster)",
                        "fraction_of_floor": "floor_s / best_s, floor_s = forward_flops / best float32 matmul rate",
                        "peak_rss_delta_bytes": "peak RSS during the timed calls (reset after the warm-up) minus "
                                                "RSS just before them",
                        "hf": "LongformerModel, attn_implementation='eager', eval(), torch.inference_mode()"}}
    out = harness.write_results(result, args.out)
    png = out.with_suffix(".png")
    plot(rows, png, f"{info['cpu']}, {info['cores']} cores")
    print(f"wrote {out} and {png} ({total:.0f} s)")
    bad = [r["seq_len"] for r in rows if r["max_abs_diff"] > 1e-3]
    if bad:
        print(f"ERROR: outputs differ from HF at T = {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
