"""Llama <-> HF name table. Backbone prefix: "model." in every head but QA ("transformer.") and none in LlamaModel."""

from __future__ import annotations

from conversion.mapping import NameTable, Rule, dense_rules, head_linear, no_rules
from llama_jax.config import LlamaConfig

# Keys old checkpoints carry that are recomputed, not learned.
IGNORED = (r".*rotary_emb\.inv_freq", r".*rotary_emb\.original_inv_freq")


def backbone(config: LlamaConfig) -> list[Rule]:
    layer = "layers.{i}."
    # RMS norms: a weight only (no bias), so not conversion.mapping.layer_norm_rules.
    out = [Rule("embed_tokens.weight", ("embed_tokens", "embedding")), Rule("norm.weight", ("norm", "scale")),
           Rule(layer + "input_layernorm.weight", ("layers", "input_layernorm", "scale")),
           Rule(layer + "post_attention_layernorm.weight", ("layers", "post_attention_layernorm", "scale"))]
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        out += dense_rules(layer + "self_attn." + name, ("layers", "attn", name), bias=config.attention_bias)
    for name in ("gate_proj", "up_proj", "down_proj"):
        out += dense_rules(layer + "mlp." + name, ("layers", "mlp", name), bias=config.mlp_bias)
    return out


def lm_head(config: LlamaConfig) -> list[Rule]:
    # Tied: the logits read the embedding matrix, so there is no tensor of its own.
    return [] if config.tie_word_embeddings else dense_rules("lm_head", ("lm_head",), bias=False, on_backbone=False)


def score(bias: bool) -> list[Rule]:
    """The one Linear ``score`` of the classification heads (a bias for tokens when the config asks for one)."""
    return dense_rules("score", ("score",), bias=bias, on_backbone=False)


def ignored(config: LlamaConfig, head: str) -> tuple[str, ...]:
    # A tied checkpoint may still carry lm_head.weight (the same tensor as the embedding).
    return IGNORED + ((r"lm_head\.weight",) if config.tie_word_embeddings else ())


TABLE = NameTable(
    backbone=backbone,
    heads={
        "model": no_rules,
        "causal_lm": lm_head,
        "sequence_classification": lambda config: score(bias=False),
        "token_classification": lambda config: score(bias=config.token_classification_bias),
        "question_answering": head_linear("qa_outputs"),
    },
    ignored=ignored,
)
