"""Longformer <-> HF name table. Backbone prefix: "longformer." in every head, none in LongformerModel.

HF 5.x saves the masked-LM decoder tied away: ``lm_head.decoder.weight`` is the word embedding matrix and
``lm_head.decoder.bias`` is ``lm_head.bias``; ``lm_head.bias`` is read (or ``lm_head.decoder.bias`` when a file
has only that one; the other copies are dropped) and written.
"""

from __future__ import annotations

from common.longformer_attention import PROJECTIONS
from conversion.mapping import Rule, dense_rules
from longformer_jax.config import LongformerConfig

# Keys old checkpoints carry that are recomputed, not learned.
IGNORED = (r"(.*\.)?embeddings\.position_ids", r"(.*\.)?embeddings\.token_type_ids")


def _layer_norm(hf: str, path: tuple[str, ...], on_backbone: bool = True) -> list[Rule]:
    return [Rule(f"{hf}.weight", path + ("scale",), "none", on_backbone),
            Rule(f"{hf}.bias", path + ("bias",), "none", on_backbone)]


def rules(config: LongformerConfig, head: str) -> list[Rule]:
    emb, layer = "embeddings.", "encoder.layer.{i}."
    out = [Rule(emb + f"{name}.weight", ("embeddings", name, "embedding"))
           for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
    out += _layer_norm(emb + "LayerNorm", ("embeddings", "layer_norm"))
    for name in PROJECTIONS:
        out += dense_rules(layer + "attention.self." + name, ("layers", "attn", name), bias=True)
    out += dense_rules(layer + "attention.output.dense", ("layers", "attn_output", "dense"), bias=True)
    out += _layer_norm(layer + "attention.output.LayerNorm", ("layers", "attn_output", "layer_norm"))
    out += dense_rules(layer + "intermediate.dense", ("layers", "intermediate", "dense"), bias=True)
    out += dense_rules(layer + "output.dense", ("layers", "output", "dense"), bias=True)
    out += _layer_norm(layer + "output.LayerNorm", ("layers", "output", "layer_norm"))
    if head in ("model", "multiple_choice"):
        out += dense_rules("pooler.dense", ("pooler", "dense"), bias=True)

    if head == "masked_lm":
        out += dense_rules("lm_head.dense", ("lm_head", "dense"), bias=True, on_backbone=False)
        out += _layer_norm("lm_head.layer_norm", ("lm_head", "layer_norm"), on_backbone=False)
        # Some files carry only the tied copy, lm_head.decoder.bias (transformers accepts either).
        out.append(Rule("lm_head.bias", ("lm_head", "bias"), "none", on_backbone=False,
                        alternatives=("lm_head.decoder.bias",)))
        if not config.tie_word_embeddings:
            out += dense_rules("lm_head.decoder", ("lm_head", "decoder"), bias=False, on_backbone=False)
    elif head == "sequence_classification":
        out += dense_rules("classifier.dense", ("classifier", "dense"), bias=True, on_backbone=False)
        out += dense_rules("classifier.out_proj", ("classifier", "out_proj"), bias=True, on_backbone=False)
    elif head in ("multiple_choice", "token_classification"):
        out += dense_rules("classifier", ("classifier",), bias=True, on_backbone=False)
    elif head == "question_answering":
        out += dense_rules("qa_outputs", ("qa_outputs",), bias=True, on_backbone=False)
    return out


def ignored(config: LongformerConfig, head: str) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if head == "masked_lm":
        # Tied copies a checkpoint may still carry: the decoder bias is lm_head.bias, the weight the embeddings.
        extra = (r"lm_head\.decoder\.bias",) + ((r"lm_head\.decoder\.weight",) if config.tie_word_embeddings else ())
    if head not in ("model", "multiple_choice"):
        extra += (r"longformer\.pooler\.dense\.(weight|bias)",)  # a pooler saved with a head that does not use it
    return IGNORED + extra
