"""Task pipelines on CPU: ``conversion.pipeline`` (JAX/XLA) against transformers' own ``pipeline(...)``, side by side.

    python benchmarks/bench_pipelines.py [--quick] [--out benchmarks/results/pipelines_cpu.json]

One random checkpoint per workload (small models, a byte-level BPE / XLM BPE of 8,000 pieces trained here on
CPython's pydoc texts), written once and read by both sides. Each side runs in its own subprocess: it builds its
pipeline (``load_s``), runs it over the workload's whole list of inputs once (``first_s``: ours compiles its
bucketed shapes here, transformers warms up), then again up to N times within a time budget (best and median).
The reference is transformers 5.x's pipeline, and transformers 4.57's for the tasks 5.x removed
(question-answering, summarization: installed beside the venv as the tests do, tests/pipelines/oracle457.py).
Both sides get the same ``batch_size``.

Workloads (inputs of mixed lengths, as a real corpus has them; see WORKLOADS):
- fill-mask, LongformerForMaskedLM: texts of 10-250 tokens, one mask each, top_k 5
- text-classification, XLMForSequenceClassification: texts of 10-250 tokens
- ner, LlamaForTokenClassification: texts of 10-250 tokens, aggregation "simple"
- question-answering, LongformerForQuestionAnswering: contexts of 100-900 tokens, max_seq_len 1024 (one window)
- text-generation, LlamaForCausalLM: prompts of 5-60 tokens, greedy, exactly 32 new tokens (min_new_tokens)
- summarization, LEDForConditionalGeneration: documents of 200-900 tokens, 2 beams, 32 new tokens at most

Reported per workload: items/s of each side on the warm run, ``HF/ours`` (> 1: ours is faster), our compile
(first run minus best run), whether the outputs agree (strings and ints equal, ``max_score_diff``), and the
fraction of the machine's limit: the useful work (the FLOPs of the real tokens, no padding; the weight bytes read
per decoding step) over the matmul rate / bandwidth measured in the same run (``harness.measure_floor``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402

VOCAB = 8000
FULL = dict(items=64, prompts=16, documents=8, reps=3, budget_s=60.0, floor_reps=10, floor_budget_s=4.0, sizes=dict(
    hidden=256, layers=4, heads=4, ffn=1024))
QUICK = dict(items=8, prompts=4, documents=2, reps=1, budget_s=5.0, floor_reps=3, floor_budget_s=1.5, sizes=dict(
    hidden=64, layers=2, heads=4, ffn=128))
BATCH_SIZE = 8
WINDOW = 64  # Longformer / LED attention window


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    task: str
    family: str
    head: str
    reference: str  # "5" (the venv's transformers) or "4.57"
    kwargs: dict


WORKLOADS = [
    Workload("fill-mask", "fill-mask", "longformer", "masked_lm", "5", {"top_k": 5}),
    Workload("text-classification", "text-classification", "xlm", "sequence_classification", "5", {}),
    Workload("ner", "ner", "llama", "token_classification", "5", {"aggregation_strategy": "simple"}),
    Workload("question-answering", "question-answering", "longformer", "question_answering", "4.57",
             {"max_seq_len": 1024, "doc_stride": 128}),
    Workload("text-generation", "text-generation", "llama", "causal_lm", "5",
             {"do_sample": False, "max_new_tokens": 32, "min_new_tokens": 32}),
    Workload("summarization", "summarization", "led", "conditional_generation", "4.57",
             {"num_beams": 2, "max_new_tokens": 32, "min_length": 0}),
]


# ------------------------------------------------------------------------------------------- checkpoints
def lines(n: int = 5000) -> list[str]:
    from tests.pipelines.checkpoints import corpus

    return corpus(n)


def write_tokenizer(family: str, directory: Path) -> int:
    """The family's tokenizer files (as Hub checkpoints ship them) with ~VOCAB pieces; returns the vocabulary size."""
    directory.mkdir(parents=True, exist_ok=True)
    if family in ("longformer", "led"):
        from tests.factory import roberta_bpe

        tok = roberta_bpe(lines(), VOCAB - 1)
        tok.model.save(str(directory))
        tok.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 4096}))
        return tok.get_vocab_size(with_added_tokens=True)
    if family == "llama":
        from common.tokenization import train_byte_level_bpe

        from tokenizers import Tokenizer

        train_byte_level_bpe(lines(), VOCAB, directory)  # the corpus may fill fewer pieces than asked
        return Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    from xlm_jax.tokenizer import build_xlm_vocab

    build_xlm_vocab(lines(), VOCAB, directory)
    return len(json.loads((directory / "vocab.json").read_text()))


def model_config(family: str, vocab: int, sizes: dict) -> dict:
    h, n, heads, ffn = sizes["hidden"], sizes["layers"], sizes["heads"], sizes["ffn"]
    if family == "longformer":
        return dict(vocab_size=vocab, hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                    intermediate_size=ffn, max_position_embeddings=4098, attention_window=WINDOW, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, sep_token_id=2, type_vocab_size=1)
    if family == "xlm":
        return dict(vocab_size=vocab, emb_dim=h, n_layers=n, n_heads=heads, max_position_embeddings=512,
                    n_langs=1, use_lang_emb=False, pad_token_id=2, bos_token_id=0, eos_token_id=1,
                    summary_type="first", summary_use_proj=True)
    if family == "llama":
        return dict(vocab_size=vocab, hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                    num_key_value_heads=max(1, heads // 2), intermediate_size=ffn, max_position_embeddings=2048,
                    bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=None)
    return dict(vocab_size=vocab, d_model=h, encoder_layers=n, decoder_layers=max(1, n // 2),
                encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
                decoder_ffn_dim=ffn, attention_window=WINDOW, max_encoder_position_embeddings=1024,
                max_decoder_position_embeddings=128, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                decoder_start_token_id=2)


HF_CLASSES = {("longformer", "masked_lm"): "LongformerForMaskedLM",
              ("longformer", "question_answering"): "LongformerForQuestionAnswering",
              ("xlm", "sequence_classification"): "XLMForSequenceClassification",
              ("llama", "token_classification"): "LlamaForTokenClassification",
              ("llama", "causal_lm"): "LlamaForCausalLM",
              ("led", "conditional_generation"): "LEDForConditionalGeneration"}


def build_checkpoint(work: Workload, directory: Path, sizes: dict) -> dict:
    """The workload's random checkpoint + tokenizer in ``directory``; returns its config fields."""
    import transformers

    vocab = write_tokenizer(work.family, directory)
    fields = model_config(work.family, vocab, sizes)
    if work.head in ("sequence_classification", "token_classification"):
        fields.update(num_labels=5, id2label={i: f"LABEL_{i}" for i in range(5)})
        if work.head == "token_classification":  # entity groups need B-/I- labels
            names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
            fields.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    config_class = {"longformer": "LongformerConfig", "xlm": "XLMConfig", "llama": "LlamaConfig",
                    "led": "LEDConfig"}[work.family]
    config = getattr(transformers, config_class)(**fields)
    model = harness.build_random_checkpoint(getattr(transformers, HF_CLASSES[work.family, work.head]), config,
                                            directory)
    if work.family == "led":  # no task defaults in config.json: the call's options decide, on both sides
        model.generation_config.update(max_length=None, min_length=None, num_beams=None, no_repeat_ngram_size=None,
                                       length_penalty=None, early_stopping=None)
    fields["params"] = harness.count_params(model)
    return fields


# ------------------------------------------------------------------------------------------------ inputs
def texts(n: int, seed: int, shortest: int, longest: int, step: int) -> list[str]:
    """``n`` texts of ``shortest``..``longest`` corpus lines (about ``step`` tokens a line), lengths spread."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pool = lines()
    out = []
    for _ in range(n):
        k = int(rng.integers(shortest, longest + 1))
        at = int(rng.integers(0, len(pool) - k))
        out.append(" ".join(pool[at:at + k]))
    return out


def make_inputs(work: Workload, settings: dict) -> list:
    n = settings["items"]
    if work.task == "fill-mask":
        out = []
        for text in texts(n, 0, 1, 12, 20):
            words = text.split(" ")
            words[len(words) // 2] = "<mask>"
            out.append(" ".join(words))
        return out
    if work.task in ("text-classification", "ner"):
        return texts(n, 1, 1, 12, 20)
    if work.task == "question-answering":
        contexts = texts(settings["documents"] * 2, 2, 5, 40, 20)
        questions = ["What is returned?", "Which object is created by the call?"]
        return [{"question": questions[i % 2], "context": c} for i, c in enumerate(contexts)]
    if work.task == "text-generation":
        return texts(settings["prompts"], 3, 1, 3, 20)
    return texts(settings["documents"], 4, 10, 40, 20)


# -------------------------------------------------------------------------------------------- one side
def measure(side: str, task: str, directory: str, inputs_path: str, kwargs_json: str, reps: int,
            budget_s: float) -> dict:
    """Inside the child: build the side's pipeline, run it over the inputs (first, then timed runs)."""
    import time

    inputs = json.loads(Path(inputs_path).read_text())
    kwargs = json.loads(kwargs_json)
    t0 = time.perf_counter()
    if side == "ours":
        import conversion

        pipe = conversion.pipeline(task, directory, batch_size=BATCH_SIZE)
    else:
        import transformers

        pipe = transformers.pipeline(task, model=directory, device="cpu", batch_size=BATCH_SIZE)
        if pipe.tokenizer.pad_token_id is None:  # transformers batches only with a pad token (Llama has none)
            pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
        if task != "text-generation":  # left padding would shift a causal model's positions in one forward
            pipe.tokenizer.padding_side = "right"
    load_s = time.perf_counter() - t0
    outputs = []

    def run():
        outputs[:] = [pipe(inputs, **kwargs)]

    timing = harness.time_calls(run, reps, budget_s)
    return {"load_s": load_s, **timing, "outputs": to_json(outputs[0])}


def to_json(value):
    """A pipeline output as plain JSON values (numpy / torch scalars -> Python numbers)."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def run_side(side: str, work: Workload, directory: Path, inputs_path: Path, settings: dict) -> dict:
    env = None
    if side == "hf" and work.reference == "4.57":
        from tests.pipelines.oracle457 import install

        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_", "PYTHON"))}
        env.update(PYTHONPATH=f"{install()}{os.pathsep}{ROOT}", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    args = [side, work.task, directory, inputs_path, json.dumps(work.kwargs), settings["reps"], settings["budget_s"]]
    return harness.run_child(__file__, args, env=env)


# ----------------------------------------------------------------------------------------- comparison
def compare(ours, theirs, where: str = "") -> dict:
    """{"mismatches": [where, ...] of strings / ints / keys that differ, "max_score_diff": over floats}."""
    out = {"mismatches": [], "max_score_diff": 0.0}

    def walk(a, b, at):
        if isinstance(b, dict) and isinstance(a, dict) and list(a) == list(b):
            for k in b:
                walk(a[k], b[k], f"{at}[{k!r}]")
        elif isinstance(b, list) and isinstance(a, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{at}[{i}]")
        elif isinstance(b, float) and isinstance(a, (int, float)) and not isinstance(a, bool):
            out["max_score_diff"] = max(out["max_score_diff"], abs(a - b))
        elif a != b:
            out["mismatches"].append(at)

    walk(ours, theirs, where)
    return out


# ---------------------------------------------------------------------------------------------- costs
def token_counts(work: Workload, directory: Path, inputs: list) -> list[int]:
    """Each input's model tokens (with special tokens; a QA pair as one row) by the checkpoint's own tokenizer."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    if work.task == "question-answering":
        return [len(tok(x["question"], x["context"])["input_ids"]) for x in inputs]
    return [len(tok(x)["input_ids"]) for x in inputs]


def encoder_flops(h: int, ffn: int, layers: int, n: int, context: int) -> float:
    """One row of n tokens through ``layers`` transformer layers: q, k, v, o (8·n·h²), the FFN (4·n·h·ffn, 6· for
    Llama's gated MLP is close enough at this size), the attention products (4·n·context·h)."""
    return layers * (8 * n * h * h + 4 * n * h * ffn + 4 * n * min(n, context) * h)


def work_cost(work: Workload, cfg: dict, counts: list[int], sizes: dict) -> dict:
    """Useful FLOPs and bytes of one pass over the inputs (real tokens only)."""
    h, ffn, layers = sizes["hidden"], sizes["ffn"], sizes["layers"]
    vocab = cfg["vocab_size"]
    context = WINDOW + 1 if work.family in ("longformer", "led") else 10 ** 9
    flops = sum(encoder_flops(h, ffn, layers, n, context) for n in counts)
    bytes_read = 0.0
    if work.task == "fill-mask":
        flops += sum(2 * n * h * vocab for n in counts)  # both sides compute the LM head at every position
    if work.task == "text-generation":
        new = work.kwargs["max_new_tokens"]
        steps = math.ceil(len(counts) / BATCH_SIZE) * new  # decoding steps: each reads every weight once
        flops += sum(2 * n * h * vocab for n in counts)
        flops += sum(new * (encoder_flops(h, ffn, layers, 1, n + new) + 2 * h * vocab) for n in counts)
        bytes_read = steps * 4 * cfg["params"]
    if work.task == "summarization":
        beams, new = work.kwargs["num_beams"], work.kwargs["max_new_tokens"]
        dec_layers = max(1, layers // 2)
        steps = math.ceil(len(counts) / BATCH_SIZE) * new
        per_step = dec_layers * (16 * h * h + 4 * h * ffn) + 2 * h * vocab  # self + cross projections, FFN, head
        flops += sum(beams * new * per_step for _ in counts)
        bytes_read = steps * 4 * cfg["params"] * dec_layers / (layers + dec_layers)
    return {"flops": float(flops), "bytes": float(bytes_read)}


# ------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = harness.parse_args_and_setup(argv, __doc__, "pipelines_cpu", "tiny models, 8 inputs, one timed run")
    settings = QUICK if args.quick else FULL
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32"], settings["floor_reps"], settings["floor_budget_s"])
    print("\n".join(harness.floor_lines(floor)), flush=True)
    rate = floor["matmul_gflops"]["best"]["float32"] * 1e9
    bandwidth = floor["bandwidth_gbs"]["best"] * 1e9
    rows, failed = [], []
    header = f"{'workload':<20} {'items':>5} {'ours it/s':>10} {'HF it/s':>9} {'HF/ours':>8} {'compile':>8} " \
             f"{'ours/fl':>8} {'HF/fl':>7}  agree"
    with tempfile.TemporaryDirectory() as tmp:
        print(header, flush=True)
        for work in WORKLOADS:
            directory = Path(tmp) / work.name
            cfg = build_checkpoint(work, directory, settings["sizes"])
            inputs = make_inputs(work, settings)
            inputs_path = Path(tmp) / f"{work.name}.json"
            inputs_path.write_text(json.dumps(inputs))
            counts = token_counts(work, directory, inputs)
            sides = {side: run_side(side, work, directory, inputs_path, settings) for side in ("ours", "hf")}
            agreement = compare(sides["ours"].pop("outputs"), sides["hf"].pop("outputs"))
            cost = work_cost(work, cfg, counts, settings["sizes"])
            floor_s = max(cost["flops"] / rate, cost["bytes"] / bandwidth)
            row = {"workload": work.name, "task": work.task, "reference": f"transformers {work.reference}"
                   if work.reference == "4.57" else f"transformers {info['transformers']}",
                   "family": work.family, "head": work.head, "kwargs": work.kwargs, "items": len(inputs),
                   "tokens": counts, "params": cfg["params"], **cost, "floor_s": floor_s, "sides": sides,
                   "ratio": sides["hf"]["best_s"] / sides["ours"]["best_s"],
                   "compile_s": sides["ours"]["first_s"] - sides["ours"]["best_s"],
                   "fraction_of_floor": {side: floor_s / sides[side]["best_s"] for side in sides},
                   "agreement": agreement}
            rows.append(row)
            agree = "yes" if not agreement["mismatches"] else f"NO ({len(agreement['mismatches'])} differ)"
            if agreement["mismatches"]:
                failed.append(work.name)
            print(f"{work.name:<20} {len(inputs):>5} {len(inputs) / sides['ours']['best_s']:>10.1f} "
                  f"{len(inputs) / sides['hf']['best_s']:>9.1f} {row['ratio']:>7.2f}x {row['compile_s']:>7.1f}s "
                  f"{row['fraction_of_floor']['ours']:>8.3f} {row['fraction_of_floor']['hf']:>7.3f}  {agree}, "
                  f"max score diff {agreement['max_score_diff']:.1e}", flush=True)
    path = harness.write_results({"machine": info, "floor": floor, "settings": settings, "batch_size": BATCH_SIZE,
                                  "workloads": rows}, args.out)
    print(f"wrote {path}")
    if failed:
        print(f"outputs differ from transformers' in: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        side, task, directory, inputs_path, kwargs_json, reps, budget_s = sys.argv[2:9]
        harness.setup_torch()
        print(json.dumps(measure(side, task, directory, inputs_path, kwargs_json, int(reps), float(budget_s))))
    else:
        sys.exit(main())
