"""Llama on CPU: this project (JAX/XLA) against Hugging Face PyTorch, side by side in one process.

    python benchmarks/bench_llama.py [--quick] [--out benchmarks/results/llama_cpu.json]

Both sides load the same random weights: ``transformers.LlamaForCausalLM`` is built from a ``LlamaConfig``
under ``torch.manual_seed``, written with ``save_pretrained`` to a temporary directory, and read back by
``conversion.from_pretrained`` (ours) and ``LlamaForCausalLM.from_pretrained(attn_implementation="sdpa")``
(HF, ``.eval()``, every call under ``torch.inference_mode()``). bfloat16 is ``dtype=jnp.bfloat16`` for ours
and ``model.to(torch.bfloat16)`` for HF.

Workloads, per config and dtype:

- ``forward BxT``: logits of every position at 1x512 and 8x128. One warm-up call, then the best of N timed
  calls. For ours, ``compile_s`` = first call - best call (XLA compilation plus one run's worth of noise).
- ``decode bB``: greedy decoding of 64 new tokens from a 16-token prompt at batch 1 and 8 (exactly 64: EOS is
  disabled on both sides). Reported as tokens/s (= B * 64 / time) and ms per new token. In float32 the two
  outputs must be the same tokens (``tokens_match``); in bfloat16 the result is recorded but not checked.

The machine floor is measured in the same run: the matmul rate (2048x2048x2048, best of N) for each dtype with
XLA and with torch, and the memory bandwidth from a ~1 GiB float32 sum with each; the better of the two is the
machine's figure. Every workload gets ``floor_s`` (see :func:`forward_cost` and :func:`decode_cost`) and
``fraction_of_floor`` = floor_s / measured_s for each side (1.0 would be the machine's limit).

The script exits with status 1 (after writing the JSON) if float32 tokens differ.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import conversion  # noqa: E402
from benchmarks.harness import (build_random_checkpoint, count_params, floor_lines, machine_info,  # noqa: E402
                                machine_line, measure_floor, parse_args_and_setup, time_calls, write_results)

CONFIGS = {
    "110m": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                 intermediate_size=2048, vocab_size=32000, max_position_embeddings=1024),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=688, vocab_size=32000, max_position_embeddings=1024),
}
DTYPES = {"float32": (jnp.float32, torch.float32), "bfloat16": (jnp.bfloat16, torch.bfloat16)}
FORWARD_SHAPES = ((1, 512), (8, 128))  # (batch, sequence length)
DECODE_BATCHES = (1, 8)
PROMPT_LEN, NEW_TOKENS = 16, 64

# Repetitions: at most `reps` timed calls after the warm-up, stopping early once `budget_s` seconds of timed
# calls have been spent (at least one timed call always runs). HF bf16 on CPU can be slow: capped separately.
FULL = dict(reps=7, budget_s=8.0, hf_bf16_reps=3, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(reps=3, budget_s=2.0, hf_bf16_reps=2, floor_reps=3, floor_budget_s=1.5)


# ---------------------------------------------------------------------------------------- costs
def param_counts(hf_model) -> dict:
    """Exact parameter counts from the HF module: embedding table, lm_head, and everything else."""
    embed = hf_model.model.embed_tokens.weight.numel()
    lm_head = 0 if hf_model.config.tie_word_embeddings else hf_model.lm_head.weight.numel()
    total = count_params(hf_model)
    return {"total": total, "embedding": embed, "lm_head": lm_head, "non_embedding": total - embed - lm_head}


def forward_cost(cfg: dict, counts: dict, batch: int, seq: int, itemsize: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one forward pass returning the logits of every position.

    FLOPs = 2 * B*T * (non-embedding params + lm_head params)     (every weight: one multiply-add per token)
          + 4 * L * B * T^2 * hidden                               (QK^T and PV, full square, as the brief counts it)
    bytes = (non-embedding params + lm_head params) * itemsize     (weights read once; the embedding table is only
                                                                    gathered, B*T rows, ignored)
          + B*T*vocab * itemsize                                   (the logits written)
    """
    h, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    dense = counts["non_embedding"] + counts["lm_head"]
    tokens = batch * seq
    flops = 2 * tokens * dense + 4 * layers * batch * seq ** 2 * h
    nbytes = dense * itemsize + tokens * vocab * itemsize
    return float(flops), float(nbytes)


def decode_cost(cfg: dict, counts: dict, batch: int, prompt: int, new: int, itemsize: int, rate: float,
                bandwidth: float) -> dict:
    """Floor of one ``generate`` call: a prefill, then ``new - 1`` single-token steps (the last token needs no
    forward), each step's floor being max(FLOPs / rate, bytes / bandwidth), summed.

    Prefill (T = prompt, only the last position goes through lm_head):
        FLOPs = 2*B*T*non-embedding + 2*B*lm_head + 4*L*B*T^2*hidden
        bytes = (non-embedding + lm_head) * itemsize + KV written 2*L*B*T*kv_dim * itemsize
    Decode step j = 1 .. new-1, attending over S = prompt + j cached positions (this token included):
        FLOPs = 2*B*(non-embedding + lm_head) + 4*L*B*S*hidden          (weights + attention over the cache)
        bytes = (non-embedding + lm_head) * itemsize                    (weight bytes; the embedding table is only
                                                                         gathered, 1 row per sequence, ignored)
              + 2*L*B*S*kv_dim * itemsize                               (K and V cache read)
    where kv_dim = num_key_value_heads * head_dim. rate is FLOP/s, bandwidth bytes/s.
    """
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    kv_dim = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    dense = counts["non_embedding"] + counts["lm_head"]
    weights = dense * itemsize
    pf_flops = 2 * batch * prompt * counts["non_embedding"] + 2 * batch * counts["lm_head"] \
        + 4 * layers * batch * prompt ** 2 * h
    pf_bytes = weights + 2 * layers * batch * prompt * kv_dim * itemsize
    floor = max(pf_flops / rate, pf_bytes / bandwidth)
    flops, nbytes = float(pf_flops), float(pf_bytes)
    for j in range(1, new):
        s = prompt + j
        f = 2 * batch * dense + 4 * layers * batch * s * h
        b = weights + 2 * layers * batch * s * kv_dim * itemsize
        floor += max(f / rate, b / bandwidth)
        flops += f
        nbytes += b
    step_flops = 2 * batch * dense
    return {"flops": flops, "bytes": nbytes, "floor_s": floor, "flops_per_step_weights": float(step_flops),
            "bytes_per_step_weights": float(weights)}


# ----------------------------------------------------------------------------------- workloads
def build_checkpoint(name: str, directory: Path, seed: int = 0):
    model = build_random_checkpoint(transformers.LlamaForCausalLM, transformers.LlamaConfig(**CONFIGS[name]),
                                    directory, seed)
    counts = param_counts(model)
    del model
    gc.collect()
    return counts


def load_hf(directory: Path, tdtype):
    model = transformers.LlamaForCausalLM.from_pretrained(directory, attn_implementation="sdpa")
    return model.to(tdtype).eval()


def bench_forward(ours, hf, batch, seq, vocab, reps, budget, hf_reps, rng) -> dict:
    ids = rng.integers(3, vocab, (batch, seq)).astype(np.int32)
    ids_t = torch.as_tensor(ids, dtype=torch.long)
    r_ours = time_calls(lambda: ours(input_ids=ids).logits.block_until_ready(), reps, budget)
    r_ours["compile_s"] = max(0.0, r_ours["first_s"] - r_ours["best_s"])
    with torch.inference_mode():
        r_hf = time_calls(lambda: hf(input_ids=ids_t).logits, hf_reps, budget)
    return {"ours": r_ours, "hf": r_hf}


def bench_decode(ours, hf, batch, vocab, reps, budget, hf_reps, rng) -> dict:
    ids = rng.integers(3, vocab, (batch, PROMPT_LEN)).astype(np.int32)
    mask = np.ones_like(ids)
    ids_t, mask_t = torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(mask, dtype=torch.long)
    got = {}

    def run_ours():
        got["ours"] = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                                    eos_token_id=[])

    def run_hf():
        got["hf"] = hf.generate(input_ids=ids_t, attention_mask=mask_t, do_sample=False, max_new_tokens=NEW_TOKENS,
                                min_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0).numpy()

    r_ours = time_calls(run_ours, reps, budget)
    r_ours["compile_s"] = max(0.0, r_ours["first_s"] - r_ours["best_s"])
    with torch.inference_mode():
        r_hf = time_calls(run_hf, hf_reps, budget)
    a, b = got["ours"], got["hf"]
    want = (batch, PROMPT_LEN + NEW_TOKENS)
    if a.shape != want or b.shape != want:
        raise RuntimeError(f"generate returned shapes ours {a.shape}, HF {b.shape}; expected {want}")
    new_a, new_b = a[:, PROMPT_LEN:], b[:, PROMPT_LEN:]
    diff = np.argwhere(new_a != new_b)
    match = {"tokens_match": bool(diff.size == 0),
             "first_mismatch_step": None if diff.size == 0 else int(diff[:, 1].min()),
             "matching_token_fraction": float((new_a == new_b).mean())}
    for side, r in (("ours", r_ours), ("hf", r_hf)):
        r["tokens_per_s"] = batch * NEW_TOKENS / r["best_s"]
        r["ms_per_step"] = 1e3 * r["best_s"] / NEW_TOKENS
    return {"ours": r_ours, "hf": r_hf, **match}


def run_config(name, dtype_name, tmp: Path, floor, settings, rng) -> list[dict]:
    cfg = CONFIGS[name]
    directory = tmp / name
    counts_path = directory / "counts.json"
    if not counts_path.exists():
        counts = build_checkpoint(name, directory)
        counts_path.write_text(json.dumps(counts))
    counts = json.loads(counts_path.read_text())
    jdt, tdt = DTYPES[dtype_name]
    itemsize = jnp.dtype(jdt).itemsize
    ours = conversion.from_pretrained(directory, dtype=jdt, progress=False)
    hf = load_hf(directory, tdt)
    reps, budget = settings["reps"], settings["budget_s"]
    hf_reps = min(reps, settings["hf_bf16_reps"]) if dtype_name == "bfloat16" else reps
    rate = floor["matmul_gflops"]["best"][dtype_name] * 1e9
    bandwidth = floor["bandwidth_gbs"]["best"] * 1e9
    rows = []

    def finish(row, r):
        for side in ("ours", "hf"):
            r[side]["fraction_of_floor"] = row["floor_s"] / r[side]["best_s"]
        row.update(r)
        row["ratio"] = r["hf"]["best_s"] / r["ours"]["best_s"]
        rows.append(row)
        print_row(row, flush=True)

    for batch, seq in FORWARD_SHAPES:
        flops, nbytes = forward_cost(cfg, counts, batch, seq, itemsize)
        row = {"config": name, "dtype": dtype_name, "workload": f"forward {batch}x{seq}", "kind": "forward",
               "batch": batch, "seq_len": seq, "flops": flops, "bytes": nbytes,
               "floor_s": max(flops / rate, nbytes / bandwidth)}
        finish(row, bench_forward(ours, hf, batch, seq, cfg["vocab_size"], reps, budget, hf_reps, rng))
    for batch in DECODE_BATCHES:
        cost = decode_cost(cfg, counts, batch, PROMPT_LEN, NEW_TOKENS, itemsize, rate, bandwidth)
        row = {"config": name, "dtype": dtype_name, "workload": f"decode b{batch}", "kind": "decode", "batch": batch,
               "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS, **cost}
        finish(row, bench_decode(ours, hf, batch, cfg["vocab_size"], reps, budget, hf_reps, rng))
    del ours, hf
    gc.collect()
    return rows


# ------------------------------------------------------------------------------------------ report
HEADER = (f"{'config':<6} {'dtype':<8} {'workload':<13} {'ours':>14} {'HF':>14} {'HF/ours':>7} "
          f"{'floor':>9} {'ours/fl':>7} {'HF/fl':>6} {'compile':>7} {'match':>5}")


def fmt_side(row, side):
    r = row[side]
    if row["kind"] == "forward":
        return f"{1e3 * r['best_s']:.1f} ms"
    return f"{r['tokens_per_s']:.0f} t/s {r['ms_per_step']:.1f}ms"


def print_row(row, flush=False):
    floor = f"{1e3 * row['floor_s']:.1f} ms"
    match = "" if row["kind"] == "forward" else ("yes" if row["tokens_match"] else "NO")
    print(f"{row['config']:<6} {row['dtype']:<8} {row['workload']:<13} {fmt_side(row, 'ours'):>14} "
          f"{fmt_side(row, 'hf'):>14} {row['ratio']:>7.2f} {floor:>9} {row['ours']['fraction_of_floor']:>7.3f} "
          f"{row['hf']['fraction_of_floor']:>6.3f} {row['ours']['compile_s']:>6.1f}s {match:>5}", flush=flush)


def main(argv=None) -> int:
    args = parse_args_and_setup(argv, __doc__, "llama_cpu", "small config, float32 only, fewer repetitions")
    settings = dict(QUICK if args.quick else FULL)
    configs = ["small"] if args.quick else ["small", "110m"]
    dtypes = ["float32"] if args.quick else ["float32", "bfloat16"]
    start = time.perf_counter()
    info = machine_info()
    print(machine_line(info), flush=True)
    floor = measure_floor(dtypes, settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(floor_lines(floor)), flush=True)
    print("\nforward: best wall time; decode: tokens/s and ms per new token (64 new, prompt 16). HF/ours > 1: ours "
          "faster.\nfloor = max(FLOPs / matmul rate, bytes / bandwidth); ours/fl, HF/fl = floor / measured.")
    print(HEADER)
    print("-" * len(HEADER), flush=True)

    rng = np.random.default_rng(0)
    rows, counts = [], {}
    with tempfile.TemporaryDirectory(prefix="bench_llama_") as tmp:
        for name in configs:
            for d in dtypes:
                rows += run_config(name, d, Path(tmp), floor, settings, rng)
            counts[name] = json.loads((Path(tmp) / name / "counts.json").read_text())

    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s")
    bad = [r for r in rows if r["kind"] == "decode" and r["dtype"] == "float32" and not r["tokens_match"]]
    result = {
        "machine": info, "quick": args.quick, "settings": settings, "floor": floor,
        "configs": {n: {**CONFIGS[n], "params": counts[n]} for n in configs},
        "workloads": {"forward_shapes": FORWARD_SHAPES, "decode_batches": DECODE_BATCHES,
                      "prompt_len": PROMPT_LEN, "new_tokens": NEW_TOKENS},
        "notes": {"ratio": "HF best time / our best time (> 1: ours faster)",
                  "fraction_of_floor": "floor_s / best_s",
                  "compile_s": "ours: first call - best call",
                  "hf": "LlamaForCausalLM, attn_implementation='sdpa', eval(), torch.inference_mode()"},
        "results": rows, "total_runtime_s": total,
        "float32_tokens_match": not bad,
    }
    print(f"wrote {write_results(result, args.out)}")
    if bad:
        print("ERROR: float32 greedy tokens differ from HF in: "
              + ", ".join(f"{r['config']} {r['workload']} (first at step {r['first_mismatch_step']})" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
