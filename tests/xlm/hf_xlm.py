"""Tiny random transformers XLM checkpoints and inputs for tests (built locally; nothing from the Hub)."""

from __future__ import annotations

import numpy as np

from tests.factory import TinyCheckpoints

HF_CLASSES = {
    "model": "XLMModel",
    "with_lm_head": "XLMWithLMHeadModel",
    "sequence_classification": "XLMForSequenceClassification",
    "multiple_choice": "XLMForMultipleChoice",
    "token_classification": "XLMForTokenClassification",
    "question_answering_simple": "XLMForQuestionAnsweringSimple",
    "question_answering": "XLMForQuestionAnswering",
}
PAD = 2

# HF's XLMModelTester sizes (emb 32, 2 layers, 4 heads), three languages with their own embeddings (as
# xlm-mlm-xnli15 has fifteen), and HF's special ids (bos 0, eos 1, pad 2).
TINY = dict(vocab_size=99, emb_dim=32, n_layers=2, n_heads=4, n_langs=3, use_lang_emb=True, max_position_embeddings=64,
            dropout=0.1, attention_dropout=0.1, gelu_activation=True, sinusoidal_embeddings=False, causal=False,
            num_labels=3, summary_type="last", summary_use_proj=True, start_n_top=4, end_n_top=3,
            layer_norm_eps=1e-12, pad_token_id=PAD, bos_token_id=0, eos_token_id=1, lang_id=1)


TINY_CHECKPOINTS = TinyCheckpoints("XLMConfig", HF_CLASSES, TINY,
                                   head_defaults={"question_answering_simple": {"num_labels": 2}})
hf_config, hf_model = TINY_CHECKPOINTS.hf_config, TINY_CHECKPOINTS.hf_model

# For the parity tests: linear init std 0.2, not HF's 0.02, at which every attention probability is ~1/keys (a
# swapped query and key would go unseen); at 0.2 they are O(1).
PARITY_INIT = dict(init_std=0.2)

# Every config option real checkpoints use, one at a time on top of TINY.
VARIANTS = {
    "base": {},
    "causal": {"causal": True},  # xlm-clm-*: padding is not masked from the keys (HF)
    "sinusoidal": {"sinusoidal_embeddings": True},
    "one_language": {"n_langs": 1, "lang_id": 0},  # xlm-mlm-en-2048: no language table
    "no_lang_emb": {"use_lang_emb": False},  # xlm-mlm-17/100-1280: language ids are ignored
    "relu": {"gelu_activation": False},
}


def batch(lengths=(9, 6, 8), vocab: int = 99, n_langs: int = 3, seed: int = 0):
    """Right-padded inputs (XLM's convention): ids [B, T] (<s> ... </s>, pad 2), mask [B, T], langs [B, T]
    (one language per row, as a sentence has), all int64."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    ids = np.full((len(lengths), t), PAD, np.int64)
    mask = np.zeros((len(lengths), t), np.int64)
    langs = np.zeros((len(lengths), t), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = [0] + list(rng.integers(3, vocab, n - 2)) + [1]
        mask[b, :n] = 1
        langs[b] = b % n_langs
    return ids, mask, langs
