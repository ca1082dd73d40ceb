"""Validation of the inputs of every XLM head (host side, before anything is traced).

What JAX would get silently wrong: a language id past the language table or a token type past the word table
(both gathers clamp), lengths longer than the sequence (torch asserts), and SQuAD-head positions or a cls
index outside the sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import validation as V
from common.family import Head, checked_labels
from common.losses import IGNORE_INDEX
from xlm_jax.config import XLMConfig


def max_positions(config: XLMConfig) -> int:
    """Largest position id + 1: positions are 0..T-1 by default."""
    return config.max_position_embeddings


def _like_ids(inputs: dict[str, Any], name: str, shape: tuple[int, ...], high: int, what: str) -> np.ndarray | None:
    if inputs.get(name) is None:
        return None
    arr = V.as_array(name, inputs[name])
    V.check_shape(name, arr, shape, "input_ids")
    V.check_int(name, arr)
    try:
        V.check_range(name, arr, 0, high)
    except ValueError as e:
        raise ValueError(f"{e} ({what})") from None
    return arr.astype(np.int32)


def _per_row(inputs: dict[str, Any], name: str, batch: int, low: int, high: int, allowed=()) -> np.ndarray | None:
    if inputs.get(name) is None:
        return None
    arr = V.as_array(name, inputs[name])
    V.check_shape(name, arr, (batch,), "[batch]")
    V.check_int(name, arr)
    V.check_range(name, arr, low, high, allowed)
    return arr.astype(np.int32)


def validate_inputs(config: XLMConfig, head: Head, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert the array inputs of ``head``; returns them as numpy arrays (None dropped)."""
    choice = head.label_kind == "choice"
    rank, layout = (3, "[batch, choices, seq]") if choice else (2, "[batch, seq]")
    ids = V.token_ids("input_ids", inputs.get("input_ids"), config.vocab_size, rank, layout)
    shape, batch, t = ids.shape, ids.shape[0], ids.shape[-1]
    out: dict[str, Any] = {"input_ids": ids.astype(np.int32)}
    if inputs.get("attention_mask") is not None:
        out["attention_mask"] = V.binary_mask("attention_mask", inputs["attention_mask"], shape).astype(np.int32)
    out["langs"] = _like_ids(inputs, "langs", shape, config.n_langs, f"language ids, n_langs={config.n_langs}")
    out["token_type_ids"] = _like_ids(inputs, "token_type_ids", shape, config.vocab_size,
                                      "XLM looks token types up in the word embeddings")
    out["position_ids"] = _like_ids(inputs, "position_ids", shape, config.max_position_embeddings,
                                    "max_position_embeddings")
    if out["position_ids"] is None and t > config.max_position_embeddings:
        raise ValueError(f"input_ids has {t} tokens: positions 0..{t - 1} are past max_position_embeddings="
                         f"{config.max_position_embeddings}; the allowed range is [1, "
                         f"{config.max_position_embeddings}] tokens")
    if inputs.get("lengths") is not None:  # (multiple choice has no lengths argument: transformers drops it)
        out["lengths"] = _per_row(inputs, "lengths", batch, 0, t + 1)

    out.update(checked_labels(head, config, inputs, shape))

    if "cls_index" in head.inputs:  # the SQuAD head
        out.update(_squad_inputs(config, inputs, batch, t))
    elif "start_positions" in head.inputs:  # the simple span head
        if config.num_labels != 2:
            raise ValueError(f"{head.hf_class} needs num_labels = 2 (start and end), the config has "
                             f"{config.num_labels}")
        out.update(V.span_positions(inputs, batch))
    return {k: v for k, v in out.items() if v is not None}


def _squad_inputs(config: XLMConfig, inputs: dict[str, Any], batch: int, t: int) -> dict[str, Any]:
    """start/end_positions in [0, T) (or -100, ignored), cls_index in [0, T), is_impossible 0/1, p_mask [B, T]
    in [0, 1]. Without both positions the head returns beams: T must cover start_n_top and end_n_top."""
    out = {name: _per_row(inputs, name, batch, 0, t, (IGNORE_INDEX,)) for name in ("start_positions", "end_positions")}
    out["cls_index"] = _per_row(inputs, "cls_index", batch, 0, t)
    if inputs.get("is_impossible") is not None:
        arr = V.as_array("is_impossible", inputs["is_impossible"])
        V.check_shape("is_impossible", arr, (batch,), "[batch]")
        bad = V.first_true((arr != 0) & (arr != 1))
        if bad is not None:
            raise ValueError(f"is_impossible holds {V.host_value(arr[bad]).item()}: expected 0 or 1 per example")
        out["is_impossible"] = arr.astype(np.float32)
    if inputs.get("p_mask") is not None:
        arr = V.as_array("p_mask", inputs["p_mask"])
        V.check_shape("p_mask", arr, (batch, t), "input_ids")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or \
                V.first_true((arr < 0) | (arr > 1)) is not None:
            raise ValueError("p_mask must hold numbers in [0, 1] (1 = not an answer token)")
        out["p_mask"] = arr.astype(np.float32)
    training = out["start_positions"] is not None and out["end_positions"] is not None
    if not training and t < max(config.start_n_top, config.end_n_top):
        raise ValueError(f"input_ids has {t} tokens, fewer than the beams the SQuAD head keeps (start_n_top="
                         f"{config.start_n_top}, end_n_top={config.end_n_top}): the allowed range is "
                         f"[{max(config.start_n_top, config.end_n_top)}, ...] tokens")
    return out
