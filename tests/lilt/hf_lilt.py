"""Tiny random transformers LiLT checkpoints and inputs for tests (built locally; nothing from the Hub)."""

from __future__ import annotations

import numpy as np

from tests.factory import TinyCheckpoints

HF_CLASSES = {
    "model": "LiltModel",
    "sequence_classification": "LiltForSequenceClassification",
    "token_classification": "LiltForTokenClassification",
    "question_answering": "LiltForQuestionAnswering",
}

# HF's LiltModelTester sizes (hidden 24 = 6 * 4 for the box tables, 6 heads of 4, layout heads of 1), with
# RoBERTa's special ids and layer_norm_eps as lilt-roberta-en-base; 16 token types as the HF tester. At HF's
# init std (0.02) the one-wide layout heads move the output by ~1e-6, below the parity tolerance: a bug in the
# box handling would go unseen. 0.2 makes the layout stream count (test_layout_stream_matters).
TINY = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=6, intermediate_size=37,
            hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, max_position_embeddings=64,
            type_vocab_size=16, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            channel_shrink_ratio=4, max_2d_position_embeddings=1024, num_labels=3, initializer_range=0.2)


TINY_CHECKPOINTS = TinyCheckpoints("LiltConfig", HF_CLASSES, TINY, head_defaults={"question_answering": {"num_labels": 2}})
hf_config, hf_model = TINY_CHECKPOINTS.hf_config, TINY_CHECKPOINTS.hf_model



def batch(lengths=(13, 9, 11), vocab: int = 99, pad: int = 1, types: int = 16, seed: int = 0):
    """Right-padded inputs: ids [B, T] (<s> ... </s>), mask [B, T], boxes [B, T, 4] over the whole 0..1000 range
    (including 0 and 1000 and zero-size boxes; padding gets [0, 0, 0, 0] as the tokenizer gives it) and token
    types [B, T], all int64."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    corners = np.sort(rng.integers(0, 1001, (len(lengths), t, 2, 2)), axis=2)  # sorted per axis: x0<=x1, y0<=y1
    boxes = np.stack([corners[..., 0, 0], corners[..., 0, 1], corners[..., 1, 0], corners[..., 1, 1]], axis=-1)
    boxes[0, 1] = [0, 0, 1000, 1000]
    boxes[0, 2] = [1000, 1000, 1000, 1000]
    for b, n in enumerate(lengths):
        ids[b, :n] = [0] + list(rng.integers(3, vocab, n - 2)) + [2]
        mask[b, :n] = 1
        boxes[b, n:] = 0
    return ids, mask, boxes, rng.integers(0, types, ids.shape)
