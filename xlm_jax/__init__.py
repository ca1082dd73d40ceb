"""XLM (HF ``XLMModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     ``init_params`` and one pure function per HF head (language embeddings, SequenceSummary, the SQuAD beam head, HF's mask-slot generation)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (Moses + BPE; needs the `xlm` extra)
Outside the package: conversion/xlm.py is the family's two-way HF name table, and one block of
conversion/registry.py declares its heads (HF class, head function, backbone prefix, generation hooks).
"""

from xlm_jax.config import XLMConfig
from xlm_jax.model import (init_params, xlm_model, xlm_multiple_choice, xlm_question_answering,
                           xlm_question_answering_simple, xlm_sequence_classification, xlm_token_classification,
                           xlm_with_lm_head)
from xlm_jax.tokenizer import XLMTokenizer, build_xlm_vocab

__all__ = ["XLMConfig", "XLMTokenizer", "build_xlm_vocab", "init_params", "xlm_model", "xlm_multiple_choice",
           "xlm_question_answering", "xlm_question_answering_simple", "xlm_sequence_classification",
           "xlm_token_classification", "xlm_with_lm_head"]
