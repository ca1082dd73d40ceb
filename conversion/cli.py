"""The ``jaxzoo`` command line.

    jaxzoo generate --checkpoint DIR --prompt TEXT [--max-new-tokens N] [--do-sample ...]
    jaxzoo convert SRC DST            HF directory -> Orbax directory, or an Orbax directory -> HF directory
    jaxzoo quantize SRC DST --bits 8|4  int8 / int4 weights, written as an Orbax directory
    jaxzoo demo-checkpoint DIR        a small random-weight Llama + a tokenizer trained on local text
    jaxzoo combine-lilt TEXT LAYOUT OUT  a LiLT checkpoint: RoBERTa / XLM-R text weights + a LiLT layout stream
    jaxzoo train [--time-budget MIN]  pre-train a small Llama on local text (the main job; defaults built in)
    jaxzoo pipeline TASK --model DIR [--input F.jsonl] [--output F.jsonl] [--top-k 3 ...]
                                      a task pipeline over JSON Lines (stdin / stdout without files), resumable
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path

DTYPES = ("float32", "bfloat16")


def _dtype(name: str):
    import jax.numpy as jnp

    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def cmd_generate(args) -> int:
    import numpy as np

    from conversion.api import from_pretrained, resolve_directory
    from llama_jax.tokenizer import LlamaTokenizer

    directory = resolve_directory(args.checkpoint)
    model = from_pretrained(directory, dtype=_dtype(args.dtype), progress=not args.quiet)
    if model.spec.generation is None:
        raise SystemExit(f"error: {directory} holds a {model.architecture}, which does not generate text")
    tokenizer = LlamaTokenizer.from_pretrained(directory)
    batch = tokenizer(args.prompt)
    start = time.perf_counter()
    seqs = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                          max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    seconds = time.perf_counter() - start
    prompt_len = batch["input_ids"].shape[1]
    for row, prompt in zip(seqs, args.prompt):
        print(prompt + tokenizer.decode(row[prompt_len:], skip_special_tokens=True))
    if not args.quiet:
        new = int(np.prod(seqs[:, prompt_len:].shape))
        print(f"[{new} tokens in {seconds:.2f} s including compilation]", file=sys.stderr)
    return 0


def cmd_convert(args) -> int:
    from conversion.api import from_pretrained, resolve_directory, save_pretrained
    from conversion.orbax_io import copy_tokenizer_files, is_orbax_dir, save_orbax

    src = resolve_directory(args.src)
    dst = Path(args.dst)
    model = from_pretrained(src, dtype=_dtype(args.dtype), progress=not args.quiet)
    if is_orbax_dir(src):
        save_pretrained(model, dst)
        kind = "Hugging Face directory"
    else:
        hf_config = model.config.to_hf_dict()
        hf_config["architectures"] = [model.architecture]
        save_orbax(model.params, hf_config, dst, model.generation_config)
        kind = "Orbax checkpoint"
    copy_tokenizer_files(src, dst)
    print(f"wrote {kind} of {model.architecture} to {dst}")
    return 0


def cmd_quantize(args) -> int:
    from common.quantization import QuantConfig, param_bytes
    from conversion.api import from_pretrained, quantize_model, resolve_directory
    from conversion.orbax_io import copy_tokenizer_files, save_orbax

    qc = QuantConfig(bits=args.bits, group_size=args.group_size, embeddings=args.embeddings, lm_head=args.lm_head,
                     fit_groups=args.fit_groups)
    src = resolve_directory(args.src)
    model = from_pretrained(src, dtype=_dtype(args.dtype), progress=not args.quiet)
    before = param_bytes(model.params)
    model = quantize_model(model, qc)
    hf_config = dict(model.config.to_hf_dict(), architectures=[model.architecture])
    save_orbax(model.params, hf_config, Path(args.dst), model.generation_config, quantization=qc.to_dict())
    copy_tokenizer_files(src, Path(args.dst))
    after = param_bytes(model.params)
    print(f"wrote {model.architecture} with int{args.bits} weights to {args.dst}: params {before / 1e6:.1f} MB -> "
          f"{after / 1e6:.1f} MB ({after / before:.2f}x)")
    return 0


def cmd_demo_checkpoint(args) -> int:
    import jax

    from common.model import Model
    from common.tokenization import docs_corpus, train_byte_level_bpe
    from conversion.api import save_pretrained
    from conversion.registry import ARCHITECTURES
    from llama_jax.config import LlamaConfig
    from llama_jax.tokenizer import LlamaTokenizer

    out = Path(args.dir)
    train_byte_level_bpe(docs_corpus(), args.vocab_size, out)
    tokenizer = LlamaTokenizer.from_pretrained(out)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rms_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    arch = ARCHITECTURES["LlamaForCausalLM"]
    params = arch.init_params(config, jax.random.PRNGKey(args.seed), _dtype("float32"), arch.head)
    save_pretrained(Model(config, params, arch.spec), out)
    print(f"wrote a random-weight LlamaForCausalLM ({sum(x.size for x in jax.tree.leaves(params)) / 1e6:.1f}M params) "
          f"and a {tokenizer.vocab_size}-token tokenizer to {out}")
    return 0


def cmd_train(args) -> int:
    from conversion.api import save_pretrained
    from conversion.registry import ARCHITECTURES
    from llama_jax.pretrain import PretrainConfig, run

    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    cfg = PretrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None})
    if args.coordinator is not None:
        from common.distributed import initialize
        if args.coordinator == "auto":
            if args.num_processes is not None or args.process_id is not None:
                raise ValueError("--coordinator auto detects the processes: leave out --num-processes and --process-id")
            initialize(heartbeat_timeout_seconds=args.heartbeat_timeout)
        else:
            if args.num_processes is None or args.process_id is None:
                raise ValueError(f"--coordinator {args.coordinator} needs --num-processes N and --process-id I "
                                 "(0..N-1) on every host")
            initialize(args.coordinator, args.num_processes, args.process_id,
                       heartbeat_timeout_seconds=args.heartbeat_timeout)
    elif args.num_processes is not None or args.process_id is not None:
        raise ValueError("--num-processes and --process-id need --coordinator HOST:PORT (process 0's address)")
    run(cfg, ARCHITECTURES["LlamaForCausalLM"].spec, save_pretrained)
    return 0


def cmd_combine_lilt(args) -> int:
    from conversion.lilt_combine import combine_text_and_layout

    out = combine_text_and_layout(args.text, args.layout, args.out)
    print(f"wrote a LiltModel checkpoint to {out} (text stream from {args.text}, layout stream from {args.layout})")
    return 0


def cmd_pipeline(args, task_args: list[str]) -> int:
    from common.pipelines.jsonl import run_jsonl
    from conversion.pipeline import pipeline

    options = task_options(task_args)
    cache = False if args.no_compile_cache else (args.compile_cache or None)
    pipe = pipeline(args.task, args.model, dtype=_dtype(args.dtype), batch_size=args.batch_size,
                    compile_cache=cache)
    progress = args.output is not None and not args.no_progress
    written = run_jsonl(pipe, args.input, args.output, chunk=args.chunk, options=options, on_error=args.on_error,
                        progress=progress)
    if args.output is not None:
        print(f"{written} results written to {args.output} ({pipe.stats})", file=sys.stderr)
    return 0


def task_options(words: list[str]) -> dict:
    """``--top-k 3 --targets '["a", "b"]'`` -> {"top_k": 3, "targets": ["a", "b"]}: each value read as JSON,
    else kept as a string."""
    import json

    options, i = {}, 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or word == "--":
            raise ValueError(f"task arguments: expected --name value, got {word!r}")
        name, eq, value = word[2:].partition("=")
        if not eq:
            if i + 1 >= len(words):
                raise ValueError(f"task arguments: {word} has no value")
            value, i = words[i + 1], i + 1
        try:
            options[name.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[name.replace("-", "_")] = value
        i += 1
    return options


def _argparse_type(parse):
    """argparse shows only ArgumentTypeError messages; keep ours (they name the allowed values)."""
    def wrapped(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def _add_pretrain_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per PretrainConfig field (--steps, --batch-size, --mesh 1,2,1, --resume, ...)."""
    from common.sharding import parse_mesh
    from llama_jax.pretrain import PretrainConfig

    hints = typing.get_type_hints(PretrainConfig)
    for f in dataclasses.fields(PretrainConfig):
        flag, default = "--" + f.name.replace("_", "-"), f.default
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action="store_true", default=None)
        elif f.name == "mesh":
            parser.add_argument(flag, dest=f.name, type=_argparse_type(parse_mesh),
                                help=f"data,fsdp,tensor (default {default})")
        else:
            parser.add_argument(flag, dest=f.name, type=_optional_type(hints[f.name]),
                                metavar=f.metadata.get("metavar"), help=f.metadata.get("help", f"default: {default}"))


def cmd_finetune(args) -> int:
    from conversion.finetune import TASK_OPTIONS, TRAINING_OPTIONS, finetune

    options = {k: v for k, v in vars(args).items() if k in TASK_OPTIONS + TRAINING_OPTIONS and v is not None}
    if "columns" in options:
        options["columns"] = tuple(options["columns"])
    summary = finetune(args.task, args.model, args.train, args.validation, args.out, args.test,
                       mesh=args.mesh, attention=args.attention, **options)
    return 0 if "stopped_after" in summary or summary.get("best") else 1


def _names(text: str) -> tuple[str, ...]:
    """"O,B-PER,I-PER" -> ("O", "B-PER", "I-PER")."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise ValueError(f"expected comma-separated names, got {text!r}")
    return names


def _lengths(text: str) -> tuple[int, ...]:
    """"128,256,512" -> (128, 256, 512)."""
    try:
        return tuple(int(n) for n in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated lengths, got {text!r}") from None


def _column(text: str) -> tuple[str, str]:
    """"text=review" -> ("text", "review")."""
    role, eq, name = text.partition("=")
    if not eq or not role or not name:
        raise ValueError(f"expected ROLE=COLUMN (e.g. text=review), got {text!r}")
    return role, name


def _add_finetune_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TaskOptions / TrainingOptions field (--epochs, --batch-size, --max-seq-length, ...)."""
    from common.finetune.job import TrainingOptions
    from common.finetune.task import TaskOptions
    from common.sharding import parse_mesh

    parser.add_argument("task", help="text-classification, token-classification, question-answering, summarization, "
                        "multiple-choice, masked-lm, causal-lm or document-token-classification")
    parser.add_argument("--model", required=True, help="checkpoint directory (or Hub id) with its tokenizer files")
    parser.add_argument("--train", required=True, help="training data: .jsonl / .json, .csv or .parquet (or a Hub "
                        "dataset id, with :split)")
    parser.add_argument("--validation", required=True, help="held-out data, scored at every evaluation")
    parser.add_argument("--test", help="data scored once with the best checkpoint")
    parser.add_argument("--out", required=True, help="directory for checkpoints, the best model, metrics.json, "
                        "curves.png")
    parser.add_argument("--mesh", type=_argparse_type(parse_mesh), help="data,fsdp,tensor devices to train on")
    parser.add_argument("--attention", default="auto", help="reference, blocked, pallas or auto")
    special = {"label_names": (_names, "NAME,NAME,...", "names of int labels 0..k-1 (e.g. CoNLL's tags)"),
               "buckets": (_lengths, "N,N,...", "padded lengths, increasing (default: 8, 16, ... 256, 384, 512, ...)")}
    for options in (TaskOptions, TrainingOptions):
        hints = typing.get_type_hints(options)
        for f in dataclasses.fields(options):
            flag, default = "--" + f.name.replace("_", "-"), f.default
            if f.name == "columns":
                parser.add_argument("--column", dest="columns", type=_argparse_type(_column), action="append",
                                    metavar="ROLE=COLUMN", help="a column named otherwise than the task's default "
                                    "(e.g. --column text=review --column label=stars); repeatable")
            elif f.name in special:
                parse, metavar, text = special[f.name]
                parser.add_argument(flag, dest=f.name, type=_argparse_type(parse), metavar=metavar, help=text)
            elif isinstance(default, bool):
                parser.add_argument(flag, dest=f.name, action="store_true", default=None)
            else:
                parser.add_argument(flag, dest=f.name, type=_optional_type(hints[f.name]),
                                    help=f"default: {default}")


def _optional_type(hint):
    """The type a flag parses to: ``int | None`` (unset by default) -> int; plain types as they are."""
    kinds = [k for k in typing.get_args(hint) if k is not type(None)]
    return kinds[0] if len(kinds) == 1 else hint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxzoo", description="JAX model zoo: Llama, Longformer, LED, LiLT, XLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate text from a causal LM checkpoint directory")
    g.add_argument("--checkpoint", required=True, help="HF checkpoint directory (or Hub id), or a converted Orbax dir")
    g.add_argument("--prompt", required=True, action="append", help="prompt text; repeat for a batch")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", choices=DTYPES, default="float32")
    g.add_argument("--quiet", action="store_true", help="print only the generated text")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("convert", help="HF directory -> Orbax checkpoint, or Orbax checkpoint -> HF directory")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--dtype", choices=DTYPES, default="float32")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_convert)

    q = sub.add_parser("quantize", help="a checkpoint with int8 / int4 weights, as an Orbax directory that "
                       "from_pretrained, pipelines and generate load quantized")
    q.add_argument("src", help="HF checkpoint directory (or Hub id), or a converted Orbax directory")
    q.add_argument("dst", help="new directory for the quantized Orbax checkpoint")
    q.add_argument("--bits", type=int, choices=(8, 4), default=8, help="8: per output channel; 4: in groups")
    q.add_argument("--group-size", type=int, default=128, help="int4: inputs that share a scale (default 128)")
    q.add_argument("--fit-groups", action="store_true", help="int4: where the group size does not divide a param's "
                   "input dimension, the largest smaller group that does (else an error)")
    q.add_argument("--embeddings", action="store_true", help="also quantize the embedding tables")
    q.add_argument("--lm-head", action="store_true", help="also quantize the LM head (vocabulary projection)")
    q.add_argument("--dtype", choices=DTYPES, default="float32", help="the dtype the model computes in")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_quantize)

    d = sub.add_parser("demo-checkpoint", help="write a small random-weight Llama and a locally trained tokenizer")
    d.add_argument("dir")
    d.add_argument("--vocab-size", type=int, default=4096)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo_checkpoint)

    lc = sub.add_parser("combine-lilt", help="a LiLT checkpoint from a RoBERTa / XLM-RoBERTa text checkpoint and a "
                        "LiLT checkpoint's layout stream")
    lc.add_argument("text", help="RoBERTa, XLM-RoBERTa or CamemBERT checkpoint directory (or Hub id)")
    lc.add_argument("layout", help="LiLT checkpoint directory (or Hub id) whose layout stream to take")
    lc.add_argument("out", help="directory to write the combined LiltModel checkpoint to")
    lc.set_defaults(func=cmd_combine_lilt)

    p = sub.add_parser("pipeline", help="run a task pipeline over JSON Lines: one input per line, one result per "
                       "line (stdin / stdout without files); any other --name value is the task's option",
                       epilog="e.g. jaxzoo pipeline fill-mask --model DIR --input in.jsonl --output out.jsonl "
                              "--top-k 3")
    p.add_argument("task", help="fill-mask, text-classification, feature-extraction, ...")
    p.add_argument("--model", required=True, help="checkpoint directory (or Hub id) with its tokenizer files")
    p.add_argument("--input", type=Path, help="JSON Lines input (default: stdin)")
    p.add_argument("--output", type=Path, help="JSON Lines output, appended to and resumed (default: stdout)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per model call")
    p.add_argument("--chunk", type=int, default=64, help="lines run (and written) at a time")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--on-error", choices=("stop", "record"), default="stop",
                   help="a bad line stops the job (default), or is written as {\"error\", \"line\"} in its place")
    p.add_argument("--compile-cache", type=Path, default=None,
                   help="JAX's persistent compilation cache (default: $JAXZOO_COMPILE_CACHE or ~/.cache/jaxzoo/xla)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile everything in this process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (shown with --output)")
    p.set_defaults(func=cmd_pipeline)

    t = sub.add_parser("train", help="pre-train a small Llama on a local corpus (pydoc texts by default)")
    _add_pretrain_flags(t)
    m = t.add_argument_group("multi-host", "one command per host, the same flags on each but --process-id; --mesh "
                             "must cover all hosts' devices and --out a filesystem they share")
    m.add_argument("--coordinator", metavar="HOST:PORT|auto", help="process 0's address (it serves there), or auto: "
                   "JAX detects the hosts (TPU pod slice, SLURM, Open MPI, Kubernetes)")
    m.add_argument("--num-processes", type=int, metavar="N", help="hosts (processes) in the job")
    m.add_argument("--process-id", type=int, metavar="I", help="this host's number, 0..N-1")
    m.add_argument("--heartbeat-timeout", type=int, default=100, metavar="SECONDS",
                   help="a host silent this long ends the job with an error naming it (default: 100)")
    t.set_defaults(func=cmd_train)

    f = sub.add_parser("finetune", help="fine-tune a checkpoint for a task on local data files; the best checkpoint "
                       "is exported as an HF checkpoint with its tokenizer",
                       epilog="e.g. jaxzoo finetune token-classification --model DIR --train train.jsonl "
                              "--validation dev.jsonl --out runs/ner --epochs 3 --label-names O,B-PER,I-PER")
    _add_finetune_flags(f)
    f.set_defaults(func=cmd_finetune)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "pipeline":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra) if args.command == "pipeline" else args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
