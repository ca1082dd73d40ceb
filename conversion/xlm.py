"""XLM <-> HF name table. Backbone prefix: "transformer." in every head, none in XLMModel.

XLM keeps its layers in parallel ModuleLists (``attentions.{i}``, ``layer_norm1.{i}``, ``ffns.{i}``,
``layer_norm2.{i}``), not one module per layer. The LM head's weight is tied to the word embedding and saved
without it.
"""

from __future__ import annotations

from conversion.mapping import Rule, dense_rules
from xlm_jax.config import XLMConfig

IGNORED = (r"(transformer\.)?position_ids",)  # a buffer old files carry


def _layer_norm(hf: str, path: tuple[str, ...], on_backbone: bool = True) -> list[Rule]:
    return [Rule(f"{hf}.weight", path + ("scale",), "none", on_backbone),
            Rule(f"{hf}.bias", path + ("bias",), "none", on_backbone)]


def rules(config: XLMConfig, head: str) -> list[Rule]:
    out = [Rule("embeddings.weight", ("embeddings", "embedding")),
           Rule("position_embeddings.weight", ("position_embeddings", "embedding"))]
    if config.has_lang_embeddings:
        out.append(Rule("lang_embeddings.weight", ("lang_embeddings", "embedding")))
    out += _layer_norm("layer_norm_emb", ("layer_norm_emb",))
    for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
        out += dense_rules(f"attentions.{{i}}.{name}", ("layers", "attn", name), bias=True)
    out += _layer_norm("layer_norm1.{i}", ("layers", "layer_norm1"))
    for name in ("lin1", "lin2"):
        out += dense_rules(f"ffns.{{i}}.{name}", ("layers", "ffn", name), bias=True)
    out += _layer_norm("layer_norm2.{i}", ("layers", "layer_norm2"))

    if head == "with_lm_head":
        out.append(Rule("pred_layer.proj.bias", ("pred_layer", "bias"), "none", on_backbone=False))
        if not config.tie_word_embeddings:
            out.append(Rule("pred_layer.proj.weight", ("pred_layer", "weight"), "none", on_backbone=False))
    elif head in ("sequence_classification", "multiple_choice"):
        if config.summary_use_proj:
            out += dense_rules("sequence_summary.summary", ("sequence_summary", "summary"), bias=True,
                               on_backbone=False)
        if head == "multiple_choice":
            out += dense_rules("logits_proj", ("logits_proj",), bias=True, on_backbone=False)
    elif head == "token_classification":
        out += dense_rules("classifier", ("classifier",), bias=True, on_backbone=False)
    elif head == "question_answering_simple":
        out += dense_rules("qa_outputs", ("qa_outputs",), bias=True, on_backbone=False)
    elif head == "question_answering":
        qa = ("qa_outputs",)
        out += dense_rules("qa_outputs.start_logits.dense", qa + ("start_logits", "dense"), bias=True,
                           on_backbone=False)
        for name in ("dense_0", "dense_1"):
            out += dense_rules(f"qa_outputs.end_logits.{name}", qa + ("end_logits", name), bias=True,
                               on_backbone=False)
        out += _layer_norm("qa_outputs.end_logits.LayerNorm", qa + ("end_logits", "layer_norm"), on_backbone=False)
        out += dense_rules("qa_outputs.answer_class.dense_0", qa + ("answer_class", "dense_0"), bias=True,
                           on_backbone=False)
        out += dense_rules("qa_outputs.answer_class.dense_1", qa + ("answer_class", "dense_1"), bias=False,
                           on_backbone=False)
    return out


def ignored(config: XLMConfig, head: str) -> tuple[str, ...]:
    if head == "with_lm_head" and config.tie_word_embeddings:
        return IGNORED + (r"pred_layer\.proj\.weight",)  # the tied copy of the embeddings, if a file has it
    return IGNORED
