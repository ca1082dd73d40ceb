"""Activation checkpointing (remat) of a scanned layer body, selected by name from the config."""

from __future__ import annotations

import jax

POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(fn, policy: str):
    """Wrap a scan body ``fn(carry, xs)`` in ``jax.checkpoint`` unless policy is "none"."""
    if policy == "none":
        return fn
    if policy not in POLICIES:
        raise ValueError(f"remat_policy {policy!r} is invalid: expected 'none' or one of {sorted(POLICIES)}")
    return jax.checkpoint(fn, policy=POLICIES[policy], prevent_cse=False)
