"""Validation of the inputs of every Llama head (host side, before anything is traced)."""

from __future__ import annotations

from typing import Any

import numpy as np

from common import validation as V
from common.family import Head, checked_labels
from llama_jax.config import LlamaConfig


def max_positions(config: LlamaConfig) -> int | None:
    """Largest allowed position + 1, or None where the rope type is made to extrapolate (dynamic NTK)."""
    return None if config.rope.rope_type == "dynamic" else config.max_position_embeddings


def validate_inputs(config: LlamaConfig, head: Head, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert the array inputs of ``head``; returns them as numpy arrays (None dropped)."""
    out: dict[str, np.ndarray] = {}
    ids = V.token_ids("input_ids", inputs.get("input_ids"), config.vocab_size)
    b, t = ids.shape
    out["input_ids"] = ids.astype(np.int32)
    limit = max_positions(config)
    if inputs.get("attention_mask") is not None:
        out["attention_mask"] = V.binary_mask("attention_mask", inputs["attention_mask"], ids.shape).astype(np.int32)
    if inputs.get("position_ids") is not None:
        pos = V.as_array("position_ids", inputs["position_ids"])
        V.check_shape("position_ids", pos, ids.shape, "input_ids")
        V.check_int("position_ids", pos)
        V.check_range("position_ids", pos, 0, limit if limit is not None else np.iinfo(np.int32).max)
        out["position_ids"] = pos.astype(np.int32)
    elif limit is not None and t > limit:
        raise ValueError(f"input_ids has sequence length {t}, past max_position_embeddings={limit}; "
                         f"the allowed range is [1, {limit}]")
    out.update(checked_labels(head, config, inputs, ids.shape))
    out.update(V.span_positions(inputs, b))
    return out
