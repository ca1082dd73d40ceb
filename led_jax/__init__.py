"""LED (HF ``LEDModel`` and its heads) as pure JAX functions over explicit param pytrees.

The family's files:
    family.py    the family declared once (``FAMILY``): its encoder-decoder, each head (HF class, backbone prefix,
                 init, what it computes, its labels, HF's default decoder inputs, generation hooks), input
                 checks, partition rules; the public head functions (``led_conditional_generation``, ...) are
                 generated from it
    config.py    the frozen config (HF config.json fields; ``attention_sites`` lists its kinds of attention)
    model.py     the encoder-decoder (the encoder is common/longformer_stack.py; the BART decoder with its KV cache
                 and cross-attention keys), the params' init, each head's computation on the backbone's output,
                 and the generation hooks
    inputs.py    the checks of every head's inputs at the API boundary
    sharding.py  partition rules (a matrix no rule matches is an error)
    tokenizer.py (RoBERTa byte-level BPE)
Outside the package: conversion/led.py is the family's two-way HF name table (rules per head name), and
conversion/registry.py collects ``FAMILY``.
"""

from led_jax.config import LEDConfig
from led_jax.family import (FAMILY, HEADS, init_params, led_conditional_generation, led_model,
                            led_question_answering, led_sequence_classification)
from led_jax.model import shift_tokens_right
from led_jax.tokenizer import LEDTokenizer

__all__ = ["FAMILY", "HEADS", "LEDConfig", "LEDTokenizer", "init_params", "led_conditional_generation", "led_model",
           "led_question_answering", "led_sequence_classification", "shift_tokens_right"]
