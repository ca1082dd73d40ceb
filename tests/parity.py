"""Helpers shared by the parity tests of every family."""

from __future__ import annotations

import numpy as np
import torch

import conversion

ATOL = 1e-5  # float32 max abs difference against transformers


def load_pair(hf_model, save_hf, tmp_path, head, **overrides):
    """A tiny random transformers model for ``head`` and ours loaded from its save_pretrained directory."""
    hf = hf_model(head, **overrides)
    return hf, conversion.from_pretrained(save_hf(hf, tmp_path / head), progress=False)


def assert_close(ours, ref, mask=None, what="", atol=ATOL):
    """Max abs difference <= atol, over the entries where ``mask`` (aligned with the leading dims) is set."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    diff = np.abs(ours - ref)
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        mask = mask.reshape(mask.shape + (1,) * (diff.ndim - mask.ndim))
        diff = diff[np.broadcast_to(mask, diff.shape)]
    assert diff.max() <= atol, f"{what}: max abs diff {diff.max():.3e} > {atol}"


def assert_all_close(ours, ref, mask=None, what=""):
    """assert_close on each pair of two sequences of arrays (hidden_states, attentions, ...), which must have
    the same length: zip alone would stop at the shorter one and pass a missing layer."""
    assert len(ours) == len(ref), f"{what}: {len(ours)} arrays != {len(ref)}"
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert_close(a, b, mask, f"{what}[{i}]")


def perturb_norms_and_biases(model: torch.nn.Module) -> torch.nn.Module:
    """Random init leaves norms at 1 and biases (and BART-style final_logits_bias buffers) at 0: add noise to
    them, in place, so that the mapping of every tensor is tested."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
        for name, buf in model.named_buffers():
            if name.endswith("final_logits_bias"):
                buf.add_(0.1 * torch.randn_like(buf))
    return model
