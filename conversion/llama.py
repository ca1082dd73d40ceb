"""Llama <-> HF name table. Backbone prefix: "model." in every head but QA ("transformer.") and none in LlamaModel."""

from __future__ import annotations

from conversion.mapping import Rule, dense_rules
from llama_jax.config import LlamaConfig

# Keys old checkpoints carry that are recomputed, not learned.
IGNORED = (r".*rotary_emb\.inv_freq", r".*rotary_emb\.original_inv_freq")


def rules(config: LlamaConfig, head: str) -> list[Rule]:
    layer = "layers.{i}."
    out = [Rule("embed_tokens.weight", ("embed_tokens", "embedding")), Rule("norm.weight", ("norm", "scale")),
           Rule(layer + "input_layernorm.weight", ("layers", "input_layernorm", "scale")),
           Rule(layer + "post_attention_layernorm.weight", ("layers", "post_attention_layernorm", "scale"))]
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        out += dense_rules(layer + "self_attn." + name, ("layers", "attn", name), bias=config.attention_bias)
    for name in ("gate_proj", "up_proj", "down_proj"):
        out += dense_rules(layer + "mlp." + name, ("layers", "mlp", name), bias=config.mlp_bias)

    if head == "causal_lm" and not config.tie_word_embeddings:
        out += dense_rules("lm_head", ("lm_head",), bias=False, on_backbone=False)
    elif head == "sequence_classification":
        out += dense_rules("score", ("score",), bias=False, on_backbone=False)
    elif head == "token_classification":
        out += dense_rules("score", ("score",), bias=config.token_classification_bias, on_backbone=False)
    elif head == "question_answering":
        out += dense_rules("qa_outputs", ("qa_outputs",), bias=True, on_backbone=False)
    return out


def ignored(config: LlamaConfig, head: str) -> tuple[str, ...]:
    # A tied checkpoint may still carry lm_head.weight (the same tensor as the embedding).
    return IGNORED + ((r"lm_head\.weight",) if config.tie_word_embeddings else ())
