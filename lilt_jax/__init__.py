"""LiLT (HF ``LiltModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     ``init_params`` and one pure function per HF head (the text and layout streams with BiACM attention; box checks)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (LayoutLMv3 / LayoutXLM document tokenizers over words + boxes)
Outside the package: conversion/lilt.py is the family's two-way HF name table, and one block of
conversion/registry.py declares its heads (HF class, head function, backbone prefix, generation hooks).
"""

from lilt_jax.config import LiltConfig
from lilt_jax.model import (HEADS, init_params, lilt_model, lilt_question_answering, lilt_sequence_classification,
                            lilt_token_classification)
from lilt_jax.tokenizer import LayoutXLMTokenizer, LiltTokenizer, load_tokenizer, normalize_box

__all__ = ["HEADS", "LayoutXLMTokenizer", "LiltConfig", "LiltTokenizer", "init_params", "lilt_model",
           "lilt_question_answering", "lilt_sequence_classification", "lilt_token_classification", "load_tokenizer",
           "normalize_box"]
