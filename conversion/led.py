"""LED <-> HF name table. Backbone prefix: "led." in every head, none in LEDModel.

The encoder layers are Longformer's param tree under HF's LED names (``self_attn.longformer_self_attn.*``, the
attention output Linear named ``self_attn.output``, ``fc1``/``fc2``). transformers saves the tied copies
(``encoder/decoder.embed_tokens.weight``, a tied ``lm_head.weight``) away; they are dropped when a file carries
them. ``final_logits_bias`` is a [1, V] buffer that some files lack: zeros then, as transformers does.
The encoder's ``{i}`` runs over encoder_layers and the decoder's over decoder_layers: each stacked rule is
numbered by its param's leading axis (conversion/mapping.py), which init_params sizes from that stack's field.
"""

from __future__ import annotations

from common.longformer_attention import PROJECTIONS
from conversion.mapping import (NameTable, Rule, dense_rules, head_classifier, head_linear, layer_norm_rules,
                                no_rules)
from led_jax.config import LEDConfig
from led_jax.model import ATTN_PROJ

IGNORED = (r"(.*\.)?(encoder|decoder)\.embed_tokens\.weight",)


def backbone(config: LEDConfig) -> list[Rule]:
    out = [Rule("shared.weight", ("shared", "embedding"))]
    for side in ("encoder", "decoder"):
        out.append(Rule(f"{side}.embed_positions.weight", (side, "embed_positions", "embedding")))
        out += layer_norm_rules(f"{side}.layernorm_embedding", (side, "layernorm_embedding"))

    enc, el = "encoder.layers.{i}.", ("encoder", "layers")
    for name in PROJECTIONS:
        out += dense_rules(enc + "self_attn.longformer_self_attn." + name, el + ("attn", name), bias=True)
    out += dense_rules(enc + "self_attn.output", el + ("attn_output", "dense"), bias=True)
    out += layer_norm_rules(enc + "self_attn_layer_norm", el + ("attn_output", "layer_norm"))
    out += dense_rules(enc + "fc1", el + ("intermediate", "dense"), bias=True)
    out += dense_rules(enc + "fc2", el + ("output", "dense"), bias=True)
    out += layer_norm_rules(enc + "final_layer_norm", el + ("output", "layer_norm"))

    dec, dl = "decoder.layers.{i}.", ("decoder", "layers")
    for hf_name, ours in (("self_attn", "self_attn"), ("encoder_attn", "cross_attn")):
        for proj in ATTN_PROJ:
            out += dense_rules(f"{dec}{hf_name}.{proj}", dl + (ours, proj), bias=True)
        out += layer_norm_rules(f"{dec}{hf_name}_layer_norm", dl + (f"{ours}_layer_norm",))
    out += dense_rules(dec + "fc1", dl + ("fc1",), bias=True)
    out += dense_rules(dec + "fc2", dl + ("fc2",), bias=True)
    out += layer_norm_rules(dec + "final_layer_norm", dl + ("final_layer_norm",))
    return out


def lm_head(config: LEDConfig) -> list[Rule]:
    out = [Rule("final_logits_bias", ("final_logits_bias",), "row", on_backbone=False, default="zeros")]
    if not config.tie_word_embeddings:
        out += dense_rules("lm_head", ("lm_head",), bias=False, on_backbone=False)
    return out


def ignored(config: LEDConfig, head: str) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if head == "conditional_generation" and config.tie_word_embeddings:
        extra = (r"lm_head\.weight",)
    return IGNORED + extra


TABLE = NameTable(
    backbone=backbone,
    heads={
        "model": no_rules,
        "conditional_generation": lm_head,
        "sequence_classification": head_classifier("classification_head"),
        "question_answering": head_linear("qa_outputs"),
    },
    ignored=ignored,
)
