"""Losses with HF's conventions: labels of -100 are ignored, reductions are means over kept items."""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE_INDEX = -100


def cross_entropy(logits: jax.Array, labels: jax.Array, ignore_index: int = IGNORE_INDEX) -> jax.Array:
    """logits: [..., classes], labels: [...] int. Mean over labels != ignore_index, in float32.

    Like torch's CrossEntropyLoss, a batch with no kept label gives NaN (0 / 0) rather than a silent 0.
    """
    logits = logits.astype(jnp.float32)
    keep = labels != ignore_index
    safe = jnp.where(keep, labels, 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(keep, nll, 0.0)) / jnp.sum(keep)


def causal_lm_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """logits: [batch, seq, vocab], labels: [batch, seq]. Predict token t+1 from position t (HF's shift)."""
    shifted = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], IGNORE_INDEX)], axis=1)
    return cross_entropy(logits, shifted)


def sequence_classification_loss(logits: jax.Array, labels: jax.Array, num_labels: int, problem_type: str | None):
    """HF's problem-type rule: regression if 1 label, single-label CE for int labels, else multi-label BCE."""
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif jnp.issubdtype(labels.dtype, jnp.integer):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    logits = logits.astype(jnp.float32)
    if problem_type == "regression":
        pred = logits.squeeze(-1) if num_labels == 1 else logits
        return jnp.mean(jnp.square(pred - labels.astype(jnp.float32).reshape(pred.shape)))
    if problem_type == "single_label_classification":
        return cross_entropy(logits.reshape(-1, num_labels), labels.reshape(-1))
    if problem_type == "multi_label_classification":
        return binary_cross_entropy_with_logits(logits, labels)
    raise ValueError(f"problem_type {problem_type!r} is invalid: expected regression, single_label_classification or multi_label_classification")


def binary_cross_entropy_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """torch's BCEWithLogitsLoss (mean), in its stable form: max(x, 0) - x y + log(1 + exp(-|x|))."""
    x, y = logits.astype(jnp.float32), targets.astype(jnp.float32)
    return jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))


def span_loss(start_logits, end_logits, start_positions, end_positions) -> jax.Array:
    """HF QA loss: positions clamped to [0, seq] and seq ignored, mean of start and end CE."""
    seq = start_logits.shape[1]
    start = jnp.clip(start_positions, 0, seq)
    end = jnp.clip(end_positions, 0, seq)
    return (cross_entropy(start_logits, start, ignore_index=seq) + cross_entropy(end_logits, end, ignore_index=seq)) / 2
