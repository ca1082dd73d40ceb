"""Tokenizer helpers shared by the families: training a small byte-level BPE on a local corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

# Llama 3's splitting regex: contractions, letters, 1-3 digit groups, punctuation runs, newlines, spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def docs_corpus(stdlib_docstrings: bool = True) -> list[str]:
    """English text every CPython install has: the pydoc topic help texts (~0.5 M chars) and, by default,
    the docstrings of the standard library's modules, classes and functions (~1.4 M chars), in a fixed order.
    """
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    if stdlib_docstrings:
        texts += stdlib_docstring_texts()
    return texts


def stdlib_docstring_texts(min_chars: int = 80) -> list[str]:
    """Docstrings (longer than min_chars) parsed with ``ast`` from the standard library's .py files."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo"}
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    texts = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are templates or in other encodings
        texts += [d for node in ast.walk(tree) if isinstance(node, kinds)
                  and (d := ast.get_docstring(node)) and len(d) > min_chars]
    return texts


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, directory: str | Path,
                         bos: str = "<|begin_of_text|>", eos: str = "<|end_of_text|>") -> Path:
    """Train a Llama-3-style byte-level BPE and write tokenizer.json + tokenizer_config.json to ``directory``.

    The result loads with ``llama_jax.tokenizer.LlamaTokenizer`` and transformers' ``AutoTokenizer`` alike.
    bos gets id ``vocab_size - 2`` region's start: special tokens are added after the learned merges.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 300:
        raise ValueError(f"vocab_size = {vocab_size} is invalid: expected >= 300 (256 bytes + merges + specials)")
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([bos, eos])
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "model_max_length": 1_000_000, "padding_side": "left"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out
