"""XLM <-> HF name table. Backbone prefix: "transformer." in every head, none in XLMModel.

XLM keeps its layers in parallel ModuleLists (``attentions.{i}``, ``layer_norm1.{i}``, ``ffns.{i}``,
``layer_norm2.{i}``), not one module per layer. The LM head's weight is tied to the word embedding and saved
without it.
"""

from __future__ import annotations

from conversion.mapping import NameTable, Rule, dense_rules, head_linear, layer_norm_rules, no_rules
from xlm_jax.config import XLMConfig

IGNORED = (r"(transformer\.)?position_ids",)  # a buffer old files carry


def backbone(config: XLMConfig) -> list[Rule]:
    out = [Rule("embeddings.weight", ("embeddings", "embedding")),
           Rule("position_embeddings.weight", ("position_embeddings", "embedding"))]
    if config.has_lang_embeddings:
        out.append(Rule("lang_embeddings.weight", ("lang_embeddings", "embedding")))
    out += layer_norm_rules("layer_norm_emb", ("layer_norm_emb",))
    for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
        out += dense_rules(f"attentions.{{i}}.{name}", ("layers", "attn", name), bias=True)
    out += layer_norm_rules("layer_norm1.{i}", ("layers", "layer_norm1"))
    for name in ("lin1", "lin2"):
        out += dense_rules(f"ffns.{{i}}.{name}", ("layers", "ffn", name), bias=True)
    out += layer_norm_rules("layer_norm2.{i}", ("layers", "layer_norm2"))
    return out


def lm_head(config: XLMConfig) -> list[Rule]:
    out = [Rule("pred_layer.proj.bias", ("pred_layer", "bias"), "none", on_backbone=False)]
    if not config.tie_word_embeddings:
        out.append(Rule("pred_layer.proj.weight", ("pred_layer", "weight"), "none", on_backbone=False))
    return out


def sequence_summary(config: XLMConfig) -> list[Rule]:
    if not config.summary_use_proj:
        return []
    return dense_rules("sequence_summary.summary", ("sequence_summary", "summary"), bias=True, on_backbone=False)


def squad_head(config: XLMConfig) -> list[Rule]:
    qa = ("qa_outputs",)
    out = dense_rules("qa_outputs.start_logits.dense", qa + ("start_logits", "dense"), bias=True, on_backbone=False)
    for name in ("dense_0", "dense_1"):
        out += dense_rules(f"qa_outputs.end_logits.{name}", qa + ("end_logits", name), bias=True, on_backbone=False)
    out += layer_norm_rules("qa_outputs.end_logits.LayerNorm", qa + ("end_logits", "layer_norm"), on_backbone=False)
    out += dense_rules("qa_outputs.answer_class.dense_0", qa + ("answer_class", "dense_0"), bias=True,
                       on_backbone=False)
    out += dense_rules("qa_outputs.answer_class.dense_1", qa + ("answer_class", "dense_1"), bias=False,
                       on_backbone=False)
    return out


def ignored(config: XLMConfig, head: str) -> tuple[str, ...]:
    if head == "with_lm_head" and config.tie_word_embeddings:
        return IGNORED + (r"pred_layer\.proj\.weight",)  # the tied copy of the embeddings, if a file has it
    return IGNORED


TABLE = NameTable(
    backbone=backbone,
    heads={
        "model": no_rules,
        "with_lm_head": lm_head,
        "sequence_classification": sequence_summary,
        "multiple_choice": lambda config: sequence_summary(config) + head_linear("logits_proj")(config),
        "token_classification": head_linear("classifier"),
        "question_answering_simple": head_linear("qa_outputs"),
        "question_answering": squad_head,
    },
    ignored=ignored,
)
