"""Output heads shared by several families."""

from __future__ import annotations

import jax.numpy as jnp

from common import layers as L
from common.losses import span_loss
from common.sharding import BATCH, explicit_spec


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


def choice_logits(scores, batch: int, choices: int):
    """Multiple choice: the per-(example, choice) scores [batch * choices, 1] as logits [batch, choices]. Under
    Explicit mesh axes the batch split moves onto the examples (JAX cannot infer a reshape of a split axis)."""
    return jnp.reshape(scores, (batch, choices), out_sharding=explicit_spec((batch, choices), BATCH, None))
