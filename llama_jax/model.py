"""Llama as pure functions: the decoder stack (the family's backbone), its params' init, what each head computes
from the decoder's output (family.py declares the heads; common.family runs them), and the generation hooks.

Param tree (L = num_hidden_layers, H = hidden, Q = heads * head_dim, K = kv_heads * head_dim, I = intermediate):

    embed_tokens/embedding              [V, H]
    layers/input_layernorm/scale        [L, H]
    layers/attn/{q,k,v}_proj/kernel     [L, H, Q|K|K]   (+ bias [L, Q|K|K] if attention_bias)
    layers/attn/o_proj/kernel           [L, Q, H]       (+ bias [L, H] if attention_bias)
    layers/post_attention_layernorm/scale [L, H]
    layers/mlp/{gate,up}_proj/kernel    [L, H, I]       (+ bias if mlp_bias)
    layers/mlp/down_proj/kernel         [L, I, H]
    norm/scale                          [H]
    lm_head/kernel [H, V] (causal LM, untied) | score [H, labels] (+bias for tokens) | qa_outputs [H, 2]

Every head function (``llama_jax.llama_<head>``) has the signature ``f(params, config, input_ids,
attention_mask=None, position_ids=None, <labels...>, *, deterministic=True, rng=None, output_hidden_states=False,
output_attentions=False)`` (causal_lm adds the keyword-only ``logits_to_keep=0``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from common import layers as L
from common.attention import attention, causal_attention, causal_mask
from common.heads import question_answering, token_classification
from common.losses import causal_lm_loss, sequence_classification_loss
from common.outputs import (BaseModelOutput, CausalLMOutput, QuestionAnsweringOutput, SequenceClassifierOutput,
                            TokenClassifierOutput)
from common.remat import remat
from common.rope import apply_rope, rope_cos_sin
from common.sharding import BATCH, constrain, like, take
from common.stacked import layer_params, split_layers
from llama_jax.config import LlamaConfig


# ------------------------------------------------------------------------------------------- init
def _dense(config: LlamaConfig):
    return functools.partial(L.init_dense, std=config.initializer_range)


def init_backbone(key, config: LlamaConfig, dtype=jnp.float32) -> dict:
    """The embeddings, the layer stack and the final norm with HF's init (normal(0, initializer_range), norms at
    1, biases at 0)."""
    c = config
    h, q, kv, i, n = c.hidden_size, c.num_attention_heads * c.dim_per_head, c.kv_heads * c.dim_per_head, \
        c.intermediate_size, c.num_hidden_layers
    k_embed, k_layers = jax.random.split(key)

    def one_layer(k):
        ks = jax.random.split(k, 7)
        dense = functools.partial(_dense(c), dtype=dtype)
        return {
            "input_layernorm": L.init_rms_norm(h, dtype),
            "attn": {
                "q_proj": dense(ks[0], h, q, bias=c.attention_bias),
                "k_proj": dense(ks[1], h, kv, bias=c.attention_bias),
                "v_proj": dense(ks[2], h, kv, bias=c.attention_bias),
                "o_proj": dense(ks[3], q, h, bias=c.attention_bias),
            },
            "post_attention_layernorm": L.init_rms_norm(h, dtype),
            "mlp": {
                "gate_proj": dense(ks[4], h, i, bias=c.mlp_bias),
                "up_proj": dense(ks[5], h, i, bias=c.mlp_bias),
                "down_proj": dense(ks[6], i, h, bias=c.mlp_bias),
            },
        }

    return {
        "embed_tokens": L.init_embedding(k_embed, c.vocab_size, h, std=c.initializer_range, dtype=dtype),
        "layers": jax.vmap(one_layer)(jax.random.split(k_layers, n)),
        "norm": L.init_rms_norm(h, dtype),
    }


def init_lm_head(key, config: LlamaConfig, dtype) -> dict:
    """lm_head [H, V]; none when tied (the logits then read the embedding matrix)."""
    if config.tie_word_embeddings:
        return {}
    return {"lm_head": _dense(config)(key, config.hidden_size, config.vocab_size, bias=False, dtype=dtype)}


def init_sequence_score(key, config: LlamaConfig, dtype) -> dict:
    return {"score": _dense(config)(key, config.hidden_size, config.num_labels, bias=False, dtype=dtype)}


def init_token_score(key, config: LlamaConfig, dtype) -> dict:
    return {"score": _dense(config)(key, config.hidden_size, config.num_labels, bias=config.token_classification_bias,
                                    dtype=dtype)}


def init_span_head(key, config: LlamaConfig, dtype) -> dict:
    return {"qa_outputs": _dense(config)(key, config.hidden_size, 2, bias=True, dtype=dtype)}


# ---------------------------------------------------------------------------------------- blocks
def compute_dtype(params, config: LlamaConfig):
    return jnp.dtype(config.compute_dtype) if config.compute_dtype else params["embed_tokens"]["embedding"].dtype


def _attention_block(p, config: LlamaConfig, x, cos, sin, kv, mask, *, deterministic, rng, output_attentions):
    """x: [B, T, H]. kv: None (attend to this call's tokens, causally; mask: the keys' validity [B, T]) or a
    function that stores the new keys/values in the cache and returns the full buffers to attend over (mask:
    [B, T, cache length])."""
    b, t, _ = x.shape
    d = config.dim_per_head
    q = L.dense(p["q_proj"], x).reshape(b, t, config.num_attention_heads, d)
    k = L.dense(p["k_proj"], x).reshape(b, t, config.kv_heads, d)
    v = L.dense(p["v_proj"], x).reshape(b, t, config.kv_heads, d)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    common = dict(scale=d ** -0.5, impl=config.attention_impl, dropout_rate=config.attention_dropout,
                  deterministic=deterministic, rng=rng, return_probs=output_attentions)
    if kv is None:
        out, probs = causal_attention(q, k, v, mask, **common)
    else:
        out, probs = attention(q, *kv(k, v), mask, kv_heads_major=True, **common)
    return L.dense(p["o_proj"], out.reshape(b, t, -1)), probs


def _mlp(p, config: LlamaConfig, x):
    act = L.activation(config.hidden_act)
    return L.dense(p["down_proj"], act(L.dense(p["gate_proj"], x)) * L.dense(p["up_proj"], x))


def decoder(params, config: LlamaConfig, input_ids, attention_mask=None, position_ids=None, cache=None, *,
            deterministic=True, rng=None, output_hidden_states=False, output_attentions=False):
    """The LlamaModel stack.

    input_ids: [B, T] int; attention_mask: [B, T] (1 keep, 0 pad) or None; position_ids: [B, T] or None
    (HF's default arange(T) + cache offset). cache: None, or a dict from :func:`init_cache` into which this
    call's keys/values are written at ``cache["index"]``.
    Returns (BaseModelOutput, new cache or None).
    """
    b, t = input_ids.shape
    dtype = compute_dtype(params, config)
    x = constrain(L.embed(params["embed_tokens"], input_ids, dtype, config.pad_token_id), BATCH, None, None)
    new_mask = jnp.ones((b, t), bool) if attention_mask is None else attention_mask.astype(bool)

    if cache is None:
        query_slots = jnp.arange(t)
        mask = new_mask  # causal_attention builds the causal part
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(t), (b, t))
    else:
        index = cache["index"]
        query_slots = index + jnp.arange(t)
        key_valid = jax.lax.dynamic_update_slice(cache["valid"], like(new_mask, cache["valid"]), (0, index))
        mask = causal_mask(key_valid, query_slots)
        if position_ids is None:
            position_ids = jnp.broadcast_to(query_slots, (b, t))
    cos, sin = rope_cos_sin(config.rope, config.dim_per_head, config.max_position_embeddings, position_ids)

    def layer(carry, xs):
        h, ck, cv = carry  # ck, cv: this layer's cache [B, kv_heads, length, head_dim] (None without a cache)
        p, i = xs
        def write_cache(k, v):
            """Write this step's keys/values ([B, T, kv_heads, head_dim]) into the layer's cache slots; attend
            over the whole cache."""
            nonlocal ck, cv
            ck = jax.lax.dynamic_update_slice(ck, like(k.transpose(0, 2, 1, 3).astype(ck.dtype), ck), (0, 0, index, 0))
            cv = jax.lax.dynamic_update_slice(cv, like(v.transpose(0, 2, 1, 3).astype(cv.dtype), cv), (0, 0, index, 0))
            return ck.astype(dtype), cv.astype(dtype)

        kv = write_cache if cache is not None else None
        a, probs = _attention_block(p["attn"], config, L.rms_norm(p["input_layernorm"], h, config.rms_norm_eps),
                                    cos, sin, kv, mask, deterministic=deterministic, rng=L.fold_rng(rng, i),
                                    output_attentions=output_attentions)
        h = h + a
        h = h + _mlp(p["mlp"], config, L.rms_norm(p["post_attention_layernorm"], h, config.rms_norm_eps))
        h = constrain(h, BATCH, None, None)  # keep the residual stream batch-sharded between layers
        return (h, ck, cv), (h if output_hidden_states else None, probs)

    n = config.num_hidden_layers
    if cache is None:
        xs = (params["layers"], jnp.arange(n))
        (x_out, _, _), (per_layer, probs) = jax.lax.scan(remat(layer, config.remat_policy), (x, None, None), xs,
                                                         unroll=1 if config.scan_layers else n)
    else:
        # Prefill and decoding: a Python loop over per-layer weights and caches (common.stacked; decoding_params),
        # so that every step reads each in place instead of slicing copies out of the stacked arrays.
        x_out, ks, vs, outs = x, [], [], []
        for i in range(n):
            (x_out, k, v), out = layer((x_out, cache["k"][i], cache["v"][i]), (layer_params(params["layers"], i), i))
            ks.append(k)
            vs.append(v)
            outs.append(out)
        per_layer, probs = (None if o[0] is None else jnp.stack(o) for o in zip(*outs))
    last = L.rms_norm(params["norm"], x_out, config.rms_norm_eps)

    hidden_states = None
    if output_hidden_states:
        # HF: (embeddings, outputs of layers 1..L-1, final-norm output).
        hidden_states = (x,) + tuple(per_layer[j] for j in range(config.num_hidden_layers - 1)) + (last,)
    attentions = tuple(probs[j] for j in range(config.num_hidden_layers)) if output_attentions else None
    new_cache = None
    if cache is not None:
        new_cache = {"k": tuple(ks), "v": tuple(vs), "valid": key_valid, "index": index + t}
    return BaseModelOutput(last_hidden_state=last, hidden_states=hidden_states, attentions=attentions), new_cache


def lm_logits(params, config: LlamaConfig, hidden):
    """hidden: [..., H] -> logits [..., V] through lm_head, or the embedding matrix when tied."""
    if config.tie_word_embeddings:
        return L.matmul(hidden, params["embed_tokens"]["embedding"], transposed=True)
    return L.dense(params["lm_head"], hidden)


def backbone(params, config: LlamaConfig, input_ids, attention_mask=None, position_ids=None, *, deterministic=True,
             rng=None, output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
    """The family's backbone: :func:`decoder` without a cache, its output only. last_hidden_state: [B, T, H]."""
    out, _ = decoder(params, config, input_ids, attention_mask, position_ids, deterministic=deterministic, rng=rng,
                     output_hidden_states=output_hidden_states, output_attentions=output_attentions)
    return out


# ----------------------------------------------------------------------------------------- heads
# Each head: (params, config, out, inputs, *, deterministic, rng) -> output; out is backbone(...)'s output,
# inputs the head function's arguments as given (see common.family).
def model_head(params, config, out, inputs, *, deterministic, rng) -> BaseModelOutput:
    """last_hidden_state: [B, T, H] (after the final norm)."""
    return out


def causal_lm_head(params, config, out, inputs, *, deterministic, rng, logits_to_keep: int = 0) -> CausalLMOutput:
    """logits: [B, T, V] ([B, logits_to_keep, V] if > 0). loss: HF's shifted CE over labels != -100."""
    hidden = out.last_hidden_state if logits_to_keep == 0 else out.last_hidden_state[:, -logits_to_keep:]
    logits = lm_logits(params, config, hidden)
    labels = inputs["labels"]
    return CausalLMOutput(logits=logits, loss=causal_lm_loss(logits, labels) if labels is not None else None)


def pooled_index(config: LlamaConfig, input_ids):
    """Index of the token a sequence-classification head reads per row: HF's rightmost non-pad token."""
    b, t = input_ids.shape
    if config.pad_token_id is None:
        if b != 1:
            raise ValueError(f"input_ids has batch size {b}, but a config without pad_token_id can only pool batch size 1")
        return jnp.full((b,), t - 1)
    non_pad = (input_ids != config.pad_token_id).astype(jnp.int32)
    return jnp.argmax(jnp.arange(t) * non_pad, axis=-1)


def sequence_classification_head(params, config, out, inputs, *, deterministic, rng) -> SequenceClassifierOutput:
    """logits: [B, num_labels], read at the last non-pad token."""
    idx = pooled_index(config, inputs["input_ids"])
    pooled_hidden = jnp.take_along_axis(out.last_hidden_state, idx[:, None, None], axis=1)[:, 0]
    logits = L.dense(params["score"], pooled_hidden)
    labels = inputs["labels"]
    loss = None if labels is None else \
        sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return SequenceClassifierOutput(logits=logits, loss=loss)


def token_classification_head(params, config, out, inputs, *, deterministic, rng) -> TokenClassifierOutput:
    """logits: [B, T, num_labels] (dropout config.token_dropout before the score)."""
    return token_classification(params["score"], out.last_hidden_state, inputs["labels"], config.token_dropout,
                                deterministic=deterministic, rng=rng)


def question_answering_head(params, config, out, inputs, *, deterministic, rng) -> QuestionAnsweringOutput:
    """start_logits, end_logits: [B, T]."""
    return question_answering(params["qa_outputs"], out.last_hidden_state, inputs)


# ------------------------------------------------------------------------------------ generation
def init_cache(config: LlamaConfig, batch: int, length: int, dtype) -> dict:
    """Empty KV cache: k/v per-layer tuples of [B, kv_heads, length, head_dim], valid [B, length] bool, index (int32
    scalar). Heads-major, so that a decoding step's attention reads each head's keys as they lie: in the
    token-major order every step copied the cache into this order first (XLA:CPU, Llama-110M at 8 rows x 480
    slots: a decoding step 44.6 -> 40.5 ms)."""
    shape = (batch, config.kv_heads, length, config.dim_per_head)
    layers = range(config.num_hidden_layers)
    return {"k": tuple(jnp.zeros(shape, dtype) for _ in layers), "v": tuple(jnp.zeros(shape, dtype) for _ in layers),
            "valid": jnp.zeros((batch, length), bool), "index": jnp.zeros((), jnp.int32)}


def decoding_params(params, config: LlamaConfig) -> dict:
    """What :func:`cached_step` reads, prepared once per generate call: the stacked layer tree split into a tuple
    of per-layer trees (common.stacked)."""
    return dict(params, layers=split_layers(params["layers"], config.num_hidden_layers))


def cached_step(params, config: LlamaConfig, input_ids, attention_mask, position_ids, cache):
    """One prefill or decode step: writes T new tokens at cache["index"] and returns
    (next-token logits [B, V] float32 from the last position, new cache)."""
    out, cache = decoder(params, config, input_ids, attention_mask, position_ids, cache)
    return lm_logits(params, config, out.last_hidden_state[:, -1]).astype(jnp.float32), cache


def reorder_cache(cache: dict, beam_indices) -> dict:
    """Row i of the new cache is row beam_indices[i] of the old one (beam search's reordering, and the
    expansion of a prefilled cache to batch * num_beams rows). beam_indices: [N] int."""
    rows = lambda layers: tuple(take(a, beam_indices) for a in layers)  # noqa: E731
    return {"k": rows(cache["k"]), "v": rows(cache["v"]), "valid": take(cache["valid"], beam_indices),
            "index": cache["index"]}
