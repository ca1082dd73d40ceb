"""Longformer (HF ``LongformerModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     ``init_params`` and one pure function per HF head (HF's default global-attention masks per head; the layer stack is common/longformer_stack.py)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (RoBERTa byte-level BPE)
Outside the package: conversion/longformer.py is the family's two-way HF name table, and one block of
conversion/registry.py declares its heads (HF class, head function, backbone prefix, generation hooks).
"""

from longformer_jax.config import LongformerConfig
from longformer_jax.model import (HEADS, init_params, longformer_masked_lm, longformer_model,
                                  longformer_multiple_choice, longformer_question_answering,
                                  longformer_sequence_classification, longformer_token_classification)
from longformer_jax.tokenizer import LongformerTokenizer

__all__ = ["HEADS", "LongformerConfig", "LongformerTokenizer", "init_params", "longformer_masked_lm",
           "longformer_model", "longformer_multiple_choice", "longformer_question_answering",
           "longformer_sequence_classification", "longformer_token_classification"]
