"""LED (HF ``LEDModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     ``init_params`` and one pure function per HF head (the encoder is common/longformer_stack.py; the BART decoder with its KV cache and cross-attention keys)
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (RoBERTa byte-level BPE)
Outside the package: conversion/led.py is the family's two-way HF name table, and one block of
conversion/registry.py declares its heads (HF class, head function, backbone prefix, generation hooks).
"""

from led_jax.config import LEDConfig
from led_jax.model import (HEADS, init_params, led_conditional_generation, led_model, led_question_answering,
                           led_sequence_classification, shift_tokens_right)
from led_jax.tokenizer import LEDTokenizer

__all__ = ["HEADS", "LEDConfig", "LEDTokenizer", "init_params", "led_conditional_generation", "led_model", "led_question_answering",
           "led_sequence_classification", "shift_tokens_right"]
