"""LiLT <-> HF name table. Backbone prefix: "lilt." in every head, none in LiltModel."""

from __future__ import annotations

from conversion.mapping import (NameTable, Rule, dense_rules, head_classifier, head_linear,
                                layer_norm_rules)
from lilt_jax.config import LiltConfig
from lilt_jax.model import BOX_TABLES

# Keys old checkpoints carry that are recomputed, not learned.
IGNORED = (r"(.*\.)?embeddings\.position_ids", r"(.*\.)?embeddings\.token_type_ids")


def backbone(config: LiltConfig) -> list[Rule]:
    emb, lay, layer = "embeddings.", "layout_embeddings.", "encoder.layer.{i}."
    out = [Rule(emb + f"{name}.weight", ("embeddings", name, "embedding"))
           for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    out += layer_norm_rules(emb + "LayerNorm", ("embeddings", "layer_norm"))
    out += [Rule(lay + f"{name}.weight", ("layout_embeddings", name, "embedding"))
            for name in BOX_TABLES + ("box_position_embeddings",)]
    out += dense_rules(lay + "box_linear_embeddings", ("layout_embeddings", "box_linear_embeddings"), bias=True)
    out += layer_norm_rules(lay + "LayerNorm", ("layout_embeddings", "layer_norm"))
    for name in ("query", "key", "value", "layout_query", "layout_key", "layout_value"):
        out += dense_rules(layer + "attention.self." + name, ("layers", "attn", name), bias=True)
    for hf, ours in (("attention.output", "attn_output"), ("attention.layout_output", "layout_attn_output"),
                     ("output", "output"), ("layout_output", "layout_output")):
        out += dense_rules(layer + hf + ".dense", ("layers", ours, "dense"), bias=True)
        out += layer_norm_rules(layer + hf + ".LayerNorm", ("layers", ours, "layer_norm"))
    for name in ("intermediate", "layout_intermediate"):
        out += dense_rules(layer + name + ".dense", ("layers", name, "dense"), bias=True)
    return out


def pooler(config: LiltConfig) -> list[Rule]:
    return dense_rules("pooler.dense", ("pooler", "dense"), bias=True)


def ignored(config: LiltConfig, head: str) -> tuple[str, ...]:
    if head != "model":
        return IGNORED + (r"lilt\.pooler\.dense\.(weight|bias)",)  # a pooler saved with a head that does not use it
    return IGNORED


TABLE = NameTable(
    backbone=backbone,
    heads={
        "model": pooler,
        "sequence_classification": head_classifier("classifier"),
        "token_classification": head_linear("classifier"),
        "question_answering": head_linear("qa_outputs"),
    },
    ignored=ignored,
)
