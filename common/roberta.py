"""RoBERTa pieces shared by Longformer and LiLT's text stream: the embeddings (word + position + token type, with
positions derived from the pads), their init, and the BERT pooler.

Param tree of the embeddings (V vocab, P max positions, T type vocab, H hidden):

    word_embeddings/embedding [V, H], position_embeddings/embedding [P, H], token_type_embeddings/embedding [T, H]
    layer_norm/{scale,bias} [H]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common import layers as L


def init_embeddings(key, config, dtype) -> dict:
    """The embedding tables (normal(0, initializer_range)) and their layer norm, as HF initialises them."""
    ke = jax.random.split(key, 3)
    std, h = config.initializer_range, config.hidden_size
    return {
        "word_embeddings": L.init_embedding(ke[0], config.vocab_size, h, std=std, dtype=dtype),
        "position_embeddings": L.init_embedding(ke[1], config.max_position_embeddings, h, std=std, dtype=dtype),
        "token_type_embeddings": L.init_embedding(ke[2], config.type_vocab_size, h, std=std, dtype=dtype),
        "layer_norm": L.init_layer_norm(h, dtype),
    }


def create_position_ids_from_input_ids(input_ids, padding_idx: int):
    """RoBERTa positions: padding_idx + 1 + (count of non-pad tokens so far) for real tokens, padding_idx for pads."""
    mask = (input_ids != padding_idx).astype(jnp.int32)
    return jnp.cumsum(mask, axis=1) * mask + padding_idx


def roberta_embeddings(p, config, input_ids, token_type_ids, position_ids, dtype, *, deterministic, rng):
    """RoBERTa embeddings (Longformer, LiLT's text stream): word + position + token type, layer norm, dropout.
    input_ids, token_type_ids, position_ids (None: from the pads): [B, T] -> [B, T, H]."""
    if position_ids is None:
        position_ids = create_position_ids_from_input_ids(input_ids, config.pad_token_id)
    x = (L.embed(p["word_embeddings"], input_ids, dtype, config.pad_token_id)
         + L.embed(p["position_embeddings"], position_ids, dtype, config.pad_token_id)
         + L.embed(p["token_type_embeddings"], token_type_ids, dtype))
    x = L.layer_norm(p["layer_norm"], x, config.layer_norm_eps)
    return L.dropout(x, config.hidden_dropout_prob, deterministic=deterministic, rng=rng)


def pooler(p, hidden):
    """BERT pooler: dense + tanh on the first token. hidden: [B, T, H] -> [B, H]."""
    return jnp.tanh(L.dense(p["dense"], hidden[:, 0]))
