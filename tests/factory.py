"""The one factory of tiny random transformers checkpoints (built locally; nothing from the Hub).

Each family's ``tests/<family>/hf_<family>.py`` declares a ``TinyCheckpoints`` (its HF classes, its tiny config, the
per-head config defaults transformers needs) plus the inputs its tests use; building, saving and running the
reference model is the same for every family and lives here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tests.parity import perturb_norms_and_biases


@dataclasses.dataclass(frozen=True)
class TinyCheckpoints:
    config_class: str  # the transformers config class, e.g. "LlamaConfig"
    heads: dict  # head name -> transformers class name
    tiny: dict  # the tiny config's fields
    head_defaults: dict = dataclasses.field(default_factory=dict)  # head -> config fields it needs (QA: 2 labels)
    # head -> a builder of the reference model (config -> module) for a head transformers 5.x no longer has
    builders: dict = dataclasses.field(default_factory=dict)

    def hf_config(self, **overrides):
        """The tiny config with ``overrides``, on HF's eager attention (its reference math, which returns the
        attention probabilities)."""
        config = getattr(transformers, self.config_class)(**{**self.tiny, **overrides})
        config._attn_implementation = "eager"
        return config

    def hf_model(self, head: str, seed: int = 0, **overrides) -> torch.nn.Module:
        """A random ``head`` in eval mode, its norms and biases perturbed so every tensor's mapping is tested."""
        torch.manual_seed(seed)
        config = self.hf_config(**{**self.head_defaults.get(head, {}), **overrides})
        build: Callable = self.builders.get(head) or getattr(transformers, self.heads[head])
        return perturb_norms_and_biases(build(config).eval())


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    """``model.save_pretrained(directory)``; returns the directory."""
    model.save_pretrained(directory, **kwargs)
    return directory


def roberta_bpe(lines: list[str], vocab_size: int, post_processor: bool = True) -> Tokenizer:
    """A byte-level BPE as roberta-base's files have it, trained on ``lines``: "<s>"=0, "<pad>"=1, "</s>"=2,
    "<unk>"=3, the learned pieces (``vocab_size`` in all), then "<mask>" (lstrip) as the last id; with
    ``post_processor``, RoBERTa's "<s> A </s></s> B </s>" template."""
    tok = Tokenizer(models.BPE(dropout=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    spec = json.loads(tok.to_str())
    spec["model"]["vocab"]["<mask>"] = len(spec["model"]["vocab"])
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.decoder = decoders.ByteLevel()
    if post_processor:
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                          add_prefix_space=False)
    return tok


def torch_out(model, **inputs):
    """The reference model's output on numpy inputs (converted to tensors), without gradients."""
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
