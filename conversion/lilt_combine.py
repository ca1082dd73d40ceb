"""A LiLT checkpoint from any RoBERTa-family text checkpoint plus LiLT's layout stream.

LiLT is pre-trained with its text stream frozen at a RoBERTa-style encoder, so the layout stream of one LiLT
checkpoint (``lilt-only-base``, or the layout half of any LiLT checkpoint) can be paired with another text
encoder of the same size: RoBERTa for English, XLM-RoBERTa / InfoXLM for the multilingual variants. This is
the original project's "generate your own checkpoint" step: the text tensors (``roberta.`` prefix stripped)
and the layout tensors are written as one ``LiltModel`` checkpoint whose config takes the vocabulary,
positions, token types and special ids from the text model and the layout settings from the LiLT model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from common.files import read_json, read_json_if_present
from conversion.api import CheckpointMismatchError, expected_tree, resolve_directory, write_checkpoint
from conversion.io import CheckpointReader
from conversion.mapping import get_path, modern_name
from conversion.orbax_io import TOKENIZER_FILES
from conversion.registry import ARCHITECTURES
from lilt_jax.config import LiltConfig

# Text checkpoints whose encoder is RoBERTa's (post-LN BERT layers, positions numbered after the pad id).
TEXT_MODEL_TYPES = ("roberta", "xlm-roberta", "camembert")
# The HF fields the combined config takes from the text checkpoint; the rest (channel_shrink_ratio,
# max_2d_position_embeddings, classifier settings) come from the LiLT one.
TEXT_FIELDS = ("vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
               "bos_token_id", "eos_token_id", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
               "initializer_range")
# The LiLT file's fine-tuning task is not the new checkpoint's: a backbone, whose heads start fresh.
NOT_CARRIED = ("architectures", "dtype", "torch_dtype", "id2label", "label2id", "num_labels", "problem_type",
               "finetuning_task")
# Both streams' shapes follow these: they must agree between the two checkpoints.
SHARED_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
# The tokenizer class transformers' LiLT checkpoints declare for each text model's vocabulary.
LAYOUT_TOKENIZERS = {"roberta": "LayoutLMv3Tokenizer", "camembert": "LayoutXLMTokenizer",
                     "xlm-roberta": "LayoutXLMTokenizer"}
TEXT_VOCAB_FILES = ("vocab.json", "merges.txt", "sentencepiece.bpe.model")


def combine_text_and_layout(text_checkpoint: str | os.PathLike, layout_checkpoint: str | os.PathLike,
                            out_dir: str | os.PathLike, *, max_shard_size: int = 5 * 2**30) -> Path:
    """Write a ``LiltModel`` checkpoint to out_dir: text stream from text_checkpoint (a RoBERTa, XLM-RoBERTa or
    CamemBERT directory, bare or saved from a head: ``roberta.`` keys), layout stream from layout_checkpoint
    (any LiLT directory: ``LiltModel`` or a head's ``lilt.`` keys; its text tensors, if any, are not used).

    The text checkpoint's tokenizer files are copied with the LayoutLMv3 (RoBERTa) or LayoutXLM (XLM-R)
    tokenizer class, so ``lilt_jax.load_tokenizer(out_dir)`` and transformers' AutoTokenizer read words and
    boxes. The pooler comes from the text checkpoint when it has one (a masked-LM file has none: load the
    result as a head, or pass ``init_missing`` to start a pooler). Raises CheckpointMismatchError naming every
    missing or mis-shaped tensor and each config field on which the two checkpoints disagree.
    """
    text_dir, layout_dir = resolve_directory(text_checkpoint), resolve_directory(layout_checkpoint)
    text_hf, layout_hf = read_json(text_dir / "config.json"), read_json(layout_dir / "config.json")
    text_type, layout_type = text_hf.get("model_type"), layout_hf.get("model_type")
    if text_type not in TEXT_MODEL_TYPES:
        raise ValueError(f"text_checkpoint: model_type {text_type!r} in {text_dir / 'config.json'} is not a "
                         f"RoBERTa-family text model; expected one of {list(TEXT_MODEL_TYPES)}")
    if layout_type != "lilt":
        raise ValueError(f"layout_checkpoint: model_type {layout_type!r} in {layout_dir / 'config.json'}; "
                         "expected 'lilt'")
    disagree = [f"{k}: text {text_hf.get(k)!r}, layout {layout_hf.get(k)!r}" for k in SHARED_FIELDS
                if text_hf.get(k) != layout_hf.get(k)]
    if disagree:
        raise CheckpointMismatchError("text_checkpoint and layout_checkpoint disagree on the encoder's size "
                                      "(both streams must have the same layers and heads): " + "; ".join(disagree))

    hf_config = {k: v for k, v in layout_hf.items() if k not in NOT_CARRIED}
    hf_config.update({k: text_hf[k] for k in TEXT_FIELDS if k in text_hf})
    hf_config["architectures"] = ["LiltModel"]
    config = LiltConfig.from_hf_dict(hf_config)  # validates the combination (e.g. hidden_size % 6)

    arch = ARCHITECTURES["LiltModel"]
    expected = expected_tree(arch, config, jnp.float32)
    text, layout = CheckpointReader(text_dir), CheckpointReader(layout_dir)
    # source -> (reader, backbone prefix, {current transformers name: name in the file})
    sources = {name: (reader, _prefix(reader, head_prefix), {modern_name(k): k for k in reader.shapes})
               for name, reader, head_prefix in (("text_checkpoint", text, "roberta."),
                                                 ("layout_checkpoint", layout, "lilt."))}
    tensors: dict[str, np.ndarray] = {}
    problems: list[str] = []
    no_pooler: list[str] = []
    for rule in arch.rules(config, arch.head):
        source = "layout_checkpoint" if "layout" in rule.hf else "text_checkpoint"
        reader, prefix, by_modern = sources[source]
        param_shape = get_path(expected, rule.path).shape
        want = rule.hf_shape(param_shape)
        for name in rule.hf_names("", param_shape):
            found = by_modern.get(prefix + name)
            if found is None:
                if name.startswith("pooler."):
                    no_pooler.append(name)  # masked-LM files have no pooler; the heads do not use it
                    continue
                problems.append(f"{source} has no {prefix + name}")
            elif tuple(reader.shapes[found]) != tuple(want):
                problems.append(f"{source} {found}: shape {tuple(reader.shapes[found])}, expected {want}")
            else:
                tensors[name] = reader.get(found)
    if len(no_pooler) == 1:
        problems.append(f"text_checkpoint has half a pooler: no {no_pooler[0]}")
    if problems:
        raise CheckpointMismatchError(f"cannot combine into {arch.spec.hf_class} ({len(problems)} problems): "
                                      + "; ".join(problems))
    out = write_checkpoint(out_dir, tensors, hf_config, max_shard_size)
    _copy_text_tokenizer(text_dir, out, LAYOUT_TOKENIZERS[text_type])
    return out


def _prefix(reader: CheckpointReader, head_prefix: str) -> str:
    """The backbone prefix a checkpoint's keys carry: head_prefix when saved from a head, else none."""
    return head_prefix if any(k.startswith(head_prefix) for k in reader.shapes) else ""


def _copy_text_tokenizer(text_dir: Path, out: Path, tokenizer_class: str) -> None:
    """The text model's vocabulary files, declared as the layout-aware tokenizer over that vocabulary."""
    for name in TOKENIZER_FILES + TEXT_VOCAB_FILES:
        if (text_dir / name).is_file() and name != "tokenizer_config.json":
            shutil.copy2(text_dir / name, out / name)
    tok_config = read_json_if_present(text_dir / "tokenizer_config.json", "tokenizer config")
    if any((out / name).is_file() for name in ("tokenizer.json",) + TEXT_VOCAB_FILES):
        tok_config["tokenizer_class"] = tokenizer_class
        (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
