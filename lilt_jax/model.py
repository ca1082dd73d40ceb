"""LiLT (Language-independent Layout Transformer) as pure functions: the encoder (the family's backbone), its
params' init, and what each head computes from the encoder's output (family.py declares the heads; common.family
runs them).

Two streams run side by side through every layer: the text stream (a RoBERTa-style encoder, width H) and the
layout stream (width Hl = H / channel_shrink_ratio, from the token boxes). They meet in the attention (BiACM):
both streams use one softmax over ``q·k / sqrt(d) + ql·kl / sqrt(d / ratio)``; the text stream then reads its
values, the layout stream its own. Only the text stream is returned.

Param tree (L = num_hidden_layers, I = intermediate_size, Il = I / ratio, B2 = max_2d_position_embeddings):

    embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding    [V|P|T, H]
    embeddings/layer_norm/{scale,bias}                                                   [H]
    layout_embeddings/{x,y,h,w}_position_embeddings/embedding                            [B2, H / 6]
    layout_embeddings/box_position_embeddings/embedding                                  [P, Hl]
    layout_embeddings/box_linear_embeddings/{kernel [H, Hl], bias}, layout_embeddings/layer_norm   [Hl]
    layers/attn/{query,key,value}/{kernel [L, H, H], bias}
    layers/attn/{layout_query,layout_key,layout_value}/{kernel [L, Hl, Hl], bias}
    layers/attn_output/{dense, layer_norm}, layers/layout_attn_output/{dense [L, Hl, Hl], layer_norm}
    layers/intermediate/dense [L, H, I], layers/output/{dense [L, I, H], layer_norm}
    layers/layout_intermediate/dense [L, Hl, Il], layers/layout_output/{dense [L, Il, Hl], layer_norm}
    pooler/dense                         (model)
    classifier/{dense, out_proj}         (sequence_classification)
    classifier/{kernel [H, labels], bias} (token_classification)
    qa_outputs/{kernel [H, 2], bias}     (question_answering)

Every head function (``lilt_jax.lilt_<head>``): ``f(params, config, input_ids, bbox=None, attention_mask=None,
token_type_ids=None, position_ids=None, <labels...>, *, deterministic=True, rng=None, output_hidden_states=False,
output_attentions=False)``; bbox: [B, T, 4] int (x0, y0, x1, y1), validated on the host (JAX would wrap
negative and clamp large embedding indices).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from common import layers as L
from common.heads import classification_head, init_classification_head, question_answering, token_classification
from common.losses import sequence_classification_loss
from common.outputs import BaseModelOutput, QuestionAnsweringOutput, SequenceClassifierOutput, TokenClassifierOutput
from common.remat import remat
from common.roberta import create_position_ids_from_input_ids, init_embeddings, pooler, roberta_embeddings
from common.sharding import BATCH, constrain
from lilt_jax.config import LiltConfig

BOX_TABLES = ("x_position_embeddings", "y_position_embeddings", "h_position_embeddings", "w_position_embeddings")


# ------------------------------------------------------------------------------------------- init
def _dense(config: LiltConfig):
    return functools.partial(L.init_dense, std=config.initializer_range, bias=True)


def init_backbone(key, config: LiltConfig, dtype=jnp.float32) -> dict:
    """The text and layout embeddings and the layer stack with HF's init (normal(0, initializer_range), norms at
    1, biases at 0)."""
    k_emb, k_layout, k_layers = jax.random.split(key, 3)
    return {"embeddings": init_embeddings(k_emb, config, dtype),
            "layout_embeddings": _init_layout_embeddings(k_layout, config, dtype),
            "layers": _init_layers(k_layers, config, dtype)}


def _init_layout_embeddings(key, c: LiltConfig, dtype) -> dict:
    embed = functools.partial(L.init_embedding, std=c.initializer_range, dtype=dtype)
    kl = jax.random.split(key, 6)
    return {
        **{name: embed(kl[j], c.max_2d_position_embeddings, c.hidden_size // 6) for j, name in enumerate(BOX_TABLES)},
        "box_position_embeddings": embed(kl[4], c.max_position_embeddings, c.layout_size),
        "box_linear_embeddings": _dense(c)(kl[5], c.hidden_size, c.layout_size, dtype=dtype),
        "layer_norm": L.init_layer_norm(c.layout_size, dtype),
    }


def init_pooler(key, config: LiltConfig, dtype) -> dict:
    h = config.hidden_size
    return {"pooler": {"dense": _dense(config)(key, h, h, dtype=dtype)}}


def init_classifier(key, config: LiltConfig, dtype) -> dict:
    return {"classifier": init_classification_head(key, config.hidden_size, config.num_labels,
                                                   config.initializer_range, dtype)}


def init_token_head(key, config: LiltConfig, dtype) -> dict:
    return {"classifier": _dense(config)(key, config.hidden_size, config.num_labels, dtype=dtype)}


def init_span_head(key, config: LiltConfig, dtype) -> dict:
    return {"qa_outputs": _dense(config)(key, config.hidden_size, 2, dtype=dtype)}


def _init_layers(key, c: LiltConfig, dtype) -> dict:
    h, hl, i = c.hidden_size, c.layout_size, c.intermediate_size
    il = i // c.channel_shrink_ratio
    dense = functools.partial(_dense(c), dtype=dtype)

    def one_layer(k):
        ks = jax.random.split(k, 12)
        return {
            "attn": {**{n: dense(ks[j], h, h) for j, n in enumerate(("query", "key", "value"))},
                     **{f"layout_{n}": dense(ks[3 + j], hl, hl) for j, n in enumerate(("query", "key", "value"))}},
            "attn_output": {"dense": dense(ks[6], h, h), "layer_norm": L.init_layer_norm(h, dtype)},
            "layout_attn_output": {"dense": dense(ks[7], hl, hl), "layer_norm": L.init_layer_norm(hl, dtype)},
            "intermediate": {"dense": dense(ks[8], h, i)},
            "output": {"dense": dense(ks[9], i, h), "layer_norm": L.init_layer_norm(h, dtype)},
            "layout_intermediate": {"dense": dense(ks[10], hl, il)},
            "layout_output": {"dense": dense(ks[11], il, hl), "layer_norm": L.init_layer_norm(hl, dtype)},
        }

    return jax.vmap(one_layer)(jax.random.split(key, c.num_hidden_layers))


# ---------------------------------------------------------------------------------------- blocks
def compute_dtype(params, config: LiltConfig):
    return jnp.dtype(config.compute_dtype) if config.compute_dtype else \
        params["embeddings"]["word_embeddings"]["embedding"].dtype


def layout_embeddings(p, config: LiltConfig, bbox, position_ids, dtype, *, deterministic, rng):
    """bbox: [B, T, 4] (x0, y0, x1, y1) -> [B, T, Hl]: the six coordinate embeddings (x0, y0, x1, y1, height,
    width; HF's order) concatenated to H, projected to Hl, plus the box position embedding (the text stream's
    positions), layer norm, dropout."""
    x0, y0, x1, y1 = (bbox[..., j] for j in range(4))
    x_table, y_table = p["x_position_embeddings"], p["y_position_embeddings"]
    parts = [L.embed(x_table, x0, dtype), L.embed(y_table, y0, dtype), L.embed(x_table, x1, dtype),
             L.embed(y_table, y1, dtype), L.embed(p["h_position_embeddings"], y1 - y0, dtype),
             L.embed(p["w_position_embeddings"], x1 - x0, dtype)]
    x = L.dense(p["box_linear_embeddings"], jnp.concatenate(parts, axis=-1))
    x = x + L.embed(p["box_position_embeddings"], position_ids, dtype, config.pad_token_id)
    x = L.layer_norm(p["layer_norm"], x, config.layer_norm_eps)
    return L.dropout(x, config.hidden_dropout_prob, deterministic=deterministic, rng=rng)


def _heads(x, n):
    b, t, h = x.shape
    return x.reshape(b, t, n, h // n)


def bi_attention(p, config: LiltConfig, text, layout, attention_mask, *, deterministic, rng, output_attentions):
    """BiACM self-attention. text: [B, T, H]; layout: [B, T, Hl]; attention_mask: [B, T] bool.

    Returns (text context [B, T, H], layout context [B, T, Hl], probs [B, heads, T, T] or None). Scores are
    divided after the product, as HF; HF computes the same softmax twice (once per stream, on bit-identical
    scores), so it is computed once here; dropout draws a separate mask for each stream, as HF's two calls do.
    """
    n = config.num_attention_heads
    q, k, v = (_heads(L.dense(p[name], text), n) for name in ("query", "key", "value"))
    ql, kl, vl = (_heads(L.dense(p[name], layout), n) for name in ("layout_query", "layout_key", "layout_value"))
    rate = config.attention_probs_dropout_prob
    b, t = text.shape[:2]
    if (deterministic or rate == 0.0) and not output_attentions and b > 1 and jax.default_backend() == "cpu" \
            and jax.sharding.get_abstract_mesh().empty:
        # On CPU, one batch row at a time: a row's scores ([heads, T, T] float32, 12.6 MB for 12 heads at 512
        # tokens) stay in cache through the mask, softmax and both products, where the whole batch's (100 MB at 8
        # rows) went to memory and back for each (LiLT-base 8 x 512 on a 2-core Xeon: a layer's attention 195 ->
        # 115 ms, the forward 5.33 -> 4.75 s). Accelerators keep the batched form (a loop would serialise their
        # kernels), and so does a mesh (its batch axis is sharded).
        def one_row(row):
            ctx, lctx, _ = _attend(config, *(x[None] for x in row), dtype=text.dtype)
            return ctx[0], lctx[0]

        ctx, lctx = jax.lax.map(one_row, (q, k, v, ql, kl, vl, attention_mask))
        return ctx.reshape(b, t, -1), lctx.reshape(b, t, -1), None
    ctx, lctx, text_probs = _attend(config, q, k, v, ql, kl, vl, attention_mask, dtype=text.dtype, rate=rate,
                                    deterministic=deterministic, rng=rng)
    return ctx.reshape(b, t, -1), lctx.reshape(b, t, -1), (text_probs if output_attentions else None)


def _attend(config: LiltConfig, q, k, v, ql, kl, vl, attention_mask, *, dtype, rate=0.0, deterministic=True,
            rng=None):
    """q, k, v: [B, T, heads, d]; ql, kl, vl: [B, T, heads, d / ratio]; attention_mask: [B, T] bool ->
    (text context [B, T, heads, d], layout context [B, T, heads, d / ratio], text probs [B, heads, T, T])."""
    d = config.head_dim
    dl = d // config.channel_shrink_ratio
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) / math.sqrt(d)
    layout_scores = jnp.einsum("bqhd,bkhd->bhqk", ql, kl, preferred_element_type=jnp.float32) / math.sqrt(dl)
    scores = scores + layout_scores
    # HF adds finfo.min to padded keys (additive: a fully padded row stays uniform, never NaN).
    scores = scores + jnp.where(attention_mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    text_probs = L.dropout(probs, rate, deterministic=deterministic, rng=L.fold_rng(rng, 0))
    layout_probs = L.dropout(probs, rate, deterministic=deterministic, rng=L.fold_rng(rng, 1))
    ctx = jnp.einsum("bhqk,bkhd->bqhd", text_probs, v, preferred_element_type=jnp.float32).astype(dtype)
    lctx = jnp.einsum("bhqk,bkhd->bqhd", layout_probs, vl, preferred_element_type=jnp.float32).astype(dtype)
    return ctx, lctx, text_probs


def _layer(p, config: LiltConfig, text, layout, attention_mask, *, deterministic, rng, output_attentions):
    """One LiltLayer (post-LN, BERT style, in both streams). Returns (text, layout, probs)."""
    eps = config.layer_norm_eps
    drop = functools.partial(L.dropout, rate=config.hidden_dropout_prob, deterministic=deterministic)
    act = L.activation(config.hidden_act)
    ctx, lctx, probs = bi_attention(p["attn"], config, text, layout, attention_mask, deterministic=deterministic,
                                    rng=L.fold_rng(rng, 0), output_attentions=output_attentions)

    def sublayer(out, x, residual, r):  # dense -> dropout -> layer norm of (out + residual)
        return L.layer_norm(out["layer_norm"], drop(L.dense(out["dense"], x), rng=L.fold_rng(rng, r)) + residual, eps)

    a = sublayer(p["attn_output"], ctx, text, 1)
    al = sublayer(p["layout_attn_output"], lctx, layout, 2)
    text = sublayer(p["output"], act(L.dense(p["intermediate"]["dense"], a)), a, 3)
    layout = sublayer(p["layout_output"], act(L.dense(p["layout_intermediate"]["dense"], al)), al, 4)
    return constrain(text, BATCH, None, None), constrain(layout, BATCH, None, None), probs


def encoder(params, config: LiltConfig, input_ids, bbox=None, attention_mask=None, token_type_ids=None,
            position_ids=None, *, deterministic=True, rng=None, output_hidden_states=False,
            output_attentions=False) -> BaseModelOutput:
    """LiltModel without the pooler. input_ids: [B, T]; bbox: [B, T, 4] (default zeros); attention_mask: [B, T]."""
    b, t = input_ids.shape
    dtype = compute_dtype(params, config)
    mask = jnp.ones((b, t), bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    bbox = jnp.zeros((b, t, 4), jnp.int32) if bbox is None else jnp.asarray(bbox)
    token_type_ids = jnp.zeros((b, t), jnp.int32) if token_type_ids is None else token_type_ids
    if position_ids is None:
        position_ids = create_position_ids_from_input_ids(input_ids, config.pad_token_id)
    text = roberta_embeddings(params["embeddings"], config, input_ids, token_type_ids, position_ids, dtype,
                              deterministic=deterministic, rng=L.fold_rng(rng, 0))
    layout = layout_embeddings(params["layout_embeddings"], config, bbox, position_ids, dtype,
                               deterministic=deterministic, rng=L.fold_rng(rng, 1))
    layer_rng = L.fold_rng(rng, 2)

    def body(carry, xs):
        p, i = xs
        r = None if layer_rng is None else jax.random.fold_in(layer_rng, i)
        text, layout = carry
        text, layout, probs = _layer(p, config, text, layout, mask, deterministic=deterministic, rng=r,
                                     output_attentions=output_attentions)
        return (text, layout), (text if output_hidden_states else None, probs)

    n = config.num_hidden_layers
    text, layout = constrain(text, BATCH, None, None), constrain(layout, BATCH, None, None)  # as the layers' carry
    (last, _), (per_layer, probs) = jax.lax.scan(remat(body, config.remat_policy), (text, layout),
                                                 (params["layers"], jnp.arange(n)),
                                                 unroll=1 if config.scan_layers else n)
    hidden_states = (text,) + tuple(per_layer[j] for j in range(n)) if output_hidden_states else None
    attentions = tuple(probs[j] for j in range(n)) if output_attentions else None
    return BaseModelOutput(last_hidden_state=last, hidden_states=hidden_states, attentions=attentions)


# ----------------------------------------------------------------------------------------- heads
# Each head: (params, config, out, inputs, *, deterministic, rng) -> output; out is encoder(...)'s output,
# inputs the head function's arguments as given (see common.family).
def model_head(params, config: LiltConfig, out, inputs, *, deterministic, rng) -> BaseModelOutput:
    """last_hidden_state: [B, T, H] (the text stream); pooler_output: [B, H]."""
    return out.replace(pooler_output=pooler(params["pooler"], out.last_hidden_state))


def sequence_classification_head(params, config: LiltConfig, out, inputs, *, deterministic,
                                 rng) -> SequenceClassifierOutput:
    """logits: [B, num_labels] from <s>: dropout, dense, tanh, dropout, out_proj."""
    logits = classification_head(params["classifier"], out.last_hidden_state[:, 0], config.classifier_rate,
                                 deterministic=deterministic, rng=rng)
    labels = inputs["labels"]
    loss = None if labels is None else \
        sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return SequenceClassifierOutput(logits=logits, loss=loss)


def token_classification_head(params, config: LiltConfig, out, inputs, *, deterministic,
                              rng) -> TokenClassifierOutput:
    """logits: [B, T, num_labels]; loss: CE over labels != -100."""
    return token_classification(params["classifier"], out.last_hidden_state, inputs["labels"],
                                config.classifier_rate, deterministic=deterministic, rng=rng)


def question_answering_head(params, config: LiltConfig, out, inputs, *, deterministic,
                            rng) -> QuestionAnsweringOutput:
    """start_logits, end_logits: [B, T]; loss when start_positions and end_positions are given."""
    return question_answering(params["qa_outputs"], out.last_hidden_state, inputs)


__all__ = ["BOX_TABLES", "encoder", "init_backbone", "init_classifier", "init_pooler", "init_span_head",
           "init_token_head", "model_head", "question_answering_head", "sequence_classification_head",
           "token_classification_head"]
