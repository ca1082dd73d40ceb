"""LED (HF ``LEDModel`` and its heads) as pure JAX functions over explicit param pytrees."""

from led_jax.config import LEDConfig
from led_jax.model import (HEADS, init_params, led_conditional_generation, led_model, led_question_answering,
                           led_sequence_classification, shift_tokens_right)
from led_jax.tokenizer import LEDTokenizer

__all__ = ["HEADS", "LEDConfig", "LEDTokenizer", "init_params", "led_conditional_generation", "led_model", "led_question_answering",
           "led_sequence_classification", "shift_tokens_right"]
