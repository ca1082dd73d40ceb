"""LED (Longformer Encoder-Decoder) as pure functions: the encoder-decoder (the family's backbone), its params'
init, what each head computes from the backbone's output (family.py declares the heads; common.family runs them),
and the generation hooks.

LED is BART with Longformer's sliding-window + global self-attention in the encoder. Param tree
(Le/Ld = encoder/decoder layers, H = d_model, V = vocab, Pe/Pd = encoder/decoder positions):

    shared/embedding                                                    [V, H] (padding_idx = pad_token_id)
    encoder/embed_positions/embedding [Pe, H], encoder/layernorm_embedding/{scale,bias}
    encoder/layers/...        Longformer's layer tree (attn/{query,...,value_global}, attn_output, intermediate,
                              output), every leaf stacked [Le, ...]: the encoder IS Longformer's layer stack
    decoder/embed_positions/embedding [Pd, H], decoder/layernorm_embedding/{scale,bias}
    decoder/layers/{self_attn,cross_attn}/{q_proj,k_proj,v_proj,out_proj}/{kernel [Ld, H, H], bias}
    decoder/layers/{self_attn_layer_norm,cross_attn_layer_norm,final_layer_norm}/{scale,bias}
    decoder/layers/fc1/{kernel [Ld, H, F], bias}, decoder/layers/fc2/{kernel [Ld, F, H], bias}
    final_logits_bias [V] (+ lm_head/kernel [H, V] when not tie_word_embeddings)  (conditional_generation)
    classification_head/{dense, out_proj}                                         (sequence_classification)
    qa_outputs/{kernel [H, 2], bias}                                              (question_answering)

Every head function (``led_jax.led_<head>``) has the signature ``f(params, config, input_ids, attention_mask=None,
global_attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None, <labels...>, max_num_global=None,
*, deterministic=True, rng=None, output_hidden_states=False, output_attentions=False) -> Seq2SeqOutput``. Without
decoder_input_ids the decoder reads ``shift_tokens_right`` of the labels (conditional generation, when given) or
of input_ids (see ``DefaultDecoderInputs``), as HF.
"""

from __future__ import annotations

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp

from common import layers as L
from common.attention import attention, causal_mask
from common.heads import classification_head, init_classification_head, span_head
from common.longformer_stack import encode_layers, init_layers, num_global_slots, pad_to_window
from common.losses import cross_entropy, sequence_classification_loss
from common.outputs import Seq2SeqOutput
from common.remat import remat
from common.sharding import BATCH, constrain, like, take
from common.stacked import layer_params, split_layers
from led_jax.config import LEDConfig

ATTN_PROJ = ("q_proj", "k_proj", "v_proj", "out_proj")
LN_EPS = 1e-5  # every LED LayerNorm is nn.LayerNorm(d_model)


# ------------------------------------------------------------------------------------------- init
def _dense(config: LEDConfig):
    return functools.partial(L.init_dense, std=config.init_std, bias=True)


def init_backbone(key, config: LEDConfig, dtype=jnp.float32) -> dict:
    """The shared embeddings, the encoder and the decoder with HF's init (normal(0, init_std), norms at 1, biases
    at 0)."""
    c, std, h = config, config.init_std, config.d_model
    ks = jax.random.split(key, 5)
    dense = functools.partial(_dense(config), dtype=dtype)

    def decoder_layer(k):
        kk = jax.random.split(k, 10)
        return {
            "self_attn": {n: dense(kk[j], h, h) for j, n in enumerate(ATTN_PROJ)},
            "self_attn_layer_norm": L.init_layer_norm(h, dtype),
            "cross_attn": {n: dense(kk[4 + j], h, h) for j, n in enumerate(ATTN_PROJ)},
            "cross_attn_layer_norm": L.init_layer_norm(h, dtype),
            "fc1": dense(kk[8], h, c.decoder_ffn_dim),
            "fc2": dense(kk[9], c.decoder_ffn_dim, h),
            "final_layer_norm": L.init_layer_norm(h, dtype),
        }

    return {
        "shared": L.init_embedding(ks[0], c.vocab_size, h, std=std, dtype=dtype),
        "encoder": {
            "embed_positions": L.init_embedding(ks[1], c.max_encoder_position_embeddings, h, std=std, dtype=dtype),
            "layernorm_embedding": L.init_layer_norm(h, dtype),
            "layers": init_layers(ks[2], h, c.encoder_ffn_dim, c.encoder_layers, std, dtype),
        },
        "decoder": {
            "embed_positions": L.init_embedding(ks[3], c.max_decoder_position_embeddings, h, std=std, dtype=dtype),
            "layernorm_embedding": L.init_layer_norm(h, dtype),
            "layers": jax.vmap(decoder_layer)(jax.random.split(ks[4], c.decoder_layers)),
        },
    }


def init_lm_head(key, config: LEDConfig, dtype) -> dict:
    """final_logits_bias (zeros, as HF's buffer), plus lm_head when it is not tied to the shared embeddings."""
    out = {"final_logits_bias": jnp.zeros((config.vocab_size,), dtype)}
    if not config.tie_word_embeddings:
        out["lm_head"] = L.init_dense(key, config.d_model, config.vocab_size, bias=False, std=config.init_std,
                                      dtype=dtype)
    return out


def init_classifier(key, config: LEDConfig, dtype) -> dict:
    return {"classification_head": init_classification_head(key, config.d_model, config.num_labels, config.init_std,
                                                            dtype)}


def init_span_head(key, config: LEDConfig, dtype) -> dict:
    return {"qa_outputs": _dense(config)(key, config.d_model, 2, dtype=dtype)}


# ------------------------------------------------------------------------------------------ pieces
def compute_dtype(params, config: LEDConfig):
    return jnp.dtype(config.compute_dtype) if config.compute_dtype else params["shared"]["embedding"].dtype


def shift_tokens_right(ids, pad_token_id: int, decoder_start_token_id: int):
    """HF ``shift_tokens_right``: [B, T] -> [B, T] starting with decoder_start_token_id; -100 becomes pad."""
    ids = jnp.asarray(ids)
    # full_like: the start column takes ids' sharding (operands of a concatenate must agree under Explicit axes).
    shifted = jnp.concatenate([jnp.full_like(ids[:, :1], decoder_start_token_id), ids[:, :-1]], 1)
    return jnp.where(shifted == -100, pad_token_id, shifted)


def encode(params, config: LEDConfig, input_ids, attention_mask=None, global_attention_mask=None,
           max_num_global=None, *, deterministic=True, rng=None, output_hidden_states=False,
           output_attentions=False):
    """LEDEncoder. input_ids: [B, S]; masks [B, S] (1/0). Returns Longformer's BaseModelOutput (un-padded)."""
    b, s = input_ids.shape
    dtype = compute_dtype(params, config)
    am = jnp.ones((b, s), bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    gm = jnp.zeros((b, s), bool) if global_attention_mask is None else jnp.asarray(global_attention_mask).astype(bool)
    x_slots = num_global_slots(max_num_global, am, gm)
    ids, am, gm = pad_to_window(config, config.pad_token_id, input_ids, am, gm)
    gm = gm & am  # HF's merge: a padding token is never global
    p = params["encoder"]
    # LED's positions have no offset: row j is position j (HF cut BART's +2 rows).
    x = L.embed(params["shared"], ids, dtype, config.pad_token_id) + \
        L.embed(p["embed_positions"], jnp.arange(ids.shape[1]), dtype)[None]  # a lookup: features replicated
    x = L.layer_norm(p["layernorm_embedding"], x, LN_EPS)
    x = L.dropout(x, config.dropout, deterministic=deterministic, rng=L.fold_rng(rng, 0))
    return encode_layers(p["layers"], config, x, am, gm, x_slots, s, deterministic=deterministic,
                         rng=L.fold_rng(rng, 1), output_hidden_states=output_hidden_states,
                         output_attentions=output_attentions)


def _heads(x, n):
    b, t, h = x.shape
    return x.reshape(b, t, n, h // n)


def _attend(p, config, h, kv, mask, *, deterministic, rng, output_attentions, kv_heads_major=False):
    """BART attention: q = q_proj(h) / sqrt(d) (scaled before the product, as HF), k/v given [B, S, heads, d]
    ([B, heads, S, d] with kv_heads_major). Returns (out_proj output [B, T, H], probs [B, heads, T, S] or None)."""
    n = config.decoder_attention_heads
    q = _heads(L.dense(p["q_proj"], h) * (config.d_model // n) ** -0.5, n)
    out, probs = attention(q, kv[0], kv[1], mask, scale=1.0, dropout_rate=config.attention_dropout,
                           deterministic=deterministic, rng=rng, return_probs=output_attentions,
                           kv_heads_major=kv_heads_major)
    b, t = h.shape[:2]
    return L.dense(p["out_proj"], out.reshape(b, t, -1)), probs


def cross_kv(params, config: LEDConfig, encoder_hidden):
    """Every decoder layer's cross-attention keys and values, heads-major: ([Ld, B, heads, S, d], same),
    computed once (while decoding, every step reads them as they are)."""
    n = config.decoder_attention_heads

    def one(p):
        k, v = (_heads(L.dense(p[name], encoder_hidden), n).transpose(0, 2, 1, 3) for name in ("k_proj", "v_proj"))
        return k, v

    return jax.lax.map(one, params["decoder"]["layers"]["cross_attn"])


def decode(params, config: LEDConfig, decoder_input_ids, decoder_attention_mask, encoder_hidden, encoder_mask,
           cache=None, context=None, *, position_ids=None, deterministic=True, rng=None, output_hidden_states=False,
           output_attentions=False):
    """LEDDecoder. decoder_input_ids: [B, T]; encoder_hidden: [B, S, H]; encoder_mask: [B, S] bool or None.

    With ``cache`` (see :func:`init_cache`) the new tokens are written at ``cache["index"]`` and attend to the
    cached keys. With ``context`` (see :func:`encoder_context`) the cross-attention keys/values come from it and
    ``encoder_hidden`` is not read (pass None). position_ids [B, T]: each token's position (default: the cache
    index onward, as HF's past length, for every row alike). Returns (last [B, T, H], hidden_states, self-attention probs,
    cross-attention probs, new cache or None).
    """
    b, t = decoder_input_ids.shape
    dtype = compute_dtype(params, config)
    d = params["decoder"]
    start = 0 if cache is None else cache["index"]
    if position_ids is None:  # no offset, and not derived from the mask (HF)
        position_embeds = L.embed(d["embed_positions"], start + jnp.arange(t), dtype)[None]
    else:
        position_embeds = L.embed(d["embed_positions"], position_ids, dtype)
    x = L.embed(params["shared"], decoder_input_ids, dtype, config.pad_token_id) + position_embeds
    x = L.layer_norm(d["layernorm_embedding"], x, LN_EPS)
    x = constrain(L.dropout(x, config.dropout, deterministic=deterministic, rng=L.fold_rng(rng, 0)), BATCH, None, None)

    new_valid = jnp.ones((b, t), bool) if decoder_attention_mask is None else decoder_attention_mask.astype(bool)
    if cache is None:
        # HF builds no causal mask for a single token: it then attends to itself whatever its mask says.
        self_mask = causal_mask(new_valid, jnp.arange(t)) if t > 1 else jnp.ones((b, 1, 1), bool)
    else:
        key_valid = jax.lax.dynamic_update_slice(cache["valid"], like(new_valid, cache["valid"]), (0, start))
        self_mask = causal_mask(key_valid, start + jnp.arange(t))
    cross = cross_kv(params, config, encoder_hidden) if context is None else (context["cross_k"], context["cross_v"])
    s = cross[0][0].shape[2]
    enc_valid = jnp.ones((b, s), bool) if encoder_mask is None else encoder_mask.astype(bool)
    cross_mask = jnp.broadcast_to(enc_valid[:, None, :], (b, t, s))
    n = config.decoder_attention_heads
    drop = functools.partial(L.dropout, rate=config.dropout, deterministic=deterministic)
    layer_rng = L.fold_rng(rng, 1)

    def layer(h, xs):
        p, i, cross_k, cross_v, ck, cv = xs  # ck, cv: this layer's cached keys/values [B, length, heads, d]
        r = None if layer_rng is None else jax.random.fold_in(layer_rng, i)
        k, v = _heads(L.dense(p["self_attn"]["k_proj"], h), n), _heads(L.dense(p["self_attn"]["v_proj"], h), n)
        if ck is not None:
            ck = jax.lax.dynamic_update_slice(ck, like(k.astype(ck.dtype), ck), (0, start, 0, 0))
            cv = jax.lax.dynamic_update_slice(cv, like(v.astype(cv.dtype), cv), (0, start, 0, 0))
            k, v = ck.astype(dtype), cv.astype(dtype)
        a, self_probs = _attend(p["self_attn"], config, h, (k, v), self_mask, deterministic=deterministic,
                                rng=L.fold_rng(r, 0), output_attentions=output_attentions)
        h = L.layer_norm(p["self_attn_layer_norm"], h + drop(a, rng=L.fold_rng(r, 1)), LN_EPS)
        a, cross_probs = _attend(p["cross_attn"], config, h, (cross_k.astype(dtype), cross_v.astype(dtype)),
                                 cross_mask, deterministic=deterministic, rng=L.fold_rng(r, 2),
                                 output_attentions=output_attentions, kv_heads_major=True)
        h = L.layer_norm(p["cross_attn_layer_norm"], h + drop(a, rng=L.fold_rng(r, 3)), LN_EPS)
        f = L.activation(config.activation_function)(L.dense(p["fc1"], h))
        f = L.dropout(f, config.activation_dropout, deterministic=deterministic, rng=L.fold_rng(r, 4))
        h = L.layer_norm(p["final_layer_norm"], h + drop(L.dense(p["fc2"], f), rng=L.fold_rng(r, 5)), LN_EPS)
        h = constrain(h, BATCH, None, None)
        return h, (h if output_hidden_states else None, self_probs, cross_probs, ck, cv)

    nl = config.decoder_layers
    if cache is None:
        xs = (d["layers"], jnp.arange(nl), cross[0], cross[1], None, None)
        last, (per_layer, self_probs, cross_probs, _, _) = jax.lax.scan(
            remat(layer, config.remat_policy), x, xs, unroll=1 if config.scan_layers else nl)
        new_cache = None
    else:
        # Decoding: a Python loop over per-layer weights, cross and self keys/values (see decoding_params,
        # encoder_context, init_cache), so that every step reads each in place; a scan over the stacked arrays
        # slices a copy of every weight at every step, tripling the memory traffic of a memory-bound step.
        last, outs = x, []
        for i in range(nl):
            xs = (layer_params(d["layers"], i), i, cross[0][i], cross[1][i], cache["k"][i], cache["v"][i])
            last, out = layer(last, xs)
            outs.append(out)
        per_layer, self_probs, cross_probs, ck, cv = (tuple(o[j] for o in outs) for j in range(5))
        per_layer, self_probs, cross_probs = (None if a[0] is None else jnp.stack(a)
                                              for a in (per_layer, self_probs, cross_probs))
        new_cache = dict(cache, k=ck, v=cv, valid=key_valid, index=start + t)
    hidden_states = (x,) + tuple(per_layer[j] for j in range(nl)) if output_hidden_states else None
    self_attn = tuple(self_probs[j] for j in range(nl)) if output_attentions else None
    cross_attn = tuple(cross_probs[j] for j in range(nl)) if output_attentions else None
    return last, hidden_states, self_attn, cross_attn, new_cache


def decoding_params(params, config: LEDConfig) -> dict:
    """What :func:`cached_step` reads, prepared once per generate call: the decoder's stacked layer tree split
    into a tuple of per-layer trees (each weight then is its own buffer, read in place at every step); the
    encoder, already run, left out."""
    out = {name: value for name, value in params.items() if name != "encoder"}
    out["decoder"] = dict(params["decoder"], layers=split_layers(params["decoder"]["layers"], config.decoder_layers))
    return out


def init_cache(config: LEDConfig, batch: int, length: int, dtype) -> dict:
    """An empty decoder self-attention cache for ``length`` target positions: per-layer tuples of keys and values
    [B, length, heads, d], key validity [B, length] and the write index."""
    n = config.decoder_attention_heads
    shape = (batch, length, n, config.d_model // n)
    layers = range(config.decoder_layers)
    return {"k": tuple(jnp.zeros(shape, dtype) for _ in layers), "v": tuple(jnp.zeros(shape, dtype) for _ in layers),
            "valid": jnp.zeros((batch, length), bool), "index": jnp.int32(0)}


def encoder_context(params, config: LEDConfig, input_ids, attention_mask=None, global_attention_mask=None,
                    max_num_global=None) -> dict:
    """Everything the decoder reads from the encoder while generating, computed once per input:
    per-layer tuples of cross-attention keys ``cross_k`` and values ``cross_v`` [B, heads, S, d], and
    ``encoder_mask`` [B, S] bool."""
    enc = encode(params, config, input_ids, attention_mask, global_attention_mask, max_num_global)
    k, v = cross_kv(params, config, enc.last_hidden_state)
    mask = jnp.ones(input_ids.shape, bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    layers = range(config.decoder_layers)
    return {"cross_k": tuple(k[i] for i in layers), "cross_v": tuple(v[i] for i in layers), "encoder_mask": mask}


def cached_step(params, config: LEDConfig, input_ids, attention_mask, position_ids, cache, *, context):
    """One generation step of LEDForConditionalGeneration. input_ids, attention_mask: [B, T] decoder tokens;
    position_ids: [B, T] (generation gives each row's own count, which for LED's unpadded decoder prompts is the
    cache index, as HF's past length; a row refilled by continuous batching starts its own count); context:
    :func:`encoder_context` of the input. Returns (logits of the last token [B, V] float32, cache)."""
    last, _, _, _, cache = decode(params, config, input_ids, attention_mask, None, context["encoder_mask"], cache,
                                  context, position_ids=position_ids)
    return lm_logits(params, config, last[:, -1]).astype(jnp.float32), cache


def reorder_cache(cache: dict, rows) -> dict:
    """Rows ``rows`` [N] of a cache or a context (beam search): every array but the write index is batch-first."""
    return {name: x if name == "index" else jax.tree.map(lambda a: take(a, rows), x)
            for name, x in cache.items()}


def lm_logits(params, config: LEDConfig, hidden):
    """lm_head (tied to the shared embeddings unless tie_word_embeddings is False) + final_logits_bias."""
    if config.tie_word_embeddings:
        logits = L.matmul(hidden, params["shared"]["embedding"], transposed=True)
    else:
        logits = L.dense(params["lm_head"], hidden)
    return logits + params["final_logits_bias"].astype(hidden.dtype)


# -------------------------------------------------------------------------------------- backbone
@flax.struct.dataclass
class BackboneOutput(Seq2SeqOutput):
    """The encoder-decoder's output: LEDModel's fields, the decoder's last hidden state [B, T, H] under its own
    name. A head's Seq2SeqOutput has no such field, so run_head does not carry it into the heads' outputs (HF's
    head outputs have no last_hidden_state); ``model_head`` names it last_hidden_state."""

    decoder_last_hidden_state: jax.Array | None = None


def seq2seq(params, config: LEDConfig, input_ids, attention_mask=None, global_attention_mask=None,
            decoder_input_ids=None, decoder_attention_mask=None, max_num_global=None, *, deterministic=True, rng=None,
            output_hidden_states=False, output_attentions=False) -> BackboneOutput:
    """The encoder, then the decoder over its output. input_ids: [B, S]; decoder_input_ids: [B, T] (required:
    ``DefaultDecoderInputs`` fills HF's default in). Encoder dropout from fold(rng, 0), the decoder's from
    fold(rng, 1)."""
    if decoder_input_ids is None:
        raise ValueError("decoder_input_ids is None: the backbone needs them (a head's prepare fills HF's default)")
    enc = encode(params, config, input_ids, attention_mask, global_attention_mask, max_num_global,
                 deterministic=deterministic, rng=L.fold_rng(rng, 0), output_hidden_states=output_hidden_states,
                 output_attentions=output_attentions)
    enc_mask = None if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    dec_mask = None if decoder_attention_mask is None else jnp.asarray(decoder_attention_mask)
    last, hs, self_attn, cross_attn, _ = decode(
        params, config, decoder_input_ids, dec_mask, enc.last_hidden_state, enc_mask, deterministic=deterministic,
        rng=L.fold_rng(rng, 1), output_hidden_states=output_hidden_states, output_attentions=output_attentions)
    return BackboneOutput(
        decoder_last_hidden_state=last, decoder_hidden_states=hs, decoder_attentions=self_attn,
        cross_attentions=cross_attn, encoder_last_hidden_state=enc.last_hidden_state,
        encoder_hidden_states=enc.hidden_states, encoder_attentions=enc.attentions,
        encoder_global_attentions=enc.global_attentions)


@dataclasses.dataclass(frozen=True)
class DefaultDecoderInputs:
    """``Head.prepare`` of every LED head: HF's decoder_input_ids when none are given, ``shift_tokens_right`` of
    the labels (with ``from_labels``, when labels are given: conditional generation) or else of input_ids."""

    from_labels: bool = False

    def __call__(self, config: LEDConfig, inputs: dict) -> dict:
        if inputs["decoder_input_ids"] is not None:
            return inputs
        source = inputs["labels"] if self.from_labels and inputs["labels"] is not None else inputs["input_ids"]
        return dict(inputs, decoder_input_ids=shift_tokens_right(source, config.pad_token_id,
                                                                 config.decoder_start_token_id))


# ----------------------------------------------------------------------------------------- heads
# Each head: (params, config, out, inputs, *, deterministic, rng) -> Seq2SeqOutput; out is seq2seq(...)'s output,
# inputs the head function's arguments as given (see common.family); the decoder / encoder fields are carried over.
def model_head(params, config, out, inputs, *, deterministic, rng) -> Seq2SeqOutput:
    """LEDModel. last_hidden_state: the decoder's [B, T, H]; encoder_last_hidden_state: [B, S, H]."""
    return Seq2SeqOutput(last_hidden_state=out.decoder_last_hidden_state)


def conditional_generation_head(params, config, out, inputs, *, deterministic, rng) -> Seq2SeqOutput:
    """logits: [B, T, V]; loss: CE over labels != -100 (the decoder reads shift_tokens_right(labels) when no
    decoder_input_ids are given)."""
    logits = lm_logits(params, config, out.decoder_last_hidden_state)
    labels = inputs["labels"]
    return Seq2SeqOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def eos_index(input_ids, eos_token_id: int):
    """Position of the last eos token of each row: [B, T] -> [B] (HF 4.x pools the decoder state there)."""
    t = input_ids.shape[-1]
    return t - 1 - jnp.argmax(jnp.flip(input_ids == eos_token_id, axis=-1), axis=-1)


def sequence_classification_head(params, config, out, inputs, *, deterministic, rng) -> Seq2SeqOutput:
    """LEDForSequenceClassification (transformers 4.x; removed in 5.x). logits: [B, num_labels] from the decoder
    state at the last eos token of input_ids, through dropout -> dense -> tanh -> dropout -> out_proj."""
    last = out.decoder_last_hidden_state
    eos = config.eos_token_ids[0]
    pooled = jnp.take_along_axis(last, eos_index(inputs["input_ids"], eos)[:, None, None], axis=1)[:, 0]
    logits = classification_head(params["classification_head"], pooled, config.classifier_dropout,
                                 deterministic=deterministic, rng=rng)
    labels = inputs["labels"]
    loss = None if labels is None else \
        sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return Seq2SeqOutput(logits=logits, loss=loss)


def question_answering_head(params, config, out, inputs, *, deterministic, rng) -> Seq2SeqOutput:
    """start_logits, end_logits: [B, T] over the DECODER positions (HF)."""
    start, end, loss = span_head(params["qa_outputs"], out.decoder_last_hidden_state, inputs["start_positions"],
                                 inputs["end_positions"])
    return Seq2SeqOutput(start_logits=start, end_logits=end, loss=loss)


__all__ = ["init_backbone", "init_lm_head", "init_classifier", "init_span_head", "init_cache", "encoder_context",
           "decoding_params", "cached_step", "reorder_cache", "encode", "decode", "cross_kv", "shift_tokens_right",
           "seq2seq", "DefaultDecoderInputs", "model_head", "conditional_generation_head",
           "sequence_classification_head", "question_answering_head"]
