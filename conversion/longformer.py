"""Longformer <-> HF name table. Backbone prefix: "longformer." in every head, none in LongformerModel.

HF 5.x saves the masked-LM decoder tied away: ``lm_head.decoder.weight`` is the word embedding matrix and
``lm_head.decoder.bias`` is ``lm_head.bias``; ``lm_head.bias`` is read (or ``lm_head.decoder.bias`` when a file
has only that one; the other copies are dropped) and written.
"""

from __future__ import annotations

from common.longformer_attention import PROJECTIONS
from conversion.mapping import (NameTable, Rule, dense_rules, head_classifier, head_linear,
                                layer_norm_rules)
from longformer_jax.config import LongformerConfig

# Keys old checkpoints carry that are recomputed, not learned.
IGNORED = (r"(.*\.)?embeddings\.position_ids", r"(.*\.)?embeddings\.token_type_ids")


def backbone(config: LongformerConfig) -> list[Rule]:
    emb, layer = "embeddings.", "encoder.layer.{i}."
    out = [Rule(emb + f"{name}.weight", ("embeddings", name, "embedding"))
           for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    out += layer_norm_rules(emb + "LayerNorm", ("embeddings", "layer_norm"))
    for name in PROJECTIONS:
        out += dense_rules(layer + "attention.self." + name, ("layers", "attn", name), bias=True)
    out += dense_rules(layer + "attention.output.dense", ("layers", "attn_output", "dense"), bias=True)
    out += layer_norm_rules(layer + "attention.output.LayerNorm", ("layers", "attn_output", "layer_norm"))
    out += dense_rules(layer + "intermediate.dense", ("layers", "intermediate", "dense"), bias=True)
    out += dense_rules(layer + "output.dense", ("layers", "output", "dense"), bias=True)
    out += layer_norm_rules(layer + "output.LayerNorm", ("layers", "output", "layer_norm"))
    return out


def pooler(config: LongformerConfig) -> list[Rule]:
    return dense_rules("pooler.dense", ("pooler", "dense"), bias=True)


def lm_head(config: LongformerConfig) -> list[Rule]:
    out = dense_rules("lm_head.dense", ("lm_head", "dense"), bias=True, on_backbone=False)
    out += layer_norm_rules("lm_head.layer_norm", ("lm_head", "layer_norm"), on_backbone=False)
    # Some files carry only the tied copy, lm_head.decoder.bias (transformers accepts either).
    out.append(Rule("lm_head.bias", ("lm_head", "bias"), "none", on_backbone=False,
                    alternatives=("lm_head.decoder.bias",)))
    if not config.tie_word_embeddings:
        out += dense_rules("lm_head.decoder", ("lm_head", "decoder"), bias=False, on_backbone=False)
    return out


def ignored(config: LongformerConfig, head: str) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if head == "masked_lm":
        # Tied copies a checkpoint may still carry: the decoder bias is lm_head.bias, the weight the embeddings.
        extra = (r"lm_head\.decoder\.bias",) + ((r"lm_head\.decoder\.weight",) if config.tie_word_embeddings else ())
    if head not in ("model", "multiple_choice"):
        extra += (r"longformer\.pooler\.dense\.(weight|bias)",)  # a pooler saved with a head that does not use it
    return IGNORED + extra


TABLE = NameTable(
    backbone=backbone,
    heads={
        "model": pooler,
        "masked_lm": lm_head,
        "sequence_classification": head_classifier("classifier"),
        "multiple_choice": lambda config: pooler(config) + head_linear("classifier")(config),
        "token_classification": head_linear("classifier"),
        "question_answering": head_linear("qa_outputs"),
    },
    ignored=ignored,
)
