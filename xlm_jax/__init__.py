"""XLM (Lample & Conneau 2019, cross-lingual language model pre-training) as pure JAX functions."""

from xlm_jax.config import XLMConfig
from xlm_jax.model import (init_params, xlm_model, xlm_multiple_choice, xlm_question_answering,
                           xlm_question_answering_simple, xlm_sequence_classification, xlm_token_classification,
                           xlm_with_lm_head)
from xlm_jax.tokenizer import XLMTokenizer, build_xlm_vocab

__all__ = ["XLMConfig", "XLMTokenizer", "build_xlm_vocab", "init_params", "xlm_model", "xlm_multiple_choice",
           "xlm_question_answering", "xlm_question_answering_simple", "xlm_sequence_classification",
           "xlm_token_classification", "xlm_with_lm_head"]
