"""The LED family declared once: its encoder-decoder, its four heads, its input checks and partition rules."""

from __future__ import annotations

from common.family import Family, Generation, Head
from led_jax import model as M
from led_jax.config import LEDConfig
from led_jax.inputs import max_positions, validate_inputs
from led_jax.sharding import PARTITION_RULES
from led_jax.tokenizer import LEDTokenizer

# Every head's decoder reads shift_tokens_right(input_ids) when no decoder_input_ids are given; conditional
# generation's reads the shifted labels when they are given.
FROM_INPUT_IDS = M.DefaultDecoderInputs(from_labels=False)

GENERATION = Generation(init_cache=M.init_cache, cached_step=M.cached_step, reorder_cache=M.reorder_cache,
                        decoding_params=M.decoding_params, encoder_context=M.encoder_context,
                        slot_cache=True)

FAMILY = Family(
    name="led",
    config_class=LEDConfig,
    inputs=("input_ids", "attention_mask", "global_attention_mask", "decoder_input_ids", "decoder_attention_mask"),
    static_args=("max_num_global",),
    backbone=M.seq2seq,
    init_backbone=M.init_backbone,
    validate_inputs=validate_inputs,
    load_tokenizer=LEDTokenizer.from_pretrained,
    max_positions=max_positions,
    partition_rules=PARTITION_RULES,
    heads=(
        Head("LEDModel", "model", "", M.model_head, prepare=FROM_INPUT_IDS),
        Head("LEDForConditionalGeneration", "conditional_generation", "led.", M.conditional_generation_head,
             M.init_lm_head, inputs=("labels",), label_kind="token", label_classes=lambda config: config.vocab_size,
             prepare=M.DefaultDecoderInputs(from_labels=True), generation=GENERATION),
        # Removed from transformers 5.x; its 4.x checkpoints (and ours) still load and save.
        Head("LEDForSequenceClassification", "sequence_classification", "led.", M.sequence_classification_head,
             M.init_classifier, inputs=("labels",), label_kind="sequence", prepare=FROM_INPUT_IDS),
        Head("LEDForQuestionAnswering", "question_answering", "led.", M.question_answering_head, M.init_span_head,
             inputs=("start_positions", "end_positions"), prepare=FROM_INPUT_IDS),
    ),
)

HEADS = FAMILY.head_names
init_params = FAMILY.init_params
led_model = FAMILY.head_function("model")
led_conditional_generation = FAMILY.head_function("conditional_generation")
led_sequence_classification = FAMILY.head_function("sequence_classification")
led_question_answering = FAMILY.head_function("question_answering")
