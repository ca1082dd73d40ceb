"""Tiny random transformers Llama checkpoints for tests (built locally; nothing from the Hub)."""

from __future__ import annotations

import numpy as np

from tests.factory import TinyCheckpoints

HF_CLASSES = {
    "model": "LlamaModel",
    "causal_lm": "LlamaForCausalLM",
    "sequence_classification": "LlamaForSequenceClassification",
    "token_classification": "LlamaForTokenClassification",
    "question_answering": "LlamaForQuestionAnswering",
}

# HF's own tiny tester config (CausalLMModelTester), with GQA and a pad token.
TINY = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, hidden_act="gelu", pad_token_id=0, bos_token_id=1,
            eos_token_id=2, num_labels=3)


TINY_CHECKPOINTS = TinyCheckpoints("LlamaConfig", HF_CLASSES, TINY, head_defaults={})
hf_config, hf_model = TINY_CHECKPOINTS.hf_config, TINY_CHECKPOINTS.hf_model

# For the parity tests: init std 0.2, not HF's 0.02. Llama's residual stream (the hidden states before the final
# norm) scales with it, and at 0.02 it is ~0.02, so the 1e-5 absolute bound would be a 5e-4 relative check; at
# 0.2 the compared values are O(1).
PARITY_INIT = dict(initializer_range=0.2)

ROPES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 3.0},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 16},
    "longrope": {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": 8,
                 "short_factor": [1.0 + 0.1 * i for i in range(4)], "long_factor": [2.0 + 0.5 * i for i in range(4)]},
}


def left_padded_batch(vocab: int = 99, lengths=(7, 4, 5), pad: int = 0, seed: int = 0):
    """Odd lengths, left padding: ids [B, T] (pads = pad), mask [B, T] int64."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.full((len(lengths), t), pad, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    for b, n in enumerate(lengths):
        ids[b, t - n:] = rng.integers(3, vocab, n)
        mask[b, t - n:] = 1
    return ids, mask
