"""The LiLT family declared once: its two-stream encoder, its four heads, its input checks and partition rules."""

from __future__ import annotations

from common.family import Family, Head
from lilt_jax import model as M
from lilt_jax.config import LiltConfig
from lilt_jax.inputs import max_positions, validate_inputs
from lilt_jax.sharding import PARTITION_RULES
from lilt_jax.tokenizer import load_tokenizer

FAMILY = Family(
    name="lilt",
    config_class=LiltConfig,
    inputs=("input_ids", "bbox", "attention_mask", "token_type_ids", "position_ids"),
    backbone=M.encoder,
    init_backbone=M.init_backbone,
    validate_inputs=validate_inputs,
    load_tokenizer=load_tokenizer,
    max_positions=max_positions,
    partition_rules=PARTITION_RULES,
    heads=(
        Head("LiltModel", "model", "", M.model_head, M.init_pooler),
        Head("LiltForSequenceClassification", "sequence_classification", "lilt.", M.sequence_classification_head,
             M.init_classifier, inputs=("labels",), label_kind="sequence"),
        Head("LiltForTokenClassification", "token_classification", "lilt.", M.token_classification_head,
             M.init_token_head, inputs=("labels",), label_kind="token"),
        Head("LiltForQuestionAnswering", "question_answering", "lilt.", M.question_answering_head,
             M.init_span_head, inputs=("start_positions", "end_positions")),
    ),
)

HEADS = FAMILY.head_names
init_params = FAMILY.init_params
lilt_model = FAMILY.head_function("model")
lilt_sequence_classification = FAMILY.head_function("sequence_classification")
lilt_token_classification = FAMILY.head_function("token_classification")
lilt_question_answering = FAMILY.head_function("question_answering")
