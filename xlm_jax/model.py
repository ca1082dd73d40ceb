"""XLM (cross-lingual language model pre-training) as pure functions: the encoder (the family's backbone), its
params' init, what each head computes from the encoder's output (family.py declares the heads; common.family runs
them), and the generation hooks.

A post-LN transformer encoder: word + position (+ language) embeddings, layer norm, then layers of
``x = LN1(x + MHA(x)); x = LN2(x + FFN(x))`` with the padding rows zeroed after the embeddings and after every
layer. The padding mask comes from ``attention_mask`` or, without one, from ``lengths`` (default: the count of
non-pad tokens, assuming right padding, as HF). Causal configs attend to a lower triangle only, and then, as HF,
padded keys are *not* masked.

Param tree (L = n_layers, D = emb_dim, F = 4 D):

    embeddings/embedding [V, D], position_embeddings/embedding [P, D], lang_embeddings/embedding [n_langs, D]
    (only with n_langs > 1 and use_lang_emb), layer_norm_emb/{scale,bias}
    layers/attn/{q_lin,k_lin,v_lin,out_lin}/{kernel [L, D, D], bias [L, D]}, layers/layer_norm1
    layers/ffn/lin1 {kernel [L, D, F]}, layers/ffn/lin2 {kernel [L, F, D]}, layers/layer_norm2
    pred_layer/bias [V] (with_lm_head; the weight is the word embedding, or pred_layer/weight [V, D] untied)
    sequence_summary/summary {kernel [D, labels], bias} (sequence_classification, multiple_choice, if used)
    logits_proj {kernel [labels, 1], bias} (multiple_choice)
    classifier (token_classification), qa_outputs {kernel [D, 2]} (question_answering_simple)
    qa_outputs/{start_logits/dense, end_logits/{dense_0, layer_norm, dense_1}, answer_class/{dense_0, dense_1}}
        (question_answering: the SQuAD head)

Every head function (``xlm_jax.xlm_<head>``): ``f(params, config, input_ids, attention_mask=None, langs=None,
token_type_ids=None, position_ids=None, lengths=None, <labels...>, *, deterministic=True, rng=None,
output_hidden_states=False, output_attentions=False)`` with input_ids [B, T] ([B, C, T] and no ``lengths`` for
multiple choice).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from common import layers as L
from common.attention import attention
from common.heads import choice_logits, flatten_choices, question_answering, token_classification
from common.losses import binary_cross_entropy_with_logits, cross_entropy, sequence_classification_loss
from common.outputs import BaseModelOutput, MaskedLMOutput, QuestionAnsweringOutput, SequenceClassifierOutput, \
    SquadHeadOutput, TokenClassifierOutput
from common.remat import remat
from common.sharding import BATCH, constrain, like, take
from xlm_jax.config import XLMConfig

# ------------------------------------------------------------------------------------------- init
def sinusoidal_table(n_pos: int, dim: int) -> np.ndarray:
    """HF's create_sinusoidal_embeddings: angle p / 10000^(2 floor(j/2) / dim), sin on even and cos on odd
    columns, computed in float64. Returns [n_pos, dim] float32."""
    angle = np.arange(n_pos)[:, None] / np.power(10000, 2 * (np.arange(dim) // 2) / dim)[None, :]
    table = np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32)


def _dense(config: XLMConfig, dtype):
    return functools.partial(L.init_dense, std=config.init_std, bias=True, dtype=dtype)


def init_backbone(key, config: XLMConfig, dtype=jnp.float32) -> dict:
    """The encoder with HF's init: embeddings normal(0, embed_init_std) (the pad row zero; sinusoidal positions
    when configured), linears normal(0, init_std), norms at 1, biases at 0."""
    c, d = config, config.emb_dim
    k_emb, k_pos, k_lang, k_layers = jax.random.split(key, 4)
    dense = _dense(c, dtype)
    embed = functools.partial(L.init_embedding, std=c.embed_init_std, dtype=dtype)
    words = embed(k_emb, c.vocab_size, d)
    words["embedding"] = words["embedding"].at[c.pad_token_id].set(0)
    positions = ({"embedding": jnp.asarray(sinusoidal_table(c.max_position_embeddings, d), dtype)}
                 if c.sinusoidal_embeddings else embed(k_pos, c.max_position_embeddings, d))
    params = {"embeddings": words, "position_embeddings": positions, "layer_norm_emb": L.init_layer_norm(d, dtype)}
    if c.has_lang_embeddings:
        params["lang_embeddings"] = embed(k_lang, c.n_langs, d)

    def one_layer(k):
        ks = jax.random.split(k, 6)
        names = ("q_lin", "k_lin", "v_lin", "out_lin")
        return {"attn": {n: dense(ks[j], d, d) for j, n in enumerate(names)},
                "layer_norm1": L.init_layer_norm(d, dtype),
                "ffn": {"lin1": dense(ks[4], d, c.ffn_dim), "lin2": dense(ks[5], c.ffn_dim, d)},
                "layer_norm2": L.init_layer_norm(d, dtype)}

    params["layers"] = jax.vmap(one_layer)(jax.random.split(k_layers, c.n_layers))
    return params


def init_lm_head(key, config: XLMConfig, dtype) -> dict:
    """pred_layer: the bias [V] (the weight is the word embedding; its own [V, D] when untied)."""
    check_no_asm(config)
    head = {"bias": jnp.zeros((config.vocab_size,), dtype)}
    if not config.tie_word_embeddings:
        head["weight"] = L.normal_init(key, (config.vocab_size, config.emb_dim), config.init_std, dtype)
    return {"pred_layer": head}


def init_sequence_summary(key, config: XLMConfig, dtype) -> dict:
    """The SequenceSummary's projection [D, summary_dim], or nothing when the config uses none."""
    if not config.summary_use_proj:
        return {}
    return {"sequence_summary": {"summary": _dense(config, dtype)(key, config.emb_dim, config.summary_dim)}}


def init_choice_head(key, config: XLMConfig, dtype) -> dict:
    k_summary, k_proj = jax.random.split(key)
    return {**init_sequence_summary(k_summary, config, dtype),
            "logits_proj": _dense(config, dtype)(k_proj, config.num_labels, 1)}


def init_token_head(key, config: XLMConfig, dtype) -> dict:
    return {"classifier": _dense(config, dtype)(key, config.emb_dim, config.num_labels)}


def init_span_head(key, config: XLMConfig, dtype) -> dict:
    """question_answering_simple: qa_outputs [D, num_labels] (num_labels = 2: start and end)."""
    return {"qa_outputs": _dense(config, dtype)(key, config.emb_dim, config.num_labels)}


def init_squad_head(key, config: XLMConfig, dtype) -> dict:
    """question_answering: HF's XLMSQuADHead (start logits, end logits on [h; start state], answer class)."""
    d, dense = config.emb_dim, _dense(config, dtype)
    ks = jax.random.split(key, 5)
    return {"qa_outputs": {
        "start_logits": {"dense": dense(ks[0], d, 1)},
        "end_logits": {"dense_0": dense(ks[1], 2 * d, d), "layer_norm": L.init_layer_norm(d, dtype),
                       "dense_1": dense(ks[2], d, 1)},
        "answer_class": {"dense_0": dense(ks[3], 2 * d, d), "dense_1": dense(ks[4], d, 1, bias=False)},
    }}


# ---------------------------------------------------------------------------------------- blocks
def compute_dtype(params, config: XLMConfig):
    return jnp.dtype(config.compute_dtype) if config.compute_dtype else params["embeddings"]["embedding"].dtype


def padding_mask(config: XLMConfig, input_ids, attention_mask=None, lengths=None):
    """[B, T] bool: attention_mask when given, else ``t < lengths`` (lengths default: the non-pad count)."""
    if attention_mask is not None:
        return jnp.asarray(attention_mask).astype(bool)
    if lengths is None:
        lengths = jnp.sum(input_ids != config.pad_token_id, axis=1)
    return jnp.arange(input_ids.shape[1])[None, :] < jnp.asarray(lengths)[:, None]


def attention_allowed(config: XLMConfig, mask):
    """[B, T, T] bool: which keys each query reads. Causal: the lower triangle only (HF does not mask padded keys
    then); otherwise the padding mask's keys."""
    b, t = mask.shape
    if config.causal:
        return jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, t, t))
    return jnp.broadcast_to(mask[:, None, :], (b, t, t))


def embed_tokens(params, config: XLMConfig, input_ids, langs, token_type_ids, position_ids, dtype):
    """E[ids] + P[positions] (+ lang table [langs] when the model has one) (+ E[token_type_ids]: XLM looks token
    types up in the word table). [B, T] -> [B, T, D], before the embedding layer norm."""
    x = L.embed(params["embeddings"], input_ids, dtype, config.pad_token_id)
    x = x + L.embed(params["position_embeddings"], position_ids, dtype)
    if langs is not None and config.has_lang_embeddings:
        x = x + L.embed(params["lang_embeddings"], langs, dtype)
    if token_type_ids is not None:
        x = x + L.embed(params["embeddings"], token_type_ids, dtype, config.pad_token_id)
    return x


def _layer(p, config: XLMConfig, x, mask, allowed, *, deterministic, rng, output_attentions):
    """One transformer layer (post-LN). x: [B, T, D]; mask: [B, T] bool; allowed: [B, T, T] bool."""
    b, t, d = x.shape
    n, hd = config.n_heads, config.head_dim
    drop = functools.partial(L.dropout, rate=config.dropout, deterministic=deterministic)
    a = p["attn"]
    # HF divides q by sqrt(head_dim) before the product (not the scores after it).
    q = (L.dense(a["q_lin"], x) / math.sqrt(hd)).reshape(b, t, n, hd)
    k, v = (L.dense(a[name], x).reshape(b, t, n, hd) for name in ("k_lin", "v_lin"))
    ctx, probs = attention(q, k, v, allowed, scale=1.0, impl="reference", dropout_rate=config.attention_dropout,
                           deterministic=deterministic, rng=L.fold_rng(rng, 0), return_probs=output_attentions)
    attn_out = drop(L.dense(a["out_lin"], ctx.reshape(b, t, d)), rng=L.fold_rng(rng, 1))
    x = L.layer_norm(p["layer_norm1"], x + attn_out, config.layer_norm_eps)
    act = L.gelu_exact if config.gelu_activation else jax.nn.relu
    ffn = drop(L.dense(p["ffn"]["lin2"], act(L.dense(p["ffn"]["lin1"], x))), rng=L.fold_rng(rng, 2))
    x = L.layer_norm(p["layer_norm2"], x + ffn, config.layer_norm_eps)
    x = x * mask[..., None].astype(x.dtype)
    return constrain(x, BATCH, None, None), probs


def encoder(params, config: XLMConfig, input_ids, attention_mask=None, langs=None, token_type_ids=None,
            position_ids=None, lengths=None, *, deterministic=True, rng=None, output_hidden_states=False,
            output_attentions=False, allowed=None) -> BaseModelOutput:
    """XLMModel. input_ids: [B, T] -> last_hidden_state [B, T, D] (padding rows exactly zero).
    allowed: [B, T, T] bool, which keys each query reads (default: HF's, :func:`attention_allowed`)."""
    b, t = input_ids.shape
    dtype = compute_dtype(params, config)
    mask = padding_mask(config, input_ids, attention_mask, lengths)
    allowed = attention_allowed(config, mask) if allowed is None else allowed
    if position_ids is None:
        position_ids = jnp.broadcast_to(jnp.arange(t), (b, t))
    x = embed_tokens(params, config, input_ids, langs, token_type_ids, position_ids, dtype)
    x = L.layer_norm(params["layer_norm_emb"], x, config.layer_norm_eps)
    x = L.dropout(x, config.dropout, deterministic=deterministic, rng=L.fold_rng(rng, 0))
    x = constrain(x * mask[..., None].astype(x.dtype), BATCH, None, None)  # the scan carry's sharding: the layers'
    layer_rng = L.fold_rng(rng, 1)

    def body(h, xs):
        p, i = xs
        r = None if layer_rng is None else jax.random.fold_in(layer_rng, i)
        h, probs = _layer(p, config, h, mask, allowed, deterministic=deterministic, rng=r,
                          output_attentions=output_attentions)
        return h, (h if output_hidden_states else None, probs)

    n = config.n_layers
    last, (per_layer, probs) = jax.lax.scan(remat(body, config.remat_policy), x, (params["layers"], jnp.arange(n)),
                                            unroll=1 if config.scan_layers else n)
    hidden_states = (x,) + tuple(per_layer[j] for j in range(n)) if output_hidden_states else None
    attentions = tuple(probs[j] for j in range(n)) if output_attentions else None
    return BaseModelOutput(last_hidden_state=last, hidden_states=hidden_states, attentions=attentions)


def sequence_summary(p, config: XLMConfig, hidden, *, deterministic, rng):
    """HF's SequenceSummary: hidden [B, T, D] -> [B, summary_dim]: the first / last / mean state (cls_index:
    the last), first dropout, projection, activation, last dropout."""
    kind = config.summary_type
    x = hidden[:, 0] if kind == "first" else jnp.mean(hidden, axis=1) if kind == "mean" else hidden[:, -1]
    x = L.dropout(x, config.summary_first_dropout, deterministic=deterministic, rng=L.fold_rng(rng, 0))
    if p is not None:
        x = L.dense(p["summary"], x)
    if config.summary_activation:
        x = L.activation(config.summary_activation)(x)
    return L.dropout(x, config.summary_last_dropout, deterministic=deterministic, rng=L.fold_rng(rng, 1))


def _select(h, index):
    """h: [B, T, D], index: [B, K] -> [B, K, D]."""
    return jnp.take_along_axis(h, index[..., None], axis=1)


def squad_head(p, config: XLMConfig, hidden, start_positions=None, end_positions=None, cls_index=None,
               is_impossible=None, p_mask=None) -> SquadHeadOutput:
    """HF's XLMSQuADHead. hidden: [B, T, D]; p_mask: [B, T] float, 1 = not an answer token.

    With start and end positions: only the loss (CE of start and of end, the end logits conditioned on the gold
    start; + 0.5 BCE of the answer class when cls_index and is_impossible are given). Otherwise the top
    start_n_top starts and, for each, the top end_n_top ends (beam outputs, flat index e * start_n_top + s)
    and the answer-class logit from the start-probability-weighted state and the cls state (default: last).
    The "*_log_probs" outputs are probabilities, as HF's.
    """
    eps = config.layer_norm_eps

    def masked(x, pm):
        return x if pm is None else x * (1 - pm) - 1e30 * pm

    def end_logits(h, start_states, pm):
        x = L.dense(p["end_logits"]["dense_0"], jnp.concatenate([h, start_states], axis=-1))
        x = L.layer_norm(p["end_logits"]["layer_norm"], jnp.tanh(x), eps)
        return masked(L.dense(p["end_logits"]["dense_1"], x)[..., 0], pm)

    def answer_class(start_states, cls_states):
        x = jnp.tanh(L.dense(p["answer_class"]["dense_0"], jnp.concatenate([start_states, cls_states], axis=-1)))
        return L.dense(p["answer_class"]["dense_1"], x)[..., 0]

    b, t, d = hidden.shape
    pm = None if p_mask is None else jnp.asarray(p_mask, hidden.dtype)
    start_logits = masked(L.dense(p["start_logits"]["dense"], hidden)[..., 0], pm)
    cls_states = hidden[:, -1] if cls_index is None else _select(hidden, jnp.asarray(cls_index)[:, None])[:, 0]
    if start_positions is not None and end_positions is not None:
        start_positions, end_positions = jnp.asarray(start_positions), jnp.asarray(end_positions)
        gold = _select(hidden, start_positions[:, None])  # [B, 1, D]
        ends = end_logits(hidden, jnp.broadcast_to(gold, hidden.shape), pm)
        loss = (cross_entropy(start_logits, start_positions) + cross_entropy(ends, end_positions)) / 2
        if cls_index is not None and is_impossible is not None:
            loss = loss + 0.5 * binary_cross_entropy_with_logits(answer_class(gold[:, 0], cls_states), is_impossible)
        return SquadHeadOutput(loss=loss)

    ks, ke = config.start_n_top, config.end_n_top
    start_probs = jax.nn.softmax(start_logits.astype(jnp.float32), axis=-1).astype(hidden.dtype)
    start_top, start_index = jax.lax.top_k(start_probs, ks)  # [B, ks]
    start_states = jnp.broadcast_to(_select(hidden, start_index)[:, None], (b, t, ks, d))
    h = jnp.broadcast_to(hidden[:, :, None], (b, t, ks, d))
    ends = end_logits(h, start_states, None if pm is None else pm[:, :, None])  # [B, T, ks]
    end_probs = jax.nn.softmax(ends.astype(jnp.float32), axis=1).astype(hidden.dtype)
    end_top, end_index = jax.lax.top_k(end_probs.transpose(0, 2, 1), ke)  # [B, ks, ke]: top ends per start
    expected_start = jnp.einsum("btd,bt->bd", hidden, start_probs)
    return SquadHeadOutput(start_top_log_probs=start_top, start_top_index=start_index,
                           end_top_log_probs=end_top.transpose(0, 2, 1).reshape(b, ke * ks),
                           end_top_index=end_index.transpose(0, 2, 1).reshape(b, ke * ks),
                           cls_logits=answer_class(expected_start, cls_states))


# ---------------------------------------------------------------------------------- head inputs
def lengths_as_mask(config: XLMConfig, inputs: dict) -> dict:
    """``Head.prepare`` of the heads with ``lengths``: HF reads lengths only without an attention_mask, and then
    as the padding mask ``t < lengths`` (the encoder's own default, the non-pad count, needs neither)."""
    if inputs["attention_mask"] is None and inputs["lengths"] is not None:
        inputs = {**inputs, "attention_mask": padding_mask(config, inputs["input_ids"], None, inputs["lengths"])}
    return inputs


def choices_as_rows(config: XLMConfig, inputs: dict) -> dict:
    """``Head.prepare`` of multiple choice: the [B, C, T] inputs as [B * C, T] (HF ignores lengths there)."""
    return flatten_choices(inputs)


# ----------------------------------------------------------------------------------------- heads
# Each head: (params, config, out, inputs, *, deterministic, rng) -> output; out is encoder(...)'s output,
# inputs the head function's arguments as given (see common.family).
def model_head(params, config, out, inputs, *, deterministic, rng) -> BaseModelOutput:
    """XLMModel. last_hidden_state: [B, T, D]."""
    return out


def check_no_asm(config: XLMConfig) -> None:
    if config.asm:
        raise ValueError("config field 'asm' = True (adaptive softmax output layer) is not supported: transformers' "
                         "own XLMWithLMHeadModel fails on [batch, seq] inputs with it, and no released XLM "
                         "checkpoint uses it; set asm to false (a plain softmax over vocab_size)")


def lm_logits(params, config: XLMConfig, hidden):
    """The prediction layer on hidden [..., D]: logits x E^T + b [..., V] (the weight tied to the embeddings)."""
    check_no_asm(config)
    weight = params["embeddings"]["embedding"] if config.tie_word_embeddings else params["pred_layer"]["weight"]
    logits = L.matmul(hidden, weight.astype(hidden.dtype), transposed=True)
    return logits + params["pred_layer"]["bias"].astype(hidden.dtype)


def lm_head(params, config, out, inputs, *, deterministic, rng) -> MaskedLMOutput:
    """XLMWithLMHeadModel. logits: [B, T, V]; loss: CE against labels at the same positions (not shifted, as HF;
    -100 ignored). The adaptive-softmax option (asm) is refused with an error that names it."""
    logits = lm_logits(params, config, out.last_hidden_state)
    labels = inputs["labels"]
    return MaskedLMOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def summary_padding(config: XLMConfig) -> str:
    """How rows of a sequence-summary head may be padded in a batch: the summary reads position 0 ("first": pad
    on the right), the last position ("last": pad on the left, unless the model is causal, whose keys include
    the padding as transformers'), or every position ("mean", "cls_index" without an index): never padded."""
    if config.summary_type == "first":
        return "right"
    if config.summary_type == "last" and not config.causal:
        return "left"
    return "exact"


def sequence_classification_head(params, config, out, inputs, *, deterministic, rng) -> SequenceClassifierOutput:
    """XLMForSequenceClassification. logits: [B, summary_dim] (num_labels with the default projection)."""
    logits = sequence_summary(params.get("sequence_summary"), config, out.last_hidden_state,
                              deterministic=deterministic, rng=rng)
    labels = inputs["labels"]
    loss = None if labels is None else \
        sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return SequenceClassifierOutput(logits=logits, loss=loss)


def multiple_choice_head(params, config, out, inputs, *, deterministic, rng) -> SequenceClassifierOutput:
    """XLMForMultipleChoice. input_ids etc.: [B, C, T]; logits: [B, C] (summary, then logits_proj). HF ignores
    ``lengths`` here; so there is none. hidden_states / attentions are over the flattened [B * C, ...]."""
    b, c, _ = np.shape(inputs["input_ids"])
    summary = sequence_summary(params.get("sequence_summary"), config, out.last_hidden_state,
                               deterministic=deterministic, rng=rng)
    logits = choice_logits(L.dense(params["logits_proj"], summary), b, c)
    labels = inputs["labels"]
    return SequenceClassifierOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def token_classification_head(params, config, out, inputs, *, deterministic, rng) -> TokenClassifierOutput:
    """XLMForTokenClassification. logits: [B, T, num_labels]; loss: CE over labels != -100."""
    return token_classification(params["classifier"], out.last_hidden_state, inputs["labels"], config.dropout,
                                deterministic=deterministic, rng=rng)


def question_answering_simple_head(params, config, out, inputs, *, deterministic, rng) -> QuestionAnsweringOutput:
    """XLMForQuestionAnsweringSimple (what AutoModelForQuestionAnswering gives for XLM). start/end_logits: [B, T]."""
    return question_answering(params["qa_outputs"], out.last_hidden_state, inputs)


def question_answering_head(params, config, out, inputs, *, deterministic, rng) -> SquadHeadOutput:
    """XLMForQuestionAnswering (the SQuAD head, see :func:`squad_head`)."""
    return squad_head(params["qa_outputs"], config, out.last_hidden_state, start_positions=inputs["start_positions"],
                      end_positions=inputs["end_positions"], cls_index=inputs["cls_index"],
                      is_impossible=inputs["is_impossible"], p_mask=inputs["p_mask"])


# ------------------------------------------------------------------------------------ generation
def init_cache(config: XLMConfig, batch: int, length: int, dtype=None) -> dict:
    """XLM generates as HF does: every step reruns the whole model over the sequence so far plus one
    ``mask_token_id`` slot, whose prediction is the next token (bidirectional checkpoints see the whole
    prefix, so there are no reusable keys/values). The "cache" is that token buffer: ids, validity and
    positions [batch, length + 1] (the extra slot for the mask at the end), and the write index."""
    del dtype
    shape = (batch, length + 1)
    return {"ids": jnp.full(shape, config.pad_token_id, jnp.int32), "valid": jnp.zeros(shape, bool),
            "positions": jnp.zeros(shape, jnp.int32), "index": jnp.zeros((), jnp.int32)}


def cached_step(params, config: XLMConfig, input_ids, attention_mask, position_ids, cache):
    """Append input_ids [B, T] (with their mask and positions) to the buffer, put the mask token after them
    (position: the last one + 1), run the model over the buffer and return the logits at the mask slot
    ([B, V] float32) and the buffer. Every position takes the language ``config.lang_id`` (HF's generate).
    Causal configs read the keys up to each query, others every written slot; padding is masked in both."""
    t = input_ids.shape[1]
    at = cache["index"]

    def write(buf, x):  # like(): the update takes the buffer's sharding (Explicit mesh axes)
        return jax.lax.dynamic_update_slice_in_dim(buf, like(x.astype(buf.dtype), buf), at, axis=1)

    ids, valid = write(cache["ids"], input_ids), write(cache["valid"], attention_mask.astype(bool))
    positions = write(cache["positions"], position_ids)
    slot = at + t

    def tail(buf, x):
        return jax.lax.dynamic_update_slice_in_dim(buf, like(x[:, None].astype(buf.dtype), buf), slot, 1)

    b = ids.shape[0]
    run_ids = tail(ids, jnp.full((b,), config.mask_token_id))
    run_valid = tail(valid, jnp.ones((b,), bool))
    run_positions = tail(positions, position_ids[:, -1] + 1)
    allowed = run_valid[:, None, :]
    if config.causal:
        allowed = allowed & jnp.tril(jnp.ones((run_ids.shape[1],) * 2, bool))[None]
    else:
        allowed = jnp.broadcast_to(allowed, (b,) + (run_ids.shape[1],) * 2)
    langs = None if config.lang_id is None else jnp.full(run_ids.shape, config.lang_id, jnp.int32)
    hidden = encoder(params, config, run_ids, run_valid, langs, position_ids=run_positions, allowed=allowed)
    at_mask = jax.lax.dynamic_index_in_dim(hidden.last_hidden_state, slot, axis=1, keepdims=False)
    logits = lm_logits(params, config, at_mask).astype(jnp.float32)
    return logits, {"ids": ids, "valid": valid, "positions": positions, "index": at + t}


def reorder_cache(cache: dict, rows) -> dict:
    """Rows ``rows`` [N] of the buffer (beam search); the write index is shared."""
    return {name: x if name == "index" else take(x, rows) for name, x in cache.items()}
