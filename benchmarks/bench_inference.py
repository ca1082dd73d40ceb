"""Batch inference on CPU: ``conversion.pipeline`` (JAX/XLA) against transformers' own ``pipeline(...)``, one run.

    python benchmarks/bench_inference.py [--preset base|small] [--scale 0.25] [--quick] [--out FILE.json]

One random checkpoint per workload (a byte-level BPE / XLM BPE of ~8,000 pieces trained here on CPython's pydoc
texts, as no hub is reachable), written once and read by both sides. The reference is transformers 5.x's
pipeline, and 4.57's for the tasks 5.x removed (question-answering, summarization; installed beside the venv as
the tests do: tests/pipelines/oracle457.py). Both sides get the same ``batch_size`` (8) and the same inputs.

Presets (WORKLOADS):
- ``base`` (default; the batch-inference issue's cases, results/inference_cpu.json): fill-mask on XLM (emb 1024,
  6 layers), 2,000 sentences of 5-120 tokens; ner (aggregation simple) on Longformer-base, 200 documents of
  200-4,096 tokens; question-answering on Longformer-base, 200 pairs with contexts of 300-4,000 tokens in one
  4,096-token window; summarization on LED-base, 32 documents of 1,000-4,096 tokens -> at most 64 tokens, greedy
  and 4 beams; text-generation on Llama-110M, 256 prompts of 8-200 tokens, each with its own max_new_tokens drawn
  in 1-128 (ours: {"text", "max_new_tokens"} inputs; transformers: a stopping criterion that ends each row at its
  prompt's max, OwnMaxNewTokens), greedy, and EOS ids at which rows stop at scattered points (a random tenth or so
  of the vocabulary: pick_stop_tokens): continuous
  batching (ours, ``continuous=True``, the default for many prompts), static batching (``continuous=False``) and
  transformers. ``--scale`` multiplies every input count (a shorter run).
- ``small`` (results/pipelines_cpu.json): the same six tasks on small models (hidden 256, 4 layers), 64 short
  inputs (16 prompts, 8 documents): a few minutes.

Each side runs in its own process, which times itself from its start: the import, the pipeline's load and the
first input's result (``first_result_s``), then passes over every input (``pass_s``). Ours runs twice with one
persistent compile cache folder (common.compile_cache): cold (an empty folder: every program compiled; one pass,
whose compiles are reported) and warm (a later process: the programs read back); throughput is the best of two
passes, the warm process's for ours (its first pass still reads programs from the cache) and transformers'. Reported per workload: inputs/s
and generated tokens/s of each side, ``HF/ours`` (> 1: ours is faster), our compiles and padded-token fraction
(``pipe.stats``), cold vs warm time to the first result, whether the outputs agree with transformers' (strings and
ints equal, ``max_score_diff`` over scores), and the fraction of the machine's limit: the useful work (FLOPs of
the real tokens; weight bytes read per decoding step) over the matmul rate / bandwidth measured in the same run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

START = time.perf_counter()  # a measuring child's clock starts before it imports anything heavy

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import harness  # noqa: E402

VOCAB = 8000
BATCH_SIZE = 8
SIZES = {  # (hidden, layers, heads, ffn) per preset
    "base": {"xlm": (1024, 6, 8, 4096), "longformer": (768, 12, 12, 3072), "led": (768, 6, 12, 3072),
             "llama": (768, 12, 12, 2048)},
    "small": {family: (256, 4, 4, 1024) for family in ("xlm", "longformer", "led", "llama")},
    "quick": {family: (64, 2, 4, 128) for family in ("xlm", "longformer", "led", "llama")},
}
WINDOW = {"base": 512, "small": 64, "quick": 64}  # Longformer's attention window (LED: twice it)


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    task: str
    family: str
    head: str
    reference: str  # "5" (the venv's transformers) or "4.57"
    items: int  # inputs (before --scale)
    tokens: tuple[int, int]  # each input's model tokens, drawn uniformly in this range
    kwargs: dict  # the call's options, both sides
    ours: dict = dataclasses.field(default_factory=dict)  # our pipeline's own options (not transformers')
    own_max_new_tokens: bool = False  # text-generation: each prompt its own max in 1..kwargs' max_new_tokens


def workloads(preset: str) -> list[Workload]:
    if preset == "base":
        return [
            Workload("fill-mask", "fill-mask", "xlm", "with_lm_head", "5", 2000, (5, 120), {"top_k": 5}),
            Workload("ner", "ner", "longformer", "token_classification", "5", 200, (200, 4094),
                     {"aggregation_strategy": "simple"}),
            Workload("question-answering", "question-answering", "longformer", "question_answering", "4.57", 200,
                     (300, 4000), {"max_seq_len": 4096, "doc_stride": 128}),
            Workload("summarization greedy", "summarization", "led", "conditional_generation", "4.57", 32,
                     (1000, 4094), {"num_beams": 1, "max_new_tokens": 64, "min_length": 0},
                     ours={"continuous": True}),
            Workload("summarization beam 4", "summarization", "led", "conditional_generation", "4.57", 32,
                     (1000, 4094), {"num_beams": 4, "max_new_tokens": 64, "min_length": 0}),
            Workload("text-generation", "text-generation", "llama", "causal_lm", "5", 256, (8, 200),
                     {"do_sample": False, "max_new_tokens": 128}, ours={"continuous": True}, own_max_new_tokens=True),
            Workload("text-generation static", "text-generation", "llama", "causal_lm", "5", 256, (8, 200),
                     {"do_sample": False, "max_new_tokens": 128}, ours={"continuous": False},
                     own_max_new_tokens=True),
        ]
    short, docs = (10, 250), (200, 900)
    return [
        Workload("fill-mask", "fill-mask", "longformer", "masked_lm", "5", 64, short, {"top_k": 5}),
        Workload("text-classification", "text-classification", "xlm", "sequence_classification", "5", 64, short, {}),
        Workload("ner", "ner", "llama", "token_classification", "5", 64, short, {"aggregation_strategy": "simple"}),
        Workload("question-answering", "question-answering", "longformer", "question_answering", "4.57", 16, docs,
                 {"max_seq_len": 1024, "doc_stride": 128}),
        Workload("text-generation", "text-generation", "llama", "causal_lm", "5", 16, (5, 60),
                 {"do_sample": False, "max_new_tokens": 32, "min_new_tokens": 32}),
        Workload("summarization", "summarization", "led", "conditional_generation", "4.57", 8, docs,
                 {"num_beams": 2, "max_new_tokens": 32, "min_length": 0}),
    ]


# ------------------------------------------------------------------------------------------- checkpoints
def corpus_lines(n: int = 5000) -> list[str]:
    from tests.pipelines.checkpoints import corpus

    return corpus(n)


def write_tokenizer(family: str, directory: Path, max_length: int) -> int:
    """The family's tokenizer files (as Hub checkpoints ship them) with ~VOCAB pieces; returns the vocabulary size."""
    directory.mkdir(parents=True, exist_ok=True)
    if family in ("longformer", "led"):
        from tests.factory import roberta_bpe

        tok = roberta_bpe(corpus_lines(), VOCAB - 1)
        tok.model.save(str(directory))
        tok.save(str(directory / "tokenizer.json"))
        (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}))
        return tok.get_vocab_size(with_added_tokens=True)
    if family == "llama":
        from tokenizers import Tokenizer

        from common.tokenization import train_byte_level_bpe

        train_byte_level_bpe(corpus_lines(), VOCAB, directory)  # the corpus may fill fewer pieces than asked
        return Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    from xlm_jax.tokenizer import build_xlm_vocab

    build_xlm_vocab(corpus_lines(), VOCAB, directory)
    return len(json.loads((directory / "vocab.json").read_text()))


def model_config(family: str, vocab: int, preset: str) -> dict:
    h, n, heads, ffn = SIZES[preset][family]
    window = WINDOW[preset]
    if family == "longformer":
        return dict(vocab_size=vocab, hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                    intermediate_size=ffn, max_position_embeddings=4098, attention_window=window, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, sep_token_id=2, type_vocab_size=1)
    if family == "xlm":
        return dict(vocab_size=vocab, emb_dim=h, n_layers=n, n_heads=heads, max_position_embeddings=512,
                    n_langs=1, use_lang_emb=False, pad_token_id=2, bos_token_id=0, eos_token_id=1,
                    summary_type="first", summary_use_proj=True)
    if family == "llama":
        return dict(vocab_size=vocab, hidden_size=h, num_hidden_layers=n, num_attention_heads=heads,
                    num_key_value_heads=max(1, heads // 3), intermediate_size=ffn, max_position_embeddings=2048,
                    bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=None)
    return dict(vocab_size=vocab, d_model=h, encoder_layers=n, decoder_layers=n, encoder_attention_heads=heads,
                decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, attention_window=2 * window,
                max_encoder_position_embeddings=4096, max_decoder_position_embeddings=1024, pad_token_id=1,
                bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)


HF_CLASSES = {"masked_lm": "LongformerForMaskedLM", "question_answering": "LongformerForQuestionAnswering",
              "with_lm_head": "XLMWithLMHeadModel", "sequence_classification": "XLMForSequenceClassification",
              "causal_lm": "LlamaForCausalLM", "conditional_generation": "LEDForConditionalGeneration"}


def hf_class(work: Workload) -> str:
    if work.head == "token_classification":
        return {"llama": "LlamaForTokenClassification", "longformer": "LongformerForTokenClassification"}[work.family]
    return HF_CLASSES[work.head]


def build_checkpoint(work: Workload, directory: Path, preset: str) -> dict:
    """The workload's random checkpoint + tokenizer in ``directory``; returns its config fields (+ "params")."""
    import transformers

    vocab = write_tokenizer(work.family, directory, max_length=4096)
    fields = model_config(work.family, vocab, preset)
    if work.head == "sequence_classification":
        fields.update(num_labels=5)
    if work.head == "token_classification":  # entity groups need B-/I- labels
        names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
        fields.update(num_labels=5, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    config_class = {"longformer": "LongformerConfig", "xlm": "XLMConfig", "llama": "LlamaConfig",
                    "led": "LEDConfig"}[work.family]
    config = getattr(transformers, config_class)(**fields)
    model = harness.build_random_checkpoint(getattr(transformers, hf_class(work)), config, directory)
    if work.family == "led":  # no task defaults in config.json: the call's options decide, on both sides
        model.generation_config.update(max_length=None, min_length=None, num_beams=None, no_repeat_ngram_size=None,
                                       length_penalty=None, early_stopping=None)
        model.generation_config.save_pretrained(directory)
    fields["params"] = harness.count_params(model)
    return fields


# ------------------------------------------------------------------------------------------------ inputs
def make_inputs(work: Workload, directory: Path, count: int, seed: int) -> list:
    """``count`` inputs whose model tokens are drawn uniformly in work.tokens (cut from the corpus at a token
    boundary with the checkpoint's own tokenizer; fill-mask masks one word; QA adds a short question)."""
    import numpy as np
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    text = " ".join(corpus_lines(20000))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True) if tok.is_fast else None
    words = text.split(" ")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(work.tokens[0], work.tokens[1] + 1)) - 3  # room for special tokens (+ question)
        if enc is not None:
            start = int(rng.integers(0, len(enc["input_ids"]) - n))
            begin, end = enc["offset_mapping"][start][0], enc["offset_mapping"][start + n - 1][1]
            piece = text[begin:end].strip()
        else:  # XLM's slow tokenizer: about 1.3 tokens a word
            start = int(rng.integers(0, len(words) - n))
            piece = " ".join(words[start:start + max(1, int(n / 1.3))])
        out.append(piece)
    if work.task == "fill-mask":
        mask = tok.mask_token
        out = [" ".join(w if i != len(w.split()) // 2 else mask for i, w in enumerate(p.split(" "))) for p in out]
        out = [p if mask in p else f"{p} {mask}" for p in out]
    if work.task == "question-answering":
        questions = ["What is returned?", "Which object is created by the call?"]
        out = [{"question": questions[i % 2], "context": c} for i, c in enumerate(out)]
    if work.own_max_new_tokens:  # each prompt's own max in 1..max_new_tokens
        out = [{"text": p, "max_new_tokens": int(rng.integers(1, work.kwargs["max_new_tokens"] + 1))} for p in out]
    return out


def prompt_text(item) -> str:
    """A text-generation input's prompt (a str, or a {"text", "max_new_tokens"} dict's text)."""
    return item["text"] if isinstance(item, dict) else item


class OwnMaxNewTokens:
    """transformers' side of prompts with their own max_new_tokens: a StoppingCriteria (duck-typed, as
    StoppingCriteriaList calls it) that ends each row once its prompt's max tokens are generated, as an EOS would
    (its pipeline takes one max_new_tokens per call; the batch still runs until every row has stopped, as
    static batching). Rows are told apart by their prompt ids (the left padding, ``pad``, stripped); a new
    generate call (batch) is seen by its prompt columns changing."""

    def __init__(self, limits: dict[tuple, int], pad: int):
        self.limits, self.pad = limits, pad
        self.prefix = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        width = None if self.prefix is None else self.prefix.shape[1]
        if (width is None or input_ids.shape[0] != self.prefix.shape[0] or input_ids.shape[1] <= width
                or not torch.equal(input_ids[:, :width], self.prefix)):  # the first token of a new batch
            self.prefix = input_ids[:, :-1].clone()
            rows = [row.tolist() for row in self.prefix]
            self.row_limits = torch.tensor([self.limits[tuple(r[next(k for k, t in enumerate(r) if t != self.pad):])]
                                            for r in rows])
        return (input_ids.shape[1] - self.prefix.shape[1]) >= self.row_limits


def pick_stop_tokens(directory: Path, prompts: list[str], new: int) -> list[int]:
    """EOS ids at which rows stop at scattered points, about half-way through ``new`` tokens on the median, as
    the issue's "1-128 new tokens each". A random checkpoint's greedy continuation soon loops over a few tokens, so
    one EOS id ends almost no row (or every row at once); a random set of ids does: a row stops where its
    continuation first emits one of them. The set is a seeded random fraction of the vocabulary (special tokens
    left out), the fraction chosen on transformers' continuations of the first prompts so that their median stop is
    nearest new / 2."""
    import numpy as np
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(directory))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(directory)).eval()
    continuations = []
    with torch.no_grad():
        for prompt in prompts[:12]:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            continuations.append(model.generate(ids, max_new_tokens=new, do_sample=False, eos_token_id=None,
                                                pad_token_id=0)[0, ids.shape[1]:].tolist())
    special = set(tok.all_special_ids)
    candidates = np.array([t for t in range(model.config.vocab_size) if t not in special])
    order = np.random.default_rng(0).permutation(candidates)

    def stops(fraction: float) -> list[int]:
        chosen = set(order[:max(1, int(fraction * len(order)))].tolist())
        return [next((k + 1 for k, t in enumerate(c) if t in chosen), new) for c in continuations]

    fraction = min((0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5), key=lambda f: abs(float(np.median(stops(f))) - new / 2))
    return sorted(order[:max(1, int(fraction * len(order)))].tolist())


# -------------------------------------------------------------------------------------------- one side
def measure(side: str, task: str, directory: str, inputs_path: str, kwargs_json: str, ours_json: str,
            passes: int) -> dict:
    """Inside the child: build the side's pipeline, answer the first input, then pass over all inputs."""
    inputs = json.loads(Path(inputs_path).read_text())
    kwargs, ours_options = json.loads(kwargs_json), json.loads(ours_json)
    if side == "ours":
        import conversion

        pipe = conversion.pipeline(task, directory, batch_size=BATCH_SIZE, **ours_options)
    else:
        import transformers

        pipe = transformers.pipeline(task, model=directory, device="cpu", batch_size=BATCH_SIZE)
        if pipe.tokenizer.pad_token_id is None:  # transformers batches only with a pad token (Llama has none)
            pipe.tokenizer.pad_token = pipe.tokenizer.eos_token
        if task != "text-generation":  # left padding would shift a causal model's positions in one forward
            pipe.tokenizer.padding_side = "right"
        if task == "text-generation" and isinstance(inputs[0], dict):  # prompts with their own max_new_tokens
            limits = {tuple(pipe.tokenizer(x["text"])["input_ids"]): x["max_new_tokens"] for x in inputs}
            kwargs["stopping_criteria"] = [OwnMaxNewTokens(limits, pipe.tokenizer.pad_token_id)]
            inputs = [x["text"] for x in inputs]
    load_s = time.perf_counter() - START
    pipe(inputs[0], **kwargs)
    first_result_s = time.perf_counter() - START
    times, outputs = [], None
    for _ in range(passes):
        if side == "ours":
            pipe.stats.reset()
        t0 = time.perf_counter()
        outputs = pipe(inputs, **kwargs)
        times.append(time.perf_counter() - t0)
    out = {"load_s": load_s, "first_result_s": first_result_s, "pass_s": times, "best_s": min(times),
           "outputs": to_json(outputs)}
    if side == "ours":
        out["stats"] = pipe.stats.as_dict()
        if task == "text-generation" and passes > 1:  # the warm run: its generated ids, to count them (not timed)
            out["token_ids"] = to_json(pipe(inputs, **kwargs, return_tensors=True))
    return out


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


def run_side(side: str, work: Workload, directory: Path, inputs_path: Path, kwargs: dict, cache: Path | None,
             passes: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if side == "ours":
        env["JAXZOO_COMPILE_CACHE"] = str(cache)
    if side == "hf" and work.reference == "4.57":
        from tests.pipelines.oracle457 import install

        env = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = f"{install()}{os.pathsep}{ROOT}"
    args = [side, work.task, directory, inputs_path, json.dumps(kwargs), json.dumps(work.ours), passes]
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
    return [len(tok(prompt_text(x))["input_ids"]) for x in inputs]


def generated_counts(work: Workload, outputs: list, counts: list[int]) -> list[int]:
    """New tokens of each generation output: summaries run with return_tensors=True (token ids, compared exactly:
    a summary's after its start token); text-generation's ids (ours, return_tensors=True: transformers' batched
    ids hold the batch's left padding) after the prompt's ``counts`` tokens."""
    if work.task == "text-generation":
        return [len(o[0]["generated_token_ids"]) - n for o, n in zip(outputs, counts)]
    if work.task == "summarization":
        return [len(o["summary_token_ids"]) - 1 for o in outputs]
    return []


def layer_flops(h: int, ffn: int, n: int, context: int) -> float:
    """One row of n tokens through one transformer layer: q, k, v, o (8·n·h²), the FFN (4·n·h·ffn), the attention
    products (4·n·context·h)."""
    return 8 * n * h * h + 4 * n * h * ffn + 4 * n * min(n, context) * h


def work_cost(work: Workload, cfg: dict, counts: list[int], new_counts: list[int], preset: str) -> dict:
    """Useful FLOPs and weight bytes of one pass over the inputs (real tokens only; a decoding step reads every
    decoder weight once: a generation's floor, text or summary, counts one step per BATCH_SIZE new tokens, every
    slot busy)."""
    h, layers, _, ffn = SIZES[preset][work.family]
    vocab = cfg["vocab_size"]
    context = {"longformer": WINDOW[preset] + 1, "led": 2 * WINDOW[preset] + 1}.get(work.family, 10 ** 9)
    flops = sum(layers * layer_flops(h, ffn, n, context) for n in counts)
    bytes_read = 0.0
    if work.task == "fill-mask":
        flops += sum(2 * n * h * vocab for n in counts)  # both sides compute the LM head at every position
    if work.task == "text-generation":
        flops += sum(2 * h * vocab + sum(layers * layer_flops(h, ffn, 1, n + j) + 2 * h * vocab for j in range(m))
                     for n, m in zip(counts, new_counts))
        steps = math.ceil(sum(new_counts) / BATCH_SIZE)  # every step with all BATCH_SIZE rows generating
        bytes_read = steps * 4 * cfg["params"]
    if work.task == "summarization":
        beams = work.kwargs["num_beams"]
        per_step = layers * (16 * h * h + 4 * h * ffn) + 2 * h * vocab  # self + cross projections, FFN, head
        flops += sum(beams * m * per_step for m in new_counts)
        steps = math.ceil(sum(new_counts) / BATCH_SIZE)  # every step with all BATCH_SIZE rows generating
        bytes_read = steps * 4 * cfg["params"] / 2  # the decoder's half of the weights
    return {"flops": float(flops), "bytes": float(bytes_read)}


# ------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("base", "small"), default="base")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every workload's input count")
    parser.add_argument("--quick", action="store_true", help="tiny models, 4 inputs per workload (a smoke test)")
    parser.add_argument("--only", nargs="*", help="workload names to run (default: all of the preset)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    stem = {"base": "inference_cpu", "small": "pipelines_cpu"}[args.preset] + ("_quick" if args.quick else "")
    out_path = Path(args.out) if args.out else harness.RESULTS / f"{stem}.json"
    sizes = "quick" if args.quick else args.preset
    harness.setup_torch()
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    floor = harness.measure_floor(["float32"], 3 if args.quick else 10, 1.5 if args.quick else 4.0)
    print("\n".join(harness.floor_lines(floor)), flush=True)
    rate = floor["matmul_gflops"]["best"]["float32"] * 1e9
    bandwidth = floor["bandwidth_gbs"]["best"] * 1e9
    chosen = [w for w in workloads(args.preset) if not args.only or w.name in args.only]
    rows, failed = [], []
    print(f"{'workload':<24} {'items':>5} {'ours it/s':>9} {'HF it/s':>8} {'HF/ours':>8} {'ours tok/s':>10} "
          f"{'compiles':>8} {'padded':>6} {'cold 1st':>8} {'warm 1st':>8} {'ours/fl':>7} {'HF/fl':>6}  agree",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        built: dict[tuple, tuple] = {}
        for work in chosen:
            key = (work.family, work.head)
            if key not in built:
                directory = Path(tmp) / f"{work.family}_{work.head}"
                built[key] = (directory, build_checkpoint(work, directory, sizes))
            directory, cfg = built[key]
            count = 4 if args.quick else max(2, round(work.items * args.scale))
            # one input set per checkpoint, so that static vs continuous and greedy vs beams see the same inputs
            inputs = make_inputs(work, directory, count, seed=0)
            kwargs = dict(work.kwargs)
            if work.task == "summarization":
                kwargs["return_tensors"] = True  # token ids: compared exactly, and counted
            if work.task == "text-generation" and "min_new_tokens" not in kwargs:
                kwargs["eos_token_id"] = pick_stop_tokens(directory, [prompt_text(x) for x in inputs],
                                                          kwargs["max_new_tokens"])
                # finished rows padded with the config's EOS (a special token, out of the texts); else generate
                # pads with the first stop id, which transformers' batched texts would then show
                kwargs["pad_token_id"] = cfg["eos_token_id"]
            inputs_path = Path(tmp) / f"{work.name}.json"
            inputs_path.write_text(json.dumps(inputs))
            cache = Path(tmp) / f"xla_{work.family}_{work.head}"
            cold = run_side("ours", work, directory, inputs_path, kwargs, cache, passes=1)
            warm = run_side("ours", work, directory, inputs_path, kwargs, cache, passes=2)
            hf = run_side("hf", work, directory, inputs_path, kwargs, None, passes=2)
            agreement = compare(warm.pop("outputs"), hf["outputs"])
            cold.pop("outputs")
            cold.pop("token_ids", None)
            counts = token_counts(work, directory, inputs)
            new_counts = generated_counts(work, warm.pop("token_ids", None) or hf.pop("outputs"), counts)
            hf.pop("outputs", None)
            cost = work_cost(work, cfg, counts, new_counts, sizes)
            floor_s = max(cost["flops"] / rate, cost["bytes"] / bandwidth)
            row = {"workload": work.name, "task": work.task, "family": work.family, "head": work.head,
                   "reference": f"transformers {work.reference if work.reference == '4.57' else info['transformers']}",
                   "kwargs": kwargs, "ours_options": work.ours, "items": len(inputs), "tokens": counts,
                   "new_tokens": new_counts, "params": cfg["params"], **cost, "floor_s": floor_s,
                   "ours_cold": cold, "ours_warm": warm, "hf": hf,
                   "ratio": hf["best_s"] / warm["best_s"],
                   "ours_items_per_s": len(inputs) / warm["best_s"], "hf_items_per_s": len(inputs) / hf["best_s"],
                   "ours_new_tokens_per_s": sum(new_counts) / warm["best_s"],
                   "hf_new_tokens_per_s": sum(new_counts) / hf["best_s"],
                   "fraction_of_floor": {"ours": floor_s / warm["best_s"], "hf": floor_s / hf["best_s"]},
                   "agreement": agreement}
            rows.append(row)
            if agreement["mismatches"]:
                failed.append(work.name)
            agree = "yes" if not agreement["mismatches"] else f"NO ({len(agreement['mismatches'])} differ)"
            stats = cold["stats"]
            print(f"{work.name:<24} {len(inputs):>5} {row['ours_items_per_s']:>9.2f} {row['hf_items_per_s']:>8.2f} "
                  f"{row['ratio']:>7.2f}x {row['ours_new_tokens_per_s']:>10.1f} {stats['compiles']:>8} "
                  f"{stats['padded_fraction']:>6.1%} {cold['first_result_s']:>7.1f}s {warm['first_result_s']:>7.1f}s "
                  f"{row['fraction_of_floor']['ours']:>7.3f} {row['fraction_of_floor']['hf']:>6.3f}  {agree}, "
                  f"max score diff {agreement['max_score_diff']:.1e}", flush=True)
    path = harness.write_results({"machine": info, "floor": floor, "preset": args.preset, "scale": args.scale,
                                  "quick": args.quick, "batch_size": BATCH_SIZE, "workloads": rows}, out_path)
    print(f"wrote {path}")
    if failed:
        print(f"outputs differ from transformers' in: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        side, task, directory, inputs_path, kwargs_json, ours_json, passes = sys.argv[2:9]
        harness.setup_torch()
        print(json.dumps(measure(side, task, directory, inputs_path, kwargs_json, ours_json, int(passes))))
    else:
        sys.exit(main())
