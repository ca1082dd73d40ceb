"""ARCHITECTURES: every HF head class of the zoo -> its family, head function, init and name table."""

from __future__ import annotations

import dataclasses
from typing import Callable

from common.model import HeadSpec
from conversion import llama as llama_table
from llama_jax import inputs as llama_inputs
from llama_jax import model as llama
from llama_jax.config import LlamaConfig
from llama_jax.sharding import PARTITION_RULES as LLAMA_RULES


@dataclasses.dataclass(frozen=True)
class Architecture:
    spec: HeadSpec
    family: str
    config_class: type
    init_params: Callable  # (config, key, dtype, head) -> params
    rules: Callable  # (config, head) -> list[Rule]
    ignored: Callable  # (config, head) -> regexes of HF keys to drop on load
    backbone_prefix: str  # prefix of the backbone's keys in this head's state_dict

    @property
    def head(self) -> str:
        return self.spec.head

    @property
    def partition_rules(self) -> tuple:
        """(regex over param path, PartitionSpec) pairs, see common.sharding; carried by the HeadSpec (so by
        every Model)."""
        return self.spec.partition_rules


def _llama(hf_class: str, head: str, forward, prefix: str, generative: bool = False) -> Architecture:
    spec = HeadSpec(hf_class, head, forward, llama_inputs.validate_inputs,
                    init_cache=llama.init_cache if generative else None,
                    cached_step=llama.cached_step if generative else None,
                    reorder_cache=llama.reorder_cache if generative else None,
                    max_positions=llama_inputs.max_positions, partition_rules=LLAMA_RULES)
    return Architecture(spec, "llama", LlamaConfig, llama.init_params, llama_table.rules, llama_table.ignored, prefix)


ARCHITECTURES: dict[str, Architecture] = {
    a.spec.hf_class: a
    for a in (
        _llama("LlamaModel", "model", llama.llama_model, ""),
        _llama("LlamaForCausalLM", "causal_lm", llama.llama_causal_lm, "model.", generative=True),
        _llama("LlamaForSequenceClassification", "sequence_classification", llama.llama_sequence_classification, "model."),
        _llama("LlamaForTokenClassification", "token_classification", llama.llama_token_classification, "model."),
        # HF keeps the old "transformer." prefix for this head.
        _llama("LlamaForQuestionAnswering", "question_answering", llama.llama_question_answering, "transformer."),
    )
}


# ------------------------------------------------------------------------------------ Longformer
from conversion import longformer as longformer_table  # noqa: E402
from longformer_jax import inputs as longformer_inputs  # noqa: E402
from longformer_jax import model as longformer  # noqa: E402
from longformer_jax.config import LongformerConfig  # noqa: E402
from longformer_jax.sharding import PARTITION_RULES as LONGFORMER_RULES  # noqa: E402


def _longformer(hf_class: str, head: str, forward, prefix: str) -> Architecture:
    spec = HeadSpec(hf_class, head, forward, longformer_inputs.validate_inputs,
                    max_positions=longformer_inputs.max_positions, static_args=("max_num_global",),
                    partition_rules=LONGFORMER_RULES)
    return Architecture(spec, "longformer", LongformerConfig, longformer.init_params, longformer_table.rules,
                        longformer_table.ignored, prefix)


ARCHITECTURES.update({
    a.spec.hf_class: a
    for a in (
        _longformer("LongformerModel", "model", longformer.longformer_model, ""),
        _longformer("LongformerForMaskedLM", "masked_lm", longformer.longformer_masked_lm, "longformer."),
        _longformer("LongformerForSequenceClassification", "sequence_classification",
                    longformer.longformer_sequence_classification, "longformer."),
        _longformer("LongformerForMultipleChoice", "multiple_choice", longformer.longformer_multiple_choice,
                    "longformer."),
        _longformer("LongformerForTokenClassification", "token_classification",
                    longformer.longformer_token_classification, "longformer."),
        _longformer("LongformerForQuestionAnswering", "question_answering",
                    longformer.longformer_question_answering, "longformer."),
    )
})


# ------------------------------------------------------------------------------------------- LED
from conversion import led as led_table  # noqa: E402
from led_jax import inputs as led_inputs  # noqa: E402
from led_jax import model as led  # noqa: E402
from led_jax.config import LEDConfig  # noqa: E402
from led_jax.sharding import PARTITION_RULES as LED_RULES  # noqa: E402


def _led(hf_class: str, head: str, forward, prefix: str) -> Architecture:
    generation = dict(init_cache=led.init_cache, cached_step=led.cached_step, reorder_cache=led.reorder_cache,
                      encoder_context=led.encoder_context, decoding_params=led.decoding_params) \
        if head == "conditional_generation" else {}
    spec = HeadSpec(hf_class, head, forward, led_inputs.validate_inputs, max_positions=led_inputs.max_positions,
                    static_args=("max_num_global",), partition_rules=LED_RULES, **generation)
    return Architecture(spec, "led", LEDConfig, led.init_params, led_table.rules, led_table.ignored, prefix)


ARCHITECTURES.update({
    a.spec.hf_class: a
    for a in (
        _led("LEDModel", "model", led.led_model, ""),
        _led("LEDForConditionalGeneration", "conditional_generation", led.led_conditional_generation, "led."),
        # Removed from transformers 5.x; its 4.x checkpoints (and ours) still load and save.
        _led("LEDForSequenceClassification", "sequence_classification", led.led_sequence_classification, "led."),
        _led("LEDForQuestionAnswering", "question_answering", led.led_question_answering, "led."),
    )
})


# ------------------------------------------------------------------------------------------- LiLT
from conversion import lilt as lilt_table  # noqa: E402
from lilt_jax import inputs as lilt_inputs  # noqa: E402
from lilt_jax import model as lilt  # noqa: E402
from lilt_jax.config import LiltConfig  # noqa: E402
from lilt_jax.sharding import PARTITION_RULES as LILT_RULES  # noqa: E402


def _lilt(hf_class: str, head: str, forward, prefix: str) -> Architecture:
    spec = HeadSpec(hf_class, head, forward, lilt_inputs.validate_inputs, max_positions=lilt_inputs.max_positions,
                    partition_rules=LILT_RULES)
    return Architecture(spec, "lilt", LiltConfig, lilt.init_params, lilt_table.rules, lilt_table.ignored, prefix)


ARCHITECTURES.update({
    a.spec.hf_class: a
    for a in (
        _lilt("LiltModel", "model", lilt.lilt_model, ""),
        _lilt("LiltForSequenceClassification", "sequence_classification", lilt.lilt_sequence_classification, "lilt."),
        _lilt("LiltForTokenClassification", "token_classification", lilt.lilt_token_classification, "lilt."),
        _lilt("LiltForQuestionAnswering", "question_answering", lilt.lilt_question_answering, "lilt."),
    )
})


# ------------------------------------------------------------------------------------------- XLM
from conversion import xlm as xlm_table  # noqa: E402
from xlm_jax import inputs as xlm_inputs  # noqa: E402
from xlm_jax import model as xlm  # noqa: E402
from xlm_jax.config import XLMConfig  # noqa: E402
from xlm_jax.sharding import PARTITION_RULES as XLM_RULES  # noqa: E402


def _xlm(hf_class: str, head: str, forward, prefix: str) -> Architecture:
    generation = dict(init_cache=xlm.init_cache, cached_step=xlm.cached_step, reorder_cache=xlm.reorder_cache) \
        if head == "with_lm_head" else {}
    spec = HeadSpec(hf_class, head, forward, xlm_inputs.validate_inputs, max_positions=xlm_inputs.max_positions,
                    partition_rules=XLM_RULES, **generation)
    return Architecture(spec, "xlm", XLMConfig, xlm.init_params, xlm_table.rules, xlm_table.ignored, prefix)


ARCHITECTURES.update({
    a.spec.hf_class: a
    for a in (
        _xlm("XLMModel", "model", xlm.xlm_model, ""),
        _xlm("XLMWithLMHeadModel", "with_lm_head", xlm.xlm_with_lm_head, "transformer."),
        _xlm("XLMForSequenceClassification", "sequence_classification", xlm.xlm_sequence_classification,
             "transformer."),
        _xlm("XLMForMultipleChoice", "multiple_choice", xlm.xlm_multiple_choice, "transformer."),
        _xlm("XLMForTokenClassification", "token_classification", xlm.xlm_token_classification, "transformer."),
        _xlm("XLMForQuestionAnsweringSimple", "question_answering_simple", xlm.xlm_question_answering_simple,
             "transformer."),
        _xlm("XLMForQuestionAnswering", "question_answering", xlm.xlm_question_answering, "transformer."),
    )
})
