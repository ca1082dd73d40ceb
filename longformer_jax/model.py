"""Longformer as pure functions: the encoder (the family's backbone), its params' init, and what each head
computes from the encoder's output (family.py declares the heads; common.family runs them).

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

Every head function (``longformer_jax.longformer_<head>``) has the signature ``f(params, config, input_ids,
attention_mask=None, global_attention_mask=None, token_type_ids=None, position_ids=None, <labels...>,
max_num_global=None, *, deterministic=True, rng=None, output_hidden_states=False, output_attentions=False)``.

``max_num_global`` fixes the number of global-attention slots (HF's data-dependent ``max_num_global_attn_indices``),
which must be static: an int, or an array whose LENGTH is that number (``validate_inputs`` builds one on the
host, so the jitted ``Model`` sees it as a static shape). None computes it from concrete (non-traced) masks.

Sequences are padded on the right to a multiple of max(attention_window) inside (ids = pad_token_id, mask 0),
as HF does; hidden_states, attentions and logits come back un-padded, global_attentions keep the padded
length (as HF).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common import layers as L
from common.longformer_stack import encode_layers, init_layers, num_global_slots, pad_to_window
from common.heads import (choice_logits, classification_head, flatten_choices, init_classification_head,
                          question_answering, token_classification)
from common.losses import cross_entropy, sequence_classification_loss
from common.outputs import (BaseModelOutput, MaskedLMOutput, QuestionAnsweringOutput, SequenceClassifierOutput,
                            TokenClassifierOutput)
from common.roberta import init_embeddings, pooler, roberta_embeddings
from longformer_jax.config import LongformerConfig


# ------------------------------------------------------------------------------------------- init
def _dense(config: LongformerConfig):
    return functools.partial(L.init_dense, std=config.initializer_range, bias=True)


def init_backbone(key, config: LongformerConfig, dtype=jnp.float32) -> dict:
    """The embeddings and the layer stack with HF's init (normal(0, initializer_range), norms at 1, biases 0)."""
    k_emb, k_layers = jax.random.split(key)
    return {"embeddings": init_embeddings(k_emb, config, dtype),
            "layers": init_layers(k_layers, config.hidden_size, config.intermediate_size, config.num_hidden_layers,
                                  config.initializer_range, dtype)}


def init_pooler(key, config: LongformerConfig, dtype) -> dict:
    h = config.hidden_size
    return {"pooler": {"dense": _dense(config)(key, h, h, dtype=dtype)}}


def init_lm_head(key, config: LongformerConfig, dtype) -> dict:
    h, dense = config.hidden_size, _dense(config)
    k_dense, k_decoder = jax.random.split(key)
    head = {"dense": dense(k_dense, h, h, dtype=dtype), "layer_norm": L.init_layer_norm(h, dtype),
            "bias": jnp.zeros((config.vocab_size,), dtype)}
    if not config.tie_word_embeddings:
        head["decoder"] = L.init_dense(k_decoder, h, config.vocab_size, std=config.initializer_range, bias=False,
                                       dtype=dtype)
    return {"lm_head": head}


def init_classifier(key, config: LongformerConfig, dtype) -> dict:
    return {"classifier": init_classification_head(key, config.hidden_size, config.num_labels,
                                                   config.initializer_range, dtype)}


def init_choice_head(key, config: LongformerConfig, dtype) -> dict:
    k_pool, k_score = jax.random.split(key)
    return {**init_pooler(k_pool, config, dtype),
            "classifier": _dense(config)(k_score, config.hidden_size, 1, dtype=dtype)}


def init_token_head(key, config: LongformerConfig, dtype) -> dict:
    return {"classifier": _dense(config)(key, config.hidden_size, config.num_labels, dtype=dtype)}


def init_span_head(key, config: LongformerConfig, dtype) -> dict:
    return {"qa_outputs": _dense(config)(key, config.hidden_size, 2, dtype=dtype)}


# ------------------------------------------------------------------------------ global-attention masks
def question_end_index(input_ids, sep_token_id: int):
    """Index of the first ``sep_token_id`` in each row (HF ``_get_question_end_index``); works on numpy or jax."""
    xp = jnp if isinstance(input_ids, jax.Array) else np
    return xp.argmax(input_ids == sep_token_id, axis=-1)


def first_token_global(config: LongformerConfig, input_ids):
    """sequence_classification's default: the first token (<s>) is global."""
    xp = jnp if isinstance(input_ids, jax.Array) else np
    return xp.broadcast_to(xp.arange(input_ids.shape[-1]) == 0, input_ids.shape)


def question_global(config: LongformerConfig, input_ids):
    """question_answering's default: every position before the first </s> (HF
    ``_compute_global_attention_mask(before_sep_token=True)``)."""
    xp = jnp if isinstance(input_ids, jax.Array) else np
    return xp.arange(input_ids.shape[-1]) < question_end_index(input_ids, config.sep_token_id)[..., None]


def answer_global(config: LongformerConfig, input_ids):
    """multiple_choice's default ([B, C, T] ids): per choice, every position after the first </s> + 1
    (``before_sep_token=False``)."""
    xp = jnp if isinstance(input_ids, jax.Array) else np
    return xp.arange(input_ids.shape[-1]) > question_end_index(input_ids, config.sep_token_id)[..., None] + 1


@dataclasses.dataclass(frozen=True)
class DefaultGlobal:
    """``Head.prepare`` of a head with HF's automatic global attention: ``rule(config, input_ids)`` when
    global_attention_mask is None; with ``choices``, then [B, C, T] inputs are flattened to [B * C, T]."""

    rule: Callable  # (config, input_ids) -> bool mask shaped like input_ids
    from_question: bool  # the rule finds the question by its </s>: every row needs exactly 3 sep tokens
    choices: bool = False

    def __call__(self, config, inputs: dict) -> dict:
        inputs = dict(inputs)
        if inputs["global_attention_mask"] is None:
            inputs["global_attention_mask"] = self.rule(config, inputs["input_ids"])
        return flatten_choices(inputs) if self.choices else inputs


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


# ----------------------------------------------------------------------------------------- heads
# Each head: (params, config, out, inputs, *, deterministic, rng) -> output; out is encoder(...)'s output,
# inputs the head function's arguments as given (see common.family).
def model_head(params, config, out, inputs, *, deterministic, rng) -> BaseModelOutput:
    """last_hidden_state: [B, T, H]; pooler_output: [B, H]."""
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


def masked_lm_head(params, config, out, inputs, *, deterministic, rng) -> MaskedLMOutput:
    """logits: [B, T, V]; loss: CE over labels != -100 (no shift)."""
    logits = lm_logits(params, config, out.last_hidden_state)
    labels = inputs["labels"]
    return MaskedLMOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def sequence_classification_head(params, config, out, inputs, *, deterministic, rng) -> SequenceClassifierOutput:
    """logits: [B, num_labels] from <s>; global attention on <s> by default."""
    logits = classification_head(params["classifier"], out.last_hidden_state[:, 0], config.hidden_dropout_prob,
                                 deterministic=deterministic, rng=rng)
    labels = inputs["labels"]
    loss = None if labels is None else \
        sequence_classification_loss(logits, labels, config.num_labels, config.problem_type)
    return SequenceClassifierOutput(logits=logits, loss=loss)


def multiple_choice_head(params, config, out, inputs, *, deterministic, rng) -> SequenceClassifierOutput:
    """input_ids etc.: [B, C, T]; logits: [B, C]. By default every token after the first </s> + 1 of each choice
    is global (HF). hidden_states / attentions are over the flattened [B * C, ...]."""
    b, c, _ = inputs["input_ids"].shape
    pooled = pooler(params["pooler"], out.last_hidden_state)
    pooled = L.dropout(pooled, config.hidden_dropout_prob, deterministic=deterministic, rng=rng)
    logits = choice_logits(L.dense(params["classifier"], pooled), b, c)
    labels = inputs["labels"]
    return SequenceClassifierOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def token_classification_head(params, config, out, inputs, *, deterministic, rng) -> TokenClassifierOutput:
    """logits: [B, T, num_labels]."""
    return token_classification(params["classifier"], out.last_hidden_state, inputs["labels"],
                                config.hidden_dropout_prob, deterministic=deterministic, rng=rng)


def question_answering_head(params, config, out, inputs, *, deterministic, rng) -> QuestionAnsweringOutput:
    """start_logits, end_logits: [B, T]. By default the question tokens (before the first </s>) are global, as
    HF ``_compute_global_attention_mask``."""
    return question_answering(params["qa_outputs"], out.last_hidden_state, inputs)
