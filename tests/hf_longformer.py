"""Tiny random transformers Longformer checkpoints for tests (built locally; nothing from the Hub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

from tests.parity import perturb_norms_and_biases

HF_CLASSES = {
    "model": "LongformerModel",
    "masked_lm": "LongformerForMaskedLM",
    "sequence_classification": "LongformerForSequenceClassification",
    "multiple_choice": "LongformerForMultipleChoice",
    "token_classification": "LongformerForTokenClassification",
    "question_answering": "LongformerForQuestionAnswering",
}

# HF's LongformerModelTester sizes, with a window of 4 (w = 2) and RoBERTa's special ids.
TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=64,
            type_vocab_size=2, attention_window=4, pad_token_id=1, bos_token_id=0, eos_token_id=2, sep_token_id=2,
            num_labels=3)
# For the parity tests: init std 0.2, not HF's 0.02. At 0.02 every attention probability is ~1/keys (a swapped
# query and key would go unseen) and the heads' logits ~0.05, a weak check at 1e-5 absolute; at 0.2 they are O(1).
PARITY_INIT = dict(initializer_range=0.2)


def hf_config(**overrides) -> transformers.LongformerConfig:
    kwargs = dict(TINY)
    kwargs.update(overrides)
    cfg = transformers.LongformerConfig(**kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def hf_model(head: str, seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    if head == "question_answering":
        overrides.setdefault("num_labels", 2)
    model = getattr(transformers, HF_CLASSES[head])(hf_config(**overrides)).eval()
    return perturb_norms_and_biases(model)


def save_hf(model: torch.nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, **kwargs)
    return directory


def qa_batch(lengths=(13, 9, 11), question=(3, 2, 4), vocab: int = 99, pad: int = 1, seed: int = 0):
    """Right-padded RoBERTa pairs ``<s> q </s></s> ctx </s>``: ids [B, T] (3 seps per row), mask [B, T] int64."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for b, (n, q) in enumerate(zip(lengths, question)):
        row = [0] + list(rng.integers(3, vocab, q)) + [2, 2] + list(rng.integers(3, vocab, n - q - 4)) + [2]
        ids[b, :n] = row
        mask[b, :n] = 1
    return ids, mask


def torch_out(model, **inputs):
    with torch.no_grad():
        return model(**{k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
