"""XLM (HF ``XLMModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    family.py    the family declared once (``FAMILY``): its encoder, each head (HF class, backbone prefix, init,
                 what it computes, its labels, HF's lengths / choices handling, the LM head's generation hooks),
                 input checks, partition rules; the public head functions (``xlm_with_lm_head``, ...) are
                 generated from it
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     the encoder, the params' init, each head's computation on the encoder's output (language
                 embeddings, SequenceSummary, the SQuAD beam head) and HF's mask-slot generation
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (Moses + BPE; needs the `xlm` extra)
Outside the package: conversion/xlm.py is the family's two-way HF name table (rules per head name), and
conversion/registry.py collects ``FAMILY``.
"""

from xlm_jax.config import XLMConfig
from xlm_jax.family import (FAMILY, HEADS, init_params, xlm_model, xlm_multiple_choice, xlm_question_answering,
                            xlm_question_answering_simple, xlm_sequence_classification, xlm_token_classification,
                            xlm_with_lm_head)
from xlm_jax.tokenizer import XLMTokenizer, build_xlm_vocab

__all__ = ["FAMILY", "HEADS", "XLMConfig", "XLMTokenizer", "build_xlm_vocab", "init_params", "xlm_model",
           "xlm_multiple_choice", "xlm_question_answering", "xlm_question_answering_simple",
           "xlm_sequence_classification", "xlm_token_classification", "xlm_with_lm_head"]
