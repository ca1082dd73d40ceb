"""LiLT (HF ``LiltModel`` and its heads) as pure JAX functions over explicit param pytrees."""

from lilt_jax.config import LiltConfig
from lilt_jax.model import (HEADS, init_params, lilt_model, lilt_question_answering, lilt_sequence_classification,
                            lilt_token_classification)

__all__ = ["HEADS", "LiltConfig", "init_params", "lilt_model", "lilt_question_answering",
           "lilt_sequence_classification", "lilt_token_classification"]
