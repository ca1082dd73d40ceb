"""Every loss kind in common.losses against torch's own (the heads of later families reuse them)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.losses import causal_lm_loss, cross_entropy, sequence_classification_loss, span_loss

RNG = np.random.default_rng(0)


def close(ours, ref):
    assert abs(float(ours) - float(ref)) <= 1e-5, (float(ours), float(ref))


def test_masked_lm_and_token_classification_ignore_minus_100():
    logits = RNG.normal(size=(3, 7, 11)).astype(np.float32)
    labels = RNG.integers(0, 11, (3, 7))
    labels[RNG.random((3, 7)) < 0.6] = -100
    close(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
          F.cross_entropy(torch.tensor(logits).reshape(-1, 11), torch.tensor(labels).reshape(-1), ignore_index=-100))


def test_multiple_choice():
    logits = RNG.normal(size=(4, 5)).astype(np.float32)  # [batch, choices]
    labels = RNG.integers(0, 5, (4,))
    close(cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), F.cross_entropy(torch.tensor(logits), torch.tensor(labels)))


def test_causal_lm_shifts_labels():
    logits = RNG.normal(size=(2, 6, 9)).astype(np.float32)
    labels = RNG.integers(0, 9, (2, 6))
    ref = F.cross_entropy(torch.tensor(logits)[:, :-1].reshape(-1, 9), torch.tensor(labels)[:, 1:].reshape(-1))
    close(causal_lm_loss(jnp.asarray(logits), jnp.asarray(labels)), ref)


@pytest.mark.parametrize("kind", ["regression", "single", "multi"])
def test_sequence_classification_problem_types(kind):
    if kind == "regression":
        logits, labels = RNG.normal(size=(5, 1)).astype(np.float32), RNG.normal(size=(5,)).astype(np.float32)
        ref = F.mse_loss(torch.tensor(logits).squeeze(-1), torch.tensor(labels))
        ours = sequence_classification_loss(jnp.asarray(logits), jnp.asarray(labels), 1, None)
    elif kind == "single":
        logits, labels = RNG.normal(size=(5, 3)).astype(np.float32), RNG.integers(0, 3, (5,))
        ref = F.cross_entropy(torch.tensor(logits), torch.tensor(labels))
        ours = sequence_classification_loss(jnp.asarray(logits), jnp.asarray(labels), 3, None)
    else:
        logits, labels = RNG.normal(size=(5, 3)).astype(np.float32), (RNG.random((5, 3)) > 0.5).astype(np.float32)
        ref = F.binary_cross_entropy_with_logits(torch.tensor(logits), torch.tensor(labels))
        ours = sequence_classification_loss(jnp.asarray(logits), jnp.asarray(labels), 3, None)
    close(ours, ref)


def test_span_loss_clamps_like_hf():
    start, end = RNG.normal(size=(3, 8)).astype(np.float32), RNG.normal(size=(3, 8)).astype(np.float32)
    s_pos, e_pos = np.array([1, 9, 4]), np.array([2, 3, 20])  # past the end -> clamped to 8 -> ignored
    ts, te = torch.tensor(s_pos).clamp(0, 8), torch.tensor(e_pos).clamp(0, 8)
    ref = (F.cross_entropy(torch.tensor(start), ts, ignore_index=8) + F.cross_entropy(torch.tensor(end), te, ignore_index=8)) / 2
    close(span_loss(jnp.asarray(start), jnp.asarray(end), jnp.asarray(s_pos), jnp.asarray(e_pos)), ref)
