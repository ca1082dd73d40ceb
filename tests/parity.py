"""Helpers shared by the parity tests of every family."""

from __future__ import annotations

import numpy as np

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
