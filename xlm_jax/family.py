"""The XLM family declared once: its encoder, its seven heads, its input checks, partition rules and the LM
head's generation hooks.

``lengths`` is a head input (not the family's), because XLMForMultipleChoice has none (HF drops it) and the
family's inputs come first in every head function: so each function keeps HF's argument order. The heads that
take it turn it into the padding mask in ``prepare`` (``lengths_as_mask``), which is all the encoder does with it.
"""

from __future__ import annotations

from common.family import Family, Generation, Head
from xlm_jax import model as M
from xlm_jax.config import XLMConfig
from xlm_jax.inputs import max_positions, validate_inputs
from xlm_jax.sharding import PARTITION_RULES
from xlm_jax.tokenizer import XLMTokenizer

PREFIX = "transformer."
LABELS = ("lengths", "labels")
SPAN = ("lengths", "start_positions", "end_positions")

FAMILY = Family(
    name="xlm",
    config_class=XLMConfig,
    inputs=("input_ids", "attention_mask", "langs", "token_type_ids", "position_ids"),
    backbone=M.encoder,
    init_backbone=M.init_backbone,
    validate_inputs=validate_inputs,
    load_tokenizer=XLMTokenizer.from_pretrained,
    max_positions=max_positions,
    partition_rules=PARTITION_RULES,
    heads=(
        Head("XLMModel", "model", "", M.model_head, inputs=("lengths",), prepare=M.lengths_as_mask),
        Head("XLMWithLMHeadModel", "with_lm_head", PREFIX, M.lm_head, M.init_lm_head, inputs=LABELS,
             label_kind="token", label_classes=lambda config: config.vocab_size, prepare=M.lengths_as_mask,
             generation=Generation(M.init_cache, M.cached_step, M.reorder_cache)),
        Head("XLMForSequenceClassification", "sequence_classification", PREFIX, M.sequence_classification_head,
             M.init_sequence_summary, inputs=LABELS, label_kind="sequence", prepare=M.lengths_as_mask,
             padding=M.summary_padding),
        Head("XLMForMultipleChoice", "multiple_choice", PREFIX, M.multiple_choice_head, M.init_choice_head,
             inputs=("labels",), label_kind="choice", prepare=M.choices_as_rows),
        Head("XLMForTokenClassification", "token_classification", PREFIX, M.token_classification_head,
             M.init_token_head, inputs=LABELS, label_kind="token", prepare=M.lengths_as_mask),
        Head("XLMForQuestionAnsweringSimple", "question_answering_simple", PREFIX, M.question_answering_simple_head,
             M.init_span_head, inputs=SPAN, prepare=M.lengths_as_mask),
        Head("XLMForQuestionAnswering", "question_answering", PREFIX, M.question_answering_head, M.init_squad_head,
             inputs=SPAN + ("is_impossible", "cls_index", "p_mask"), prepare=M.lengths_as_mask),
    ),
)

HEADS = FAMILY.head_names
init_params = FAMILY.init_params
xlm_model = FAMILY.head_function("model")
xlm_with_lm_head = FAMILY.head_function("with_lm_head")
xlm_sequence_classification = FAMILY.head_function("sequence_classification")
xlm_multiple_choice = FAMILY.head_function("multiple_choice")
xlm_token_classification = FAMILY.head_function("token_classification")
xlm_question_answering_simple = FAMILY.head_function("question_answering_simple")
xlm_question_answering = FAMILY.head_function("question_answering")
