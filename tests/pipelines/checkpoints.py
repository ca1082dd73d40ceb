"""Tiny random checkpoints with tokenizer files, written as Hub checkpoints have them (nothing from the Hub).

Each family gets a tokenizer trained here on CPython's pydoc texts (a byte-level BPE for RoBERTa-style and Llama
checkpoints, an XLM BPE for XLM) and models whose vocabulary is the tokenizer's. Initializer ranges are large
(0.2, not transformers' 0.02) so that scores are far from ties: a wrong id, label or offset shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from pydoc_data.topics import topics

from common.tokenization import train_byte_level_bpe
from tests.factory import roberta_bpe, save_hf
from tests.led import hf_led
from tests.lilt import hf_lilt
from tests.llama import hf_llama
from tests.longformer import hf_longformer
from tests.xlm import hf_xlm

LABELS = ("negative", "neutral", "positive")


def corpus(n_lines: int = 300) -> list[str]:
    return [line for k in sorted(topics) for line in topics[k].splitlines() if line.strip()][:n_lines]


def write_roberta_tokenizer(directory: Path, vocab_size: int = 320, model_max_length: int | None = None) -> int:
    """vocab.json + merges.txt + tokenizer.json (+ tokenizer_config.json) as roberta-base / longformer-base-4096
    ship them: "<s>"=0, "<pad>"=1, "</s>"=2, "<unk>"=3, "<mask>" last (lstrip). Returns the vocabulary size."""
    tok = roberta_bpe(corpus(), vocab_size - 1)
    directory.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(directory))
    tok.save(str(directory / "tokenizer.json"))
    if model_max_length is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": model_max_length}))
    return tok.get_vocab_size(with_added_tokens=True)


def write_lilt_tokenizer(directory: Path, vocab_size: int = 320) -> int:
    """A LayoutLMv3 tokenizer as SCUT-DLVCLab/lilt-roberta-en-base ships it: RoBERTa's files + a
    tokenizer_config.json naming LayoutLMv3Tokenizer with add_prefix_space (words are tokenized one by one)."""
    vocab = write_roberta_tokenizer(directory, vocab_size)
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LayoutLMv3Tokenizer", "add_prefix_space": True, "model_max_length": 512,
        "cls_token_box": [0, 0, 0, 0], "sep_token_box": [0, 0, 0, 0], "pad_token_box": [0, 0, 0, 0],
        "pad_token_label": -100, "only_label_first_subword": True}))
    return vocab


def write_llama_tokenizer(directory: Path, vocab_size: int = 320) -> int:
    train_byte_level_bpe(corpus(), vocab_size, directory)
    return vocab_size


def write_xlm_tokenizer(directory: Path, vocab_size: int = 320) -> int:
    from xlm_jax.tokenizer import build_xlm_vocab

    build_xlm_vocab(corpus(), vocab_size, directory)
    return len(json.loads((directory / "vocab.json").read_text()))


def labelled(n: int = 3) -> dict:
    names = LABELS if n == 3 else tuple(f"class_{i}" for i in range(n))
    return {"id2label": dict(enumerate(names)), "label2id": {name: i for i, name in enumerate(names)}}


FAMILIES = {  # family -> (its tiny checkpoints, its tokenizer writer, a wide init)
    "longformer": (hf_longformer, write_roberta_tokenizer, {"initializer_range": 0.2}),
    "led": (hf_led, write_roberta_tokenizer, {"init_std": 0.2}),
    "lilt": (hf_lilt, write_lilt_tokenizer, {"initializer_range": 0.2}),
    "llama": (hf_llama, write_llama_tokenizer, {"initializer_range": 0.2}),
    "xlm": (hf_xlm, write_xlm_tokenizer, {"init_std": 0.2, "embed_init_std": 0.2}),
}


def checkpoint(directory: Path, family: str, head: str, seed: int = 0, vocab_size: int = 320, **overrides) -> Path:
    """A tiny random ``family`` ``head`` saved with its tokenizer files (``vocab_size`` pieces) in ``directory``."""
    factory, write_tokenizer, init = FAMILIES[family]
    vocab = write_tokenizer(directory, vocab_size)
    fields = {"vocab_size": vocab, **init, **overrides}
    if "id2label" in overrides:  # the head's size follows the names (the family's tiny config says 3)
        fields["num_labels"] = len(overrides["id2label"])
    if family == "llama":
        fields.setdefault("pad_token_id", None)
    model = factory.hf_model(head, seed=seed, **fields)
    return save_hf(model, directory)
