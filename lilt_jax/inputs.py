"""Validation of the inputs of every LiLT head (host side, before anything is traced).

Boxes matter most: JAX's embedding lookups wrap negative indices and clamp large ones, so a bad box would
silently read the wrong rows (torch raises an IndexError for some and not others).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import validation as V
from common.family import Head, checked_labels
from lilt_jax.config import LiltConfig

BOX_MAX = 1000  # boxes are normalised to 0..1000 (LayoutLM's convention, what LiLT was trained on)


def max_positions(config: LiltConfig) -> int:
    """Largest position id + 1 (real tokens take pad_token_id + 1 + their index among non-pad tokens)."""
    return config.max_position_embeddings


def check_boxes(bbox: Any, shape: tuple[int, ...], config: LiltConfig) -> np.ndarray:
    """bbox: [B, T, 4] ints (x0, y0, x1, y1), each in [0, min(1000, max_2d_position_embeddings - 1)], with
    x0 <= x1 and y0 <= y1. Returns it as int32."""
    box = V.as_array("bbox", bbox)
    if box.shape != shape + (4,):
        raise ValueError(f"bbox has shape {box.shape}: expected {shape + (4,)} (one (x0, y0, x1, y1) box per token "
                         "of input_ids)")
    V.check_int("bbox", box)
    high = min(BOX_MAX, config.max_2d_position_embeddings - 1)
    V.check_range("bbox", box, 0, high + 1)
    for lo, hi, names in ((0, 2, "x1 < x0"), (1, 3, "y1 < y0")):
        where = V.first_true(box[..., hi] < box[..., lo])
        if where is not None:
            raise ValueError(f"bbox at (batch, token) {where} is {V.host_value(box[where]).tolist()}: {names}; boxes are "
                             "(x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
    return box.astype(np.int32)


def validate_inputs(config: LiltConfig, head: Head, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert the array inputs of ``head``; returns them as numpy arrays (None dropped)."""
    out: dict[str, np.ndarray] = {}
    ids = V.token_ids("input_ids", inputs.get("input_ids"), config.vocab_size)
    out["input_ids"] = ids.astype(np.int32)
    shape = ids.shape
    if inputs.get("bbox") is not None:
        out["bbox"] = check_boxes(inputs["bbox"], shape, config)
    if inputs.get("attention_mask") is not None:
        out["attention_mask"] = V.binary_mask("attention_mask", inputs["attention_mask"], shape).astype(np.int32)
    out.update(V.roberta_types_and_positions(inputs, ids, type_vocab_size=config.type_vocab_size,
                                             pad_token_id=config.pad_token_id, max_positions=max_positions(config)))
    out.update(checked_labels(head, config, inputs, shape))
    out.update(V.span_positions(inputs, shape[0]))
    return out
