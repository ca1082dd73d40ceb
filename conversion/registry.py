"""ARCHITECTURES: every HF head class of the zoo -> its family, head function, init and name table.

The registry only collects: each family package declares its ``FAMILY`` (common.family) and conversion/ holds
its ``TABLE`` (conversion.mapping.NameTable); a table must name rules for exactly the family's heads.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from common.family import Family, HeadSpec
from conversion import longformer as longformer_table
from conversion.mapping import NameTable
from longformer_jax.family import FAMILY as LONGFORMER


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


def architectures(family: Family, table: NameTable) -> dict[str, Architecture]:
    """One Architecture per head of ``family``, its names from ``table``."""
    if set(table.heads) != set(family.head_names):
        raise ValueError(f"{family.name}: the name table's heads {sorted(table.heads)} differ from the family's "
                         f"{sorted(family.head_names)}")
    return {h.hf_class: Architecture(family.spec(h.name), family.name, family.config_class, family.init_params,
                                     table.rules, table.ignored, h.prefix)
            for h in family.heads}


# ----------------------------------------------------------------------- legacy (until every family declares one)
from common.model import STATIC_ARGS  # noqa: E402,F401


@dataclasses.dataclass(frozen=True)
class _LegacySpec:
    hf_class: str
    head: str
    forward: Callable
    _validate: Callable
    generation: object = None
    max_positions: Callable | None = None
    static_args: tuple = ()
    partition_rules: tuple = ()

    def validate_inputs(self, config, inputs):
        return self._validate(config, self.head, inputs)


def HeadSpec_(hf_class, head, forward, validate, init_cache=None, cached_step=None, reorder_cache=None,  # noqa: N802
              encoder_context=None, decoding_params=None, max_positions=None, static_args=(), partition_rules=()):
    from common.family import Generation
    gen = None if cached_step is None else Generation(init_cache, cached_step, reorder_cache, decoding_params,
                                                      encoder_context)
    return _LegacySpec(hf_class, head, forward, validate, gen, max_positions,
                       static_args + (("logits_to_keep",) if head == "causal_lm" else ()), partition_rules)

from conversion import llama as llama_table  # noqa: E402
from llama_jax import inputs as llama_inputs  # noqa: E402
from llama_jax import model as llama  # noqa: E402
from llama_jax.config import LlamaConfig  # noqa: E402
from llama_jax.sharding import PARTITION_RULES as LLAMA_RULES  # noqa: E402


def _llama(hf_class: str, head: str, forward, prefix: str, generative: bool = False) -> Architecture:
    spec = HeadSpec_(hf_class, head, forward, llama_inputs.validate_inputs,
                    init_cache=llama.init_cache if generative else None,
                    cached_step=llama.cached_step if generative else None,
                    reorder_cache=llama.reorder_cache if generative else None,
                    max_positions=llama_inputs.max_positions, partition_rules=LLAMA_RULES)
    return Architecture(spec, "llama", LlamaConfig, llama.init_params, llama_table.rules, llama_table.ignored, prefix)


ARCHITECTURES: dict[str, Architecture] = {}


def _declared(package: str, table) -> bool:
    """Transitional: a family whose name table has a TABLE is collected from its package's FAMILY."""
    import importlib
    if not hasattr(table, "TABLE"):
        return False
    ARCHITECTURES.update(architectures(importlib.import_module(f"{package}.family").FAMILY, table.TABLE))
    return True


ARCHITECTURES.update({} if _declared("llama_jax", llama_table) else {
    a.spec.hf_class: a
    for a in (
        _llama("LlamaModel", "model", llama.llama_model, ""),
        _llama("LlamaForCausalLM", "causal_lm", llama.llama_causal_lm, "model.", generative=True),
        _llama("LlamaForSequenceClassification", "sequence_classification", llama.llama_sequence_classification, "model."),
        _llama("LlamaForTokenClassification", "token_classification", llama.llama_token_classification, "model."),
        # HF keeps the old "transformer." prefix for this head.
        _llama("LlamaForQuestionAnswering", "question_answering", llama.llama_question_answering, "transformer."),
    )
})


ARCHITECTURES.update(architectures(LONGFORMER, longformer_table.TABLE))


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
    spec = HeadSpec_(hf_class, head, forward, led_inputs.validate_inputs, max_positions=led_inputs.max_positions,
                    static_args=("max_num_global",), partition_rules=LED_RULES, **generation)
    return Architecture(spec, "led", LEDConfig, led.init_params, led_table.rules, led_table.ignored, prefix)


ARCHITECTURES.update({} if _declared("led_jax", led_table) else {
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
    spec = HeadSpec_(hf_class, head, forward, lilt_inputs.validate_inputs, max_positions=lilt_inputs.max_positions,
                    partition_rules=LILT_RULES)
    return Architecture(spec, "lilt", LiltConfig, lilt.init_params, lilt_table.rules, lilt_table.ignored, prefix)


ARCHITECTURES.update({} if _declared("lilt_jax", lilt_table) else {
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
    spec = HeadSpec_(hf_class, head, forward, xlm_inputs.validate_inputs, max_positions=xlm_inputs.max_positions,
                    partition_rules=XLM_RULES, **generation)
    return Architecture(spec, "xlm", XLMConfig, xlm.init_params, xlm_table.rules, xlm_table.ignored, prefix)


ARCHITECTURES.update({} if _declared("xlm_jax", xlm_table) else {
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
