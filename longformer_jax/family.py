"""The Longformer family declared once: its encoder, its six heads, its input checks and partition rules."""

from __future__ import annotations

from common.family import Family, Head
from longformer_jax import model as M
from longformer_jax.config import LongformerConfig
from longformer_jax.inputs import max_positions, validate_inputs
from longformer_jax.sharding import PARTITION_RULES
from longformer_jax.tokenizer import LongformerTokenizer

SPAN = ("start_positions", "end_positions")

FAMILY = Family(
    name="longformer",
    config_class=LongformerConfig,
    inputs=("input_ids", "attention_mask", "global_attention_mask", "token_type_ids", "position_ids"),
    static_args=("max_num_global",),
    backbone=M.encoder,
    init_backbone=M.init_backbone,
    validate_inputs=validate_inputs,
    load_tokenizer=LongformerTokenizer.from_pretrained,
    max_positions=max_positions,
    partition_rules=PARTITION_RULES,
    heads=(
        Head("LongformerModel", "model", "", M.model_head, M.init_pooler),
        Head("LongformerForMaskedLM", "masked_lm", "longformer.", M.masked_lm_head, M.init_lm_head,
             inputs=("labels",), label_kind="token", label_classes=lambda config: config.vocab_size),
        Head("LongformerForSequenceClassification", "sequence_classification", "longformer.",
             M.sequence_classification_head, M.init_classifier, inputs=("labels",), label_kind="sequence",
             prepare=M.DefaultGlobal(M.first_token_global, from_question=False)),
        Head("LongformerForMultipleChoice", "multiple_choice", "longformer.", M.multiple_choice_head,
             M.init_choice_head, inputs=("labels",), label_kind="choice",
             prepare=M.DefaultGlobal(M.answer_global, from_question=True, choices=True)),
        Head("LongformerForTokenClassification", "token_classification", "longformer.",
             M.token_classification_head, M.init_token_head, inputs=("labels",), label_kind="token"),
        Head("LongformerForQuestionAnswering", "question_answering", "longformer.", M.question_answering_head,
             M.init_span_head, inputs=SPAN, prepare=M.DefaultGlobal(M.question_global, from_question=True)),
    ),
)

HEADS = FAMILY.head_names
init_params = FAMILY.init_params
longformer_model = FAMILY.head_function("model")
longformer_masked_lm = FAMILY.head_function("masked_lm")
longformer_sequence_classification = FAMILY.head_function("sequence_classification")
longformer_multiple_choice = FAMILY.head_function("multiple_choice")
longformer_token_classification = FAMILY.head_function("token_classification")
longformer_question_answering = FAMILY.head_function("question_answering")
