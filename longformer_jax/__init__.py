"""Longformer (HF ``LongformerModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    family.py    the family declared once (``FAMILY``): its encoder, each head (HF class, backbone prefix, init,
                 what it computes, its labels, HF's default global-attention mask), input checks, partition
                 rules; the public head functions (``longformer_masked_lm``, ...) are generated from it
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     the encoder, the params' init and each head's computation on the encoder's output (the layer
                 stack is common/longformer_stack.py)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (RoBERTa byte-level BPE)
Outside the package: conversion/longformer.py is the family's two-way HF name table (rules per head name), and
conversion/registry.py collects ``FAMILY``.
"""

from longformer_jax.config import LongformerConfig
from longformer_jax.family import (FAMILY, HEADS, init_params, longformer_masked_lm, longformer_model,
                                   longformer_multiple_choice, longformer_question_answering,
                                   longformer_sequence_classification, longformer_token_classification)
from longformer_jax.tokenizer import LongformerTokenizer

__all__ = ["FAMILY", "HEADS", "LongformerConfig", "LongformerTokenizer", "init_params", "longformer_masked_lm",
           "longformer_model", "longformer_multiple_choice", "longformer_question_answering",
           "longformer_sequence_classification", "longformer_token_classification"]
