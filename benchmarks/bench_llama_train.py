"""Llama training on CPU: this project's train step (JAX/XLA + optax) against Hugging Face PyTorch + AdamW.

    python benchmarks/bench_llama_train.py [--quick] [--out benchmarks/results/llama_train_cpu.json]

Both sides start from the same random weights: ``transformers.LlamaForCausalLM`` is built under
``torch.manual_seed`` and written with ``save_pretrained`` (``bench_llama.build_checkpoint``), then read back by
``conversion.from_pretrained`` (ours, float32) and ``LlamaForCausalLM.from_pretrained(attn_implementation="sdpa")``
(HF, float32, ``.train()``; dropout is 0 in this config). Every measured shape starts from those weights again
(a fresh train state / a freshly loaded HF model and optimizer), so the first-step losses must agree.

One training step, per side (batch: ``input_ids`` and ``labels = input_ids``, causal LM loss, int32 / int64):

- ours: ``make_train_step(model.spec.forward, model.config, tx)`` with ``tx = make_optimizer(OptimizerConfig(
  learning_rate=1e-4, warmup_steps=10, total_steps=1000, weight_decay=0.1, clip_norm=1.0))`` (global-norm clip,
  AdamW b1=0.9 b2=0.95, warmup + cosine, decay on matrices only), state donated and fed back each step.
- HF: ``zero_grad`` + ``forward(labels=...)`` + ``backward`` + ``clip_grad_norm_(1.0)`` + ``step`` of
  ``torch.optim.AdamW(lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))`` (constant lr, decay on every parameter).
  ``torch.set_num_threads(os.cpu_count())``.

Workloads:

- ``train BxT``: 4x256 and 1x512 tokens on the ~110M config (``--quick``: 2x128 on the "small" config). Two
  warm-up steps, then the best of N timed steps. ``compile`` = our first step - our best step.
- Variants of ours at 4x256 (``--quick``: 2x128): ``remat_policy`` "none" (the baseline row above), "full",
  "dots_saveable", and bfloat16 compute with float32 master params (``compute_dtype="bfloat16"``), each via
  ``dataclasses.replace(model.config, ...)``.
- Compile time of our train step (``step.lower(state, batch).compile()`` on abstract inputs from
  ``jax.eval_shape``, so no weights are built) for the 110M config at 4, 12 and 24 layers, with the layer scan
  (default) and unrolled (``scan_layers=False``). ``--quick``: the small config at 2 and 4 layers.

Model FLOPs per step (the standard approximation, PaLM appendix B / Chinchilla):
    FLOPs = B*T * (6*N + 12*L*H*T)
with N = the parameters that take part in matmuls (every non-embedding weight plus lm_head; the embedding table is
only gathered), L layers, H = hidden size, T = sequence length. 6*N is forward (2) + backward (4) of every weight;
12*L*H*T is forward + backward of QK^T and PV over the full TxT square. Rematerialised forward work is not
counted (that is what makes it *model* FLOPs utilisation). ``mfu = FLOPs / step time / machine float32 matmul
rate`` (``harness.measure_floor``: 2048^3 matmul, the better of XLA and torch); the bf16 variant also gets
``mfu_vs_bf16`` against the bfloat16 matmul rate.

The script exits with status 1 (after writing the JSON) if a shape's first-step losses differ by more than
``LOSS_TOL`` (both sides compute the loss of the same weights on the same batch).
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import conversion  # noqa: E402
from benchmarks.bench_llama import CONFIGS, build_checkpoint, load_hf  # noqa: E402
from benchmarks.harness import (floor_lines, machine_info, machine_line, measure_floor,  # noqa: E402
                                parse_args_and_setup, time_calls, write_results)
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step  # noqa: E402

OPT = OptimizerConfig(learning_rate=1e-4, warmup_steps=10, total_steps=1000, weight_decay=0.1, clip_norm=1.0)
WARMUP_STEPS = 2
LOSS_TOL = 2e-3  # absolute, on a loss of ~10.4 (ln 32000)

# reps: at most this many timed steps after the warm-ups, stopping once budget_s seconds of timed steps are spent
# (at least one always runs). A 110M step at 4x256 is ~1-3 s (ours) and ~2-6 s (HF) on 2 cores.
FULL = dict(config="110m", shapes=((4, 256), (1, 512)), variant_shape=(4, 256), compile_layers=(4, 12, 24),
            reps=5, budget_s=12.0, variant_reps=3, variant_budget_s=8.0, floor_reps=10, floor_budget_s=4.0)
QUICK = dict(config="small", shapes=((2, 128),), variant_shape=(2, 128), compile_layers=(2, 4),
             reps=3, budget_s=3.0, variant_reps=3, variant_budget_s=2.0, floor_reps=3, floor_budget_s=1.5)
VARIANTS = (("remat full", dict(remat_policy="full")),
            ("remat dots_saveable", dict(remat_policy="dots_saveable")),
            ("bf16 compute", dict(compute_dtype="bfloat16")))


# ------------------------------------------------------------------------------------------ costs
def matmul_params(cfg: dict, counts: dict) -> int:
    """N of the 6N rule: non-embedding weights + lm_head (0 when tied: then the embedding is the lm_head)."""
    lm_head = counts["lm_head"] if counts["lm_head"] else cfg["vocab_size"] * cfg["hidden_size"]
    return counts["non_embedding"] + lm_head


def train_flops(cfg: dict, counts: dict, batch: int, seq: int) -> float:
    """Model FLOPs of one training step: B*T * (6*N + 12*L*H*T) (see the module docstring)."""
    per_token = 6 * matmul_params(cfg, counts) + 12 * cfg["num_hidden_layers"] * cfg["hidden_size"] * seq
    return float(batch * seq * per_token)


# ----------------------------------------------------------------------------------------- timing
def time_steps(run, reps: int, budget_s: float) -> dict:
    """WARMUP_STEPS untimed-for-best steps (the first one's time kept as first_s), then time_calls."""
    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    for _ in range(WARMUP_STEPS - 1):
        run()
    out = time_calls(run, reps, budget_s, warmup=False)
    out["first_s"] = first
    return out


def ours_runner(model, config, batch):
    """A blocking ``run()`` that takes one of our train steps on a fresh state (copied master params: the state
    is donated, and init_train_state does not copy float32 params). ``run.first_loss`` is the loss of step 1."""
    tx = make_optimizer(OPT)
    params = jax.tree.map(jnp.array, model.params)  # jnp.array copies
    box = {"state": init_train_state(params, tx, jax.random.PRNGKey(0)), "losses": []}
    step = make_train_step(model.spec.forward, config, tx)

    def run():
        box["state"], metrics = step(box["state"], batch)
        jax.block_until_ready((box["state"], metrics))
        box["losses"].append(metrics["loss"])

    return run, box


def hf_runner(directory: Path, batch_t):
    hf = load_hf(directory, torch.float32).train()
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    box = {"losses": [], "model": hf, "opt": opt}

    def run():
        opt.zero_grad(set_to_none=True)
        loss = hf(**batch_t).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step()
        box["losses"].append(loss.detach())

    return run, box


def finish_side(r: dict, flops: float, tokens: int, floor: dict) -> dict:
    r["tokens_per_s"] = tokens / r["best_s"]
    r["tflops_per_s"] = flops / r["best_s"] / 1e12
    r["mfu"] = flops / r["best_s"] / (floor["matmul_gflops"]["best"]["float32"] * 1e9)
    return r


def bench_shape(model, directory, cfg, counts, batch, seq, settings, floor, rng) -> dict:
    ids = rng.integers(3, cfg["vocab_size"], (batch, seq)).astype(np.int32)
    batch_j = {"input_ids": jnp.asarray(ids), "labels": jnp.asarray(ids)}
    ids_t = torch.as_tensor(ids, dtype=torch.long)
    batch_t = {"input_ids": ids_t, "labels": ids_t}
    flops, tokens = train_flops(cfg, counts, batch, seq), batch * seq
    reps, budget = settings["reps"], settings["budget_s"]

    run, box = ours_runner(model, model.config, batch_j)
    r_ours = time_steps(run, reps, budget)
    r_ours["compile_s"] = max(0.0, r_ours["first_s"] - r_ours["best_s"])
    r_ours["losses"] = [float(x) for x in box["losses"]]
    del run, box
    gc.collect()

    run, box = hf_runner(directory, batch_t)
    r_hf = time_steps(run, reps, budget)
    r_hf["losses"] = [float(x) for x in box["losses"]]
    del run, box
    gc.collect()

    row = {"workload": f"train {batch}x{seq}", "batch": batch, "seq_len": seq, "tokens": tokens, "flops": flops,
           "ours": finish_side(r_ours, flops, tokens, floor), "hf": finish_side(r_hf, flops, tokens, floor)}
    row["ratio"] = r_ours["tokens_per_s"] / r_hf["tokens_per_s"]
    row["first_loss_abs_diff"] = abs(r_ours["losses"][0] - r_hf["losses"][0])
    return row


def bench_variants(model, cfg, counts, batch, seq, baseline: dict, settings, floor, rng) -> list[dict]:
    ids = rng.integers(3, cfg["vocab_size"], (batch, seq)).astype(np.int32)
    batch_j = {"input_ids": jnp.asarray(ids), "labels": jnp.asarray(ids)}
    flops, tokens = train_flops(cfg, counts, batch, seq), batch * seq
    rows = [{"variant": "remat none", "overrides": {}, "shape": f"{batch}x{seq}", **baseline}]
    for name, overrides in VARIANTS:
        config = dataclasses.replace(model.config, **overrides)
        run, box = ours_runner(model, config, batch_j)
        r = time_steps(run, settings["variant_reps"], settings["variant_budget_s"])
        r["compile_s"] = max(0.0, r["first_s"] - r["best_s"])
        r["losses"] = [float(x) for x in box["losses"]]
        del run, box
        gc.collect()
        finish_side(r, flops, tokens, floor)
        if overrides.get("compute_dtype") == "bfloat16" and "bfloat16" in floor["matmul_gflops"]["best"]:
            r["mfu_vs_bf16"] = flops / r["best_s"] / (floor["matmul_gflops"]["best"]["bfloat16"] * 1e9)
        rows.append({"variant": name, "overrides": overrides, "shape": f"{batch}x{seq}", **r})
    base = rows[0]["best_s"]
    for row in rows:
        row["time_vs_none"] = row["best_s"] / base
        print_variant(row, flush=True)
    return rows


def abstract_state_and_batch(model, layers: int, batch: int, seq: int, tx):
    """ShapeDtypeStructs of a TrainState for ``layers`` layers (the stacked layer params' leading axis resized)
    and of the batch; built with jax.eval_shape, so nothing is allocated."""
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.params)
    params["layers"] = jax.tree.map(lambda x: jax.ShapeDtypeStruct((layers,) + x.shape[1:], x.dtype),
                                    model.params["layers"])
    state = jax.eval_shape(lambda p: init_train_state(p, tx, jax.random.PRNGKey(0)), params)
    ids = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    return state, {"input_ids": ids, "labels": ids}


def bench_compile(model, layers_list, batch, seq) -> list[dict]:
    tx = make_optimizer(OPT)
    rows = []
    for layers in layers_list:
        row = {"layers": layers, "shape": f"{batch}x{seq}"}
        for scan in (True, False):
            config = dataclasses.replace(model.config, num_hidden_layers=layers, scan_layers=scan)
            state, batch_abs = abstract_state_and_batch(model, layers, batch, seq, tx)
            step = make_train_step(model.spec.forward, config, tx)
            t0 = time.perf_counter()
            lowered = step.lower(state, batch_abs)
            t1 = time.perf_counter()
            lowered.compile()
            t2 = time.perf_counter()
            row["scan" if scan else "unrolled"] = {"lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0}
            del lowered, step
            gc.collect()
        rows.append(row)
        print_compile(row, flush=True)
    return rows


# ------------------------------------------------------------------------------------------ report
HEADER = (f"{'workload':<14} {'ours':>9} {'HF':>9} {'ours tok/s':>10} {'HF tok/s':>9} {'ours/HF':>7} "
          f"{'MFU ours':>8} {'MFU HF':>7} {'compile':>7} {'dloss':>8}")
VHEADER = f"{'variant':<21} {'shape':>6} {'step':>9} {'tok/s':>7} {'vs none':>7} {'MFU':>6} {'compile':>7}"
CHEADER = f"{'layers':>6} {'scan: lower+compile':>20} {'unrolled: lower+compile':>24}"


def print_row(row, flush=False):
    o, h = row["ours"], row["hf"]
    print(f"{row['workload']:<14} {1e3 * o['best_s']:>6.0f} ms {1e3 * h['best_s']:>6.0f} ms "
          f"{o['tokens_per_s']:>10.0f} {h['tokens_per_s']:>9.0f} {row['ratio']:>7.2f} {o['mfu']:>8.3f} "
          f"{h['mfu']:>7.3f} {o['compile_s']:>6.1f}s {row['first_loss_abs_diff']:>8.1e}", flush=flush)


def print_variant(row, flush=False):
    extra = f"  (MFU vs bf16 rate {row['mfu_vs_bf16']:.3f})" if "mfu_vs_bf16" in row else ""
    print(f"{row['variant']:<21} {row['shape']:>6} {1e3 * row['best_s']:>6.0f} ms {row['tokens_per_s']:>7.0f} "
          f"{row['time_vs_none']:>6.2f}x {row['mfu']:>6.3f} {row['compile_s']:>6.1f}s{extra}", flush=flush)


def print_compile(row, flush=False):
    s, u = row["scan"], row["unrolled"]
    print(f"{row['layers']:>6} {s['lower_s']:>8.1f}s + {s['compile_s']:>6.1f}s {u['lower_s']:>11.1f}s + "
          f"{u['compile_s']:>6.1f}s", flush=flush)


def main(argv=None) -> int:
    args = parse_args_and_setup(argv, __doc__, "llama_train_cpu", "small config, 2x128 only, fewer repetitions")
    settings = dict(QUICK if args.quick else FULL)
    name = settings["config"]
    cfg = CONFIGS[name]
    start = time.perf_counter()
    info = machine_info()
    print(machine_line(info), flush=True)
    floor = measure_floor(("float32", "bfloat16"), settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(floor_lines(floor)), flush=True)
    mm = floor["matmul_gflops"]
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="bench_llama_train_") as tmp:
        directory = Path(tmp) / name
        counts = build_checkpoint(name, directory)
        model = conversion.from_pretrained(directory, progress=False)
        n = matmul_params(cfg, counts)
        print(f"\nconfig {name}: {counts['total'] / 1e6:.1f}M params, N (6N rule: non-embedding + lm_head) = "
              f"{n / 1e6:.1f}M. Model FLOPs/step = B*T*(6N + 12*L*H*T); MFU = FLOPs / step time / float32 "
              f"matmul rate ({mm['best']['float32']:.0f} GFLOP/s).")
        print(f"Best step of up to {settings['reps']} after {WARMUP_STEPS} warm-up steps. ours/HF = our tokens/s / "
              "HF tokens/s (target >= 1.2). compile = our first step - best step. dloss = |first-step loss "
              "ours - HF|.")
        print(HEADER)
        print("-" * len(HEADER), flush=True)
        rows = []
        for batch, seq in settings["shapes"]:
            rows.append(bench_shape(model, directory, cfg, counts, batch, seq, settings, floor, rng))
            print_row(rows[-1], flush=True)

        vb, vs = settings["variant_shape"]
        baseline = next(r["ours"] for r in rows if (r["batch"], r["seq_len"]) == (vb, vs))
        print(f"\nour variants (float32 master params; best of up to {settings['variant_reps']} after "
              f"{WARMUP_STEPS} warm-ups; remat none = the row above):")
        print(VHEADER)
        print("-" * len(VHEADER), flush=True)
        variants = bench_variants(model, cfg, counts, vb, vs, baseline, settings, floor, rng)

        print(f"\ncompile time of our train step ({name} config, {vb}x{vs}, abstract inputs; "
              "step.lower(state, batch) + .compile()):")
        print(CHEADER)
        print("-" * len(CHEADER), flush=True)
        compiles = bench_compile(model, settings["compile_layers"], vb, vs)
        attention_impl = model.config.attention_impl
        del model
        gc.collect()

    total = time.perf_counter() - start
    bad = [r for r in rows if r["first_loss_abs_diff"] > LOSS_TOL]
    missed = [r["workload"] for r in rows if r["ratio"] < 1.2]
    print(f"\ntarget ours/HF >= 1.2: {'met' if not missed else 'NOT met for ' + ', '.join(missed)}")
    print(f"total {total:.0f} s")
    result = {
        "machine": info, "quick": args.quick, "settings": settings, "floor": floor,
        "config": {"name": name, **cfg, "params": counts, "matmul_params_N": n, "attention_impl": attention_impl},
        "optimizer": {"ours": dataclasses.asdict(OPT),
                      "hf": {"class": "torch.optim.AdamW", "lr": 1e-4, "weight_decay": 0.1, "betas": [0.9, 0.95],
                             "clip_grad_norm": 1.0}},
        "notes": {
            "flops": "model FLOPs per step = B*T*(6*N + 12*L*H*T), N = non-embedding + lm_head params; "
                     "rematerialised work not counted",
            "mfu": "flops / best_s / floor.matmul_gflops.best.float32 (mfu_vs_bf16: the bfloat16 rate)",
            "ratio": "ours tokens/s / HF tokens/s (target >= 1.2)",
            "timing": f"{WARMUP_STEPS} warm-up steps (first_s = the first), then best of times_s",
            "compile_s": "shapes: our first step - best step; compile rows: step.lower(abstract).compile()",
            "hf": "LlamaForCausalLM fp32, sdpa, train(); zero_grad + forward(labels) + backward + "
                  "clip_grad_norm_(1.0) + AdamW.step; torch threads = os.cpu_count()",
            "differences": "ours: warmup+cosine lr schedule and weight decay on matrices only (optax mask); "
                           "HF: constant lr, decay on every parameter. Same per-step work otherwise.",
        },
        "results": rows, "variants": variants, "compile": compiles, "total_runtime_s": total,
        "first_losses_match": not bad, "target_met": not missed,
    }
    print(f"wrote {write_results(result, args.out)}")
    if bad:
        print("ERROR: first-step losses differ from HF by more than "
              f"{LOSS_TOL}: " + ", ".join(f"{r['workload']} ({r['first_loss_abs_diff']:.2e})" for r in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
