"""LiLT (HF ``LiltModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    family.py    the family declared once (``FAMILY``): its encoder, each head (HF class, backbone prefix, init,
                 what it computes, its labels), input checks, partition rules; the public head functions
                 (``lilt_token_classification``, ...) are generated from it
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     the encoder (the text and layout streams with BiACM attention), the params' init and each
                 head's computation on the encoder's output
    inputs.py    the checks of every head's inputs at the API boundary (boxes included)
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (LayoutLMv3 / LayoutXLM document tokenizers over words + boxes)
Outside the package: conversion/lilt.py is the family's two-way HF name table (rules per head name), and
conversion/registry.py collects ``FAMILY``.
"""

from lilt_jax.config import LiltConfig
from lilt_jax.family import (FAMILY, HEADS, init_params, lilt_model, lilt_question_answering,
                             lilt_sequence_classification, lilt_token_classification)
from lilt_jax.tokenizer import LayoutXLMTokenizer, LiltTokenizer, load_tokenizer, normalize_box

__all__ = ["FAMILY", "HEADS", "LayoutXLMTokenizer", "LiltConfig", "LiltTokenizer", "init_params", "lilt_model",
           "lilt_question_answering", "lilt_sequence_classification", "lilt_token_classification", "load_tokenizer",
           "normalize_box"]
