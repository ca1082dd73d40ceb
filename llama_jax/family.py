"""The Llama family declared once: its decoder, its five heads, its input checks and partition rules."""

from __future__ import annotations

from common.family import Family, Generation, Head
from llama_jax import model as M
from llama_jax.config import LlamaConfig
from llama_jax.inputs import max_positions, validate_inputs
from llama_jax.sharding import PARTITION_RULES
from llama_jax.tokenizer import LlamaTokenizer

SPAN = ("start_positions", "end_positions")

FAMILY = Family(
    name="llama",
    config_class=LlamaConfig,
    inputs=("input_ids", "attention_mask", "position_ids"),
    backbone=M.backbone,
    init_backbone=M.init_backbone,
    validate_inputs=validate_inputs,
    load_tokenizer=LlamaTokenizer.from_pretrained,
    padding_side="left",
    max_positions=max_positions,
    partition_rules=PARTITION_RULES,
    heads=(
        Head("LlamaModel", "model", "", M.model_head),
        Head("LlamaForCausalLM", "causal_lm", "model.", M.causal_lm_head, M.init_lm_head, inputs=("labels",),
             label_kind="token", label_classes=lambda config: config.vocab_size,
             static_args=(("logits_to_keep", 0),),
             generation=Generation(M.init_cache, M.cached_step, M.reorder_cache, decoding_params=M.decoding_params,
                                   slot_cache=True)),
        Head("LlamaForSequenceClassification", "sequence_classification", "model.", M.sequence_classification_head,
             M.init_sequence_score, inputs=("labels",), label_kind="sequence"),
        Head("LlamaForTokenClassification", "token_classification", "model.", M.token_classification_head,
             M.init_token_score, inputs=("labels",), label_kind="token"),
        # HF keeps the old "transformer." prefix for this head.
        Head("LlamaForQuestionAnswering", "question_answering", "transformer.", M.question_answering_head,
             M.init_span_head, inputs=SPAN),
    ),
)

HEADS = FAMILY.head_names
init_params = FAMILY.init_params
llama_model = FAMILY.head_function("model")
llama_causal_lm = FAMILY.head_function("causal_lm")
llama_sequence_classification = FAMILY.head_function("sequence_classification")
llama_token_classification = FAMILY.head_function("token_classification")
llama_question_answering = FAMILY.head_function("question_answering")
