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
from conversion.mapping import Rule, dense_rules
from led_jax.config import LEDConfig
from led_jax.model import ATTN_PROJ

IGNORED = (r"(.*\.)?(encoder|decoder)\.embed_tokens\.weight",)


def _layer_norm(hf: str, path: tuple[str, ...]) -> list[Rule]:
    return [Rule(f"{hf}.weight", path + ("scale",)), Rule(f"{hf}.bias", path + ("bias",))]


def rules(config: LEDConfig, head: str) -> list[Rule]:
    out = [Rule("shared.weight", ("shared", "embedding"))]
    for side in ("encoder", "decoder"):
        out.append(Rule(f"{side}.embed_positions.weight", (side, "embed_positions", "embedding")))
        out += _layer_norm(f"{side}.layernorm_embedding", (side, "layernorm_embedding"))

    enc, el = "encoder.layers.{i}.", ("encoder", "layers")
    for name in PROJECTIONS:
        out += dense_rules(enc + "self_attn.longformer_self_attn." + name, el + ("attn", name), bias=True)
    out += dense_rules(enc + "self_attn.output", el + ("attn_output", "dense"), bias=True)
    out += _layer_norm(enc + "self_attn_layer_norm", el + ("attn_output", "layer_norm"))
    out += dense_rules(enc + "fc1", el + ("intermediate", "dense"), bias=True)
    out += dense_rules(enc + "fc2", el + ("output", "dense"), bias=True)
    out += _layer_norm(enc + "final_layer_norm", el + ("output", "layer_norm"))

    dec, dl = "decoder.layers.{i}.", ("decoder", "layers")
    for hf_name, ours in (("self_attn", "self_attn"), ("encoder_attn", "cross_attn")):
        for proj in ATTN_PROJ:
            out += dense_rules(f"{dec}{hf_name}.{proj}", dl + (ours, proj), bias=True)
        out += _layer_norm(f"{dec}{hf_name}_layer_norm", dl + (f"{ours}_layer_norm",))
    out += dense_rules(dec + "fc1", dl + ("fc1",), bias=True)
    out += dense_rules(dec + "fc2", dl + ("fc2",), bias=True)
    out += _layer_norm(dec + "final_layer_norm", dl + ("final_layer_norm",))

    if head == "conditional_generation":
        out.append(Rule("final_logits_bias", ("final_logits_bias",), "row", on_backbone=False, default="zeros"))
        if not config.tie_word_embeddings:
            out += dense_rules("lm_head", ("lm_head",), bias=False, on_backbone=False)
    elif head == "sequence_classification":
        out += dense_rules("classification_head.dense", ("classification_head", "dense"), bias=True, on_backbone=False)
        out += dense_rules("classification_head.out_proj", ("classification_head", "out_proj"), bias=True,
                           on_backbone=False)
    elif head == "question_answering":
        out += dense_rules("qa_outputs", ("qa_outputs",), bias=True, on_backbone=False)
    return out


def ignored(config: LEDConfig, head: str) -> tuple[str, ...]:
    extra: tuple[str, ...] = ()
    if head == "conditional_generation" and config.tie_word_embeddings:
        extra = (r"lm_head\.weight",)
    return IGNORED + extra
