"""Longformer as pure functions: ``init_params`` and one function per HF head class.

Param tree (L = num_hidden_layers, H = hidden, I = intermediate, V = vocab, P = max positions, T = type vocab):

    embeddings/{word_embeddings,position_embeddings,token_type_embeddings}/embedding   [V|P|T, H]
    embeddings/layer_norm/{scale,bias}                                                  [H]
    layers/attn/{query,key,value,query_global,key_global,value_global}/{kernel,bias}    [L, H, H], [L, H]
    layers/attn_output/dense/{kernel,bias}, layers/attn_output/layer_norm/{scale,bias}
    layers/intermediate/dense/{kernel [L, H, I], bias}
    layers/output/dense/{kernel [L, I, H], bias}, layers/output/layer_norm/{scale,bias}
    pooler/dense                       (model, multiple_choice)
    lm_head/{dense, layer_norm, bias [V]} (+ decoder/kernel [H, V] when not tie_word_embeddings)  (masked_lm)
    classifier/{dense, out_proj}       (sequence_classification)
    classifier/{kernel, bias}          (multiple_choice [H, 1], token_classification [H, labels])
    qa_outputs/{kernel [H, 2], bias}   (question_answering)

Every head function has the signature ``f(params, config, input_ids, attention_mask=None,
global_attention_mask=None, token_type_ids=None, position_ids=None, <labels...>, max_num_global=None, *,
deterministic=True, rng=None, output_hidden_states=False, output_attentions=False)``.

``max_num_global`` fixes the number of global-attention slots (HF's data-dependent ``max_num_global_attn_indices``),
which must be static: an int, or an array whose LENGTH is that number (``validate_inputs`` builds one on the
host, so the jitted ``Model`` sees it as a static shape). None computes it from concrete (non-traced) masks.

Sequences are padded on the right to a multiple of max(attention_window) inside (ids = pad_token_id, mask 0),
as HF does; hidden_states, attentions and logits come back un-padded, global_attentions keep the padded
length (as HF).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from common import layers as L
from common.longformer_stack import encode_layers, init_layers, num_global_slots, pad_to_window
from common.heads import choice_logits, classification_head, span_head
from common.losses import cross_entropy, sequence_classification_loss
from common.outputs import (BaseModelOutput, MaskedLMOutput, QuestionAnsweringOutput, SequenceClassifierOutput,
                            TokenClassifierOutput)
from common.roberta import init_embeddings, pooler, roberta_embeddings
from longformer_jax.config import LongformerConfig

HEADS = ("model", "masked_lm", "sequence_classification", "multiple_choice", "token_classification",
         "question_answering")


# ------------------------------------------------------------------------------------------- init
def init_params(config: LongformerConfig, key, dtype=jnp.float32, head: str = "model") -> dict:
    """Random params with HF's init (normal(0, initializer_range), norms at 1, biases at 0)."""
    if head not in HEADS:
        raise ValueError(f"head {head!r} is invalid: expected one of {HEADS}")
    c, std = config, config.initializer_range
    h, i, n = c.hidden_size, c.intermediate_size, c.num_hidden_layers
    k_emb, k_layers, k_pool, k_head = jax.random.split(key, 4)
    dense = functools.partial(L.init_dense, std=std, dtype=dtype)

    params = {
        "embeddings": init_embeddings(k_emb, c, dtype),
        "layers": init_layers(k_layers, h, i, n, std, dtype),
    }
    if head in ("model", "multiple_choice"):
        params["pooler"] = {"dense": dense(k_pool, h, h, bias=True)}
    kh = jax.random.split(k_head, 2)
    if head == "masked_lm":
        params["lm_head"] = {"dense": dense(kh[0], h, h, bias=True), "layer_norm": L.init_layer_norm(h, dtype),
                             "bias": jnp.zeros((c.vocab_size,), dtype)}
        if not c.tie_word_embeddings:
            params["lm_head"]["decoder"] = dense(kh[1], h, c.vocab_size, bias=False)
    elif head == "sequence_classification":
        params["classifier"] = {"dense": dense(kh[0], h, h, bias=True),
                                "out_proj": dense(kh[1], h, c.num_labels, bias=True)}
    elif head == "multiple_choice":
        params["classifier"] = dense(kh[0], h, 1, bias=True)
    elif head == "token_classification":
        params["classifier"] = dense(kh[0], h, c.num_labels, bias=True)
    elif head == "question_answering":
        params["qa_outputs"] = dense(kh[0], h, 2, bias=True)
    return params


# ------------------------------------------------------------------------------ global-attention masks
def question_end_index(input_ids, sep_token_id: int):
    """Index of the first ``sep_token_id`` in each row (HF ``_get_question_end_index``); works on numpy or jax."""
    xp = jnp if isinstance(input_ids, jax.Array) else np
    return xp.argmax(input_ids == sep_token_id, axis=-1)


def default_global_attention_mask(config: LongformerConfig, head: str, input_ids):
    """HF's automatic global attention when ``global_attention_mask`` is None, or None for heads without one.

    sequence_classification: the first token (<s>). question_answering: every position before the first
    </s> (HF ``_compute_global_attention_mask(before_sep_token=True)``). multiple_choice ([B, C, T] ids):
    per choice, every position after first </s> + 1 (``before_sep_token=False``).
    """
    xp = jnp if isinstance(input_ids, jax.Array) else np
    t = input_ids.shape[-1]
    pos = xp.arange(t)
    if head == "sequence_classification":
        return xp.broadcast_to(pos == 0, input_ids.shape)
    if head == "question_answering":
        return pos < question_end_index(input_ids, config.sep_token_id)[..., None]
    if head == "multiple_choice":
        return pos > question_end_index(input_ids, config.sep_token_id)[..., None] + 1
    return None


# ---------------------------------------------------------------------------------------- blocks
def compute_dtype(params, config: LongformerConfig):
    return jnp.dtype(config.compute_dtype) if config.compute_dtype else \
        params["embeddings"]["word_embeddings"]["embedding"].dtype


def encoder(params, config: LongformerConfig, input_ids, attention_mask=None, global_attention_mask=None,
            token_type_ids=None, position_ids=None, max_num_global=None, *, deterministic=True, rng=None,
            output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
    """LongformerModel without the pooler. input_ids: [B, T]; masks: [B, T] (1/0); returns un-padded outputs."""
    b, t = input_ids.shape
    dtype = compute_dtype(params, config)
    attention_mask = jnp.ones((b, t), bool) if attention_mask is None else jnp.asarray(attention_mask).astype(bool)
    global_mask = jnp.zeros((b, t), bool) if global_attention_mask is None else \
        jnp.asarray(global_attention_mask).astype(bool)
    x_slots = num_global_slots(max_num_global, attention_mask, global_mask)
    if token_type_ids is None:
        token_type_ids = jnp.zeros((b, t), jnp.int32)

    input_ids, attention_mask, global_mask, token_type_ids = pad_to_window(
        config, config.pad_token_id, input_ids, attention_mask, global_mask, token_type_ids)
    if position_ids is not None and position_ids.shape[1] != input_ids.shape[1]:
        right = ((0, 0), (0, input_ids.shape[1] - position_ids.shape[1]))
        position_ids = jnp.pad(position_ids, right, constant_values=config.pad_token_id)
    global_mask = global_mask & attention_mask  # HF's merge: a padding token is never global

    x = roberta_embeddings(params["embeddings"], config, input_ids, token_type_ids, position_ids, dtype,
                    deterministic=deterministic, rng=L.fold_rng(rng, 0))
    return encode_layers(params["layers"], config, x, attention_mask, global_mask, x_slots, t,
                         deterministic=deterministic, rng=L.fold_rng(rng, 1),
                         output_hidden_states=output_hidden_states, output_attentions=output_attentions)


def _with_default_global(config, head, input_ids, global_attention_mask):
    if global_attention_mask is None:
        return default_global_attention_mask(config, head, input_ids)
    return global_attention_mask


def _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
         max_num_global, deterministic, rng, output_hidden_states, output_attentions):
    return encoder(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
                   max_num_global, deterministic=deterministic, rng=rng, output_hidden_states=output_hidden_states,
                   output_attentions=output_attentions)


# ----------------------------------------------------------------------------------------- heads
def longformer_model(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                     token_type_ids=None, position_ids=None, max_num_global=None, *, deterministic=True, rng=None,
                     output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
    """LongformerModel. last_hidden_state: [B, T, H]; pooler_output: [B, H]."""
    out = _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
               max_num_global, deterministic, rng, output_hidden_states, output_attentions)
    return out.replace(pooler_output=pooler(params["pooler"], out.last_hidden_state))


def lm_logits(params, config: LongformerConfig, hidden):
    """LongformerLMHead: dense -> gelu -> layer_norm -> decoder (tied to the word embeddings) + bias."""
    p = params["lm_head"]
    x = L.gelu_exact(L.dense(p["dense"], hidden))
    x = L.layer_norm(p["layer_norm"], x, config.layer_norm_eps)
    if config.tie_word_embeddings:
        logits = L.matmul(x, params["embeddings"]["word_embeddings"]["embedding"], transposed=True)
    else:
        logits = L.dense(p["decoder"], x)
    return logits + p["bias"].astype(x.dtype)


def longformer_masked_lm(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                         token_type_ids=None, position_ids=None, labels=None, max_num_global=None, *,
                         deterministic=True, rng=None, output_hidden_states=False,
                         output_attentions=False) -> MaskedLMOutput:
    """LongformerForMaskedLM. logits: [B, T, V]; loss: CE over labels != -100 (no shift)."""
    out = _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
               max_num_global, deterministic, rng, output_hidden_states, output_attentions)
    logits = lm_logits(params, config, out.last_hidden_state)
    loss = cross_entropy(logits, labels) if labels is not None else None
    return MaskedLMOutput(logits=logits, loss=loss, hidden_states=out.hidden_states, attentions=out.attentions,
                          global_attentions=out.global_attentions)


def longformer_sequence_classification(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                                       token_type_ids=None, position_ids=None, labels=None, max_num_global=None, *,
                                       deterministic=True, rng=None, output_hidden_states=False,
                                       output_attentions=False) -> SequenceClassifierOutput:
    """LongformerForSequenceClassification. logits: [B, num_labels] from <s>; global attention on <s> by default."""
    global_attention_mask = _with_default_global(config, "sequence_classification", input_ids, global_attention_mask)
    out = _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
               max_num_global, deterministic, L.fold_rng(rng, 0), output_hidden_states, output_attentions)
    logits = classification_head(params["classifier"], out.last_hidden_state[:, 0], config.hidden_dropout_prob,
                                 deterministic=deterministic, rng=L.fold_rng(rng, 1))
    loss = None
    if labels is not None:
        loss = sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return SequenceClassifierOutput(logits=logits, loss=loss, hidden_states=out.hidden_states,
                                    attentions=out.attentions, global_attentions=out.global_attentions)


def longformer_multiple_choice(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                               token_type_ids=None, position_ids=None, labels=None, max_num_global=None, *,
                               deterministic=True, rng=None, output_hidden_states=False,
                               output_attentions=False) -> SequenceClassifierOutput:
    """LongformerForMultipleChoice. input_ids etc.: [B, C, T]; logits: [B, C]. By default every token after the
    first </s> + 1 of each choice is global (HF). hidden_states/attentions are over the flattened [B*C, ...]."""
    b, c, t = input_ids.shape
    global_attention_mask = _with_default_global(config, "multiple_choice", input_ids, global_attention_mask)
    flat = lambda a: None if a is None else a.reshape(b * c, t)  # noqa: E731
    out = _run(params, config, flat(input_ids), flat(attention_mask), flat(global_attention_mask),
               flat(token_type_ids), flat(position_ids), max_num_global, deterministic, L.fold_rng(rng, 0),
               output_hidden_states, output_attentions)
    pooled = pooler(params["pooler"], out.last_hidden_state)
    pooled = L.dropout(pooled, config.hidden_dropout_prob, deterministic=deterministic, rng=L.fold_rng(rng, 1))
    logits = choice_logits(L.dense(params["classifier"], pooled), b, c)
    loss = cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(logits=logits, loss=loss, hidden_states=out.hidden_states,
                                    attentions=out.attentions, global_attentions=out.global_attentions)


def longformer_token_classification(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                                    token_type_ids=None, position_ids=None, labels=None, max_num_global=None, *,
                                    deterministic=True, rng=None, output_hidden_states=False,
                                    output_attentions=False) -> TokenClassifierOutput:
    """LongformerForTokenClassification. logits: [B, T, num_labels]."""
    out = _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
               max_num_global, deterministic, L.fold_rng(rng, 0), output_hidden_states, output_attentions)
    hidden = L.dropout(out.last_hidden_state, config.hidden_dropout_prob, deterministic=deterministic,
                       rng=L.fold_rng(rng, 1))
    logits = L.dense(params["classifier"], hidden)
    loss = cross_entropy(logits, labels) if labels is not None else None
    return TokenClassifierOutput(logits=logits, loss=loss, hidden_states=out.hidden_states, attentions=out.attentions,
                                 global_attentions=out.global_attentions)


def longformer_question_answering(params, config, input_ids, attention_mask=None, global_attention_mask=None,
                                  token_type_ids=None, position_ids=None, start_positions=None, end_positions=None,
                                  max_num_global=None, *, deterministic=True, rng=None, output_hidden_states=False,
                                  output_attentions=False) -> QuestionAnsweringOutput:
    """LongformerForQuestionAnswering. start_logits, end_logits: [B, T]. By default the question tokens (before
    the first </s>) are global, as HF ``_compute_global_attention_mask``."""
    global_attention_mask = _with_default_global(config, "question_answering", input_ids, global_attention_mask)
    out = _run(params, config, input_ids, attention_mask, global_attention_mask, token_type_ids, position_ids,
               max_num_global, deterministic, rng, output_hidden_states, output_attentions)
    start, end, loss = span_head(params["qa_outputs"], out.last_hidden_state, start_positions, end_positions)
    return QuestionAnsweringOutput(start_logits=start, end_logits=end, loss=loss, hidden_states=out.hidden_states,
                                   attentions=out.attentions, global_attentions=out.global_attentions)
