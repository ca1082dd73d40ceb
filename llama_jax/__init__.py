"""Llama (HF ``LlamaModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    family.py    the family declared once (``FAMILY``): its decoder, each head (HF class, backbone prefix, init,
                 what it computes, its labels, its generation hooks), input checks, partition rules; the public
                 head functions (``llama_causal_lm``, ...) are generated from it
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     the decoder (rope, GQA, the KV cache for generation), the params' init, each head's computation
                 on the decoder's output, and the generation hooks (init_cache, cached_step, reorder_cache)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (tokenizer.json: byte-level BPE or SentencePiece-style), pretrain.py (the `jaxzoo train` job)
Outside the package: conversion/llama.py is the family's two-way HF name table (rules per head name), and
conversion/registry.py collects ``FAMILY``.
"""

from llama_jax.config import LlamaConfig
from llama_jax.family import (FAMILY, HEADS, init_params, llama_causal_lm, llama_model, llama_question_answering,
                              llama_sequence_classification, llama_token_classification)
from llama_jax.tokenizer import LlamaTokenizer

__all__ = ["FAMILY", "HEADS", "LlamaConfig", "LlamaTokenizer", "init_params", "llama_causal_lm", "llama_model",
           "llama_question_answering", "llama_sequence_classification", "llama_token_classification"]
