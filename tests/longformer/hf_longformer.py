"""Tiny random transformers Longformer checkpoints for tests (built locally; nothing from the Hub)."""

from __future__ import annotations

import numpy as np

from tests.factory import TinyCheckpoints

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


TINY_CHECKPOINTS = TinyCheckpoints("LongformerConfig", HF_CLASSES, TINY,
                                   head_defaults={"question_answering": {"num_labels": 2}})
hf_config, hf_model = TINY_CHECKPOINTS.hf_config, TINY_CHECKPOINTS.hf_model

# For the parity tests: init std 0.2, not HF's 0.02. At 0.02 every attention probability is ~1/keys (a swapped
# query and key would go unseen) and the heads' logits ~0.05, a weak check at 1e-5 absolute; at 0.2 they are O(1).
PARITY_INIT = dict(initializer_range=0.2)


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
