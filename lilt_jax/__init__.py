"""LiLT (HF ``LiltModel`` and its heads) as pure JAX functions over explicit param pytrees, and its
words-and-boxes tokenizers."""

from lilt_jax.config import LiltConfig
from lilt_jax.model import (HEADS, init_params, lilt_model, lilt_question_answering, lilt_sequence_classification,
                            lilt_token_classification)
from lilt_jax.tokenizer import LayoutXLMTokenizer, LiltTokenizer, load_tokenizer, normalize_box

__all__ = ["HEADS", "LayoutXLMTokenizer", "LiltConfig", "LiltTokenizer", "init_params", "lilt_model",
           "lilt_question_answering", "lilt_sequence_classification", "lilt_token_classification", "load_tokenizer",
           "normalize_box"]
