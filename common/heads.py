"""Output heads shared by several families."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from common import layers as L
from common.losses import cross_entropy, span_loss
from common.outputs import QuestionAnsweringOutput, TokenClassifierOutput
from common.sharding import BATCH, explicit_spec


def init_classification_head(key, hidden: int, num_labels: int, std: float, dtype) -> dict:
    """Params of ``classification_head``: dense [H, H] and out_proj [H, num_labels], both with biases."""
    k_dense, k_out = jax.random.split(key)
    return {"dense": L.init_dense(k_dense, hidden, hidden, std=std, bias=True, dtype=dtype),
            "out_proj": L.init_dense(k_out, hidden, num_labels, std=std, bias=True, dtype=dtype)}


def classification_head(p, pooled, rate: float, *, deterministic: bool, rng=None):
    """RoBERTa / BART sentence classification head: dropout, dense, tanh, dropout, out_proj.
    pooled: [B, H] (the <s> or last-eos state) -> logits [B, num_labels]."""
    x = L.dropout(pooled, rate, deterministic=deterministic, rng=L.fold_rng(rng, 0))
    x = L.dropout(jnp.tanh(L.dense(p["dense"], x)), rate, deterministic=deterministic, rng=L.fold_rng(rng, 1))
    return L.dense(p["out_proj"], x)


def span_head(p, hidden, start_positions=None, end_positions=None):
    """Extractive QA: a [H, 2] dense over hidden [B, T, H] -> (start_logits [B, T], end_logits [B, T], loss or None).

    The loss (HF's: positions clamped to the sequence, mean of start and end CE) needs both positions.
    """
    logits = L.dense(p, hidden)
    start, end = logits[..., 0], logits[..., 1]
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = span_loss(start, end, start_positions, end_positions)
    return start, end, loss


def token_classification(p, hidden, labels, rate: float, *, deterministic: bool, rng=None) -> TokenClassifierOutput:
    """Dropout, then a dense over every token: hidden [B, T, H] -> logits [B, T, num_labels]; loss: CE over
    labels != -100 when labels are given."""
    hidden = L.dropout(hidden, rate, deterministic=deterministic, rng=rng)
    logits = L.dense(p, hidden)
    return TokenClassifierOutput(logits=logits, loss=cross_entropy(logits, labels) if labels is not None else None)


def question_answering(p, hidden, inputs) -> QuestionAnsweringOutput:
    """``span_head`` over hidden [B, T, H] with the head's start_positions / end_positions from ``inputs``."""
    start, end, loss = span_head(p, hidden, inputs["start_positions"], inputs["end_positions"])
    return QuestionAnsweringOutput(start_logits=start, end_logits=end, loss=loss)


def flatten_choices(inputs: dict) -> dict:
    """A multiple-choice head's inputs, [B, C, T] each, as [B * C, T] for the backbone (other entries as they
    are): every choice runs as its own row."""
    t = inputs["input_ids"].shape[-1]
    return {k: jnp.reshape(v, (-1, t)) if v is not None and jnp.ndim(v) == 3 else v for k, v in inputs.items()}


def choice_logits(scores, batch: int, choices: int):
    """Multiple choice: the per-(example, choice) scores [batch * choices, 1] as logits [batch, choices]. Under
    Explicit mesh axes the batch split moves onto the examples (JAX cannot infer a reshape of a split axis)."""
    return jnp.reshape(scores, (batch, choices), out_sharding=explicit_spec((batch, choices), BATCH, None))
