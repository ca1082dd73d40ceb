"""Longformer (HF ``LongformerModel`` and its heads) as pure JAX functions over explicit param pytrees."""

from longformer_jax.config import LongformerConfig
from longformer_jax.model import (HEADS, init_params, longformer_masked_lm, longformer_model,
                                  longformer_multiple_choice, longformer_question_answering,
                                  longformer_sequence_classification, longformer_token_classification)
from longformer_jax.tokenizer import LongformerTokenizer

__all__ = ["HEADS", "LongformerConfig", "LongformerTokenizer", "init_params", "longformer_masked_lm",
           "longformer_model", "longformer_multiple_choice", "longformer_question_answering",
           "longformer_sequence_classification", "longformer_token_classification"]
