"""Validation of the inputs of every Longformer head (host side, before anything is traced).

Besides checking ranges, this computes on the host what must be static under jit: the number of global
attention slots (HF's ``max_num_global_attn_indices``), returned as the Python int ``max_num_global``, which
``common.model.Model`` passes to the head as a static argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import validation as V
from common.family import Head, checked_labels
from common.longformer_attention import count_max_num_global
from longformer_jax.config import LongformerConfig
from longformer_jax.model import DefaultGlobal


def max_positions(config: LongformerConfig) -> int:
    """Largest position id + 1 (real tokens take pad_token_id + 1 + their index among non-pad tokens)."""
    return config.max_position_embeddings


def validate_inputs(config: LongformerConfig, head: Head, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert the array inputs of ``head``; returns them as numpy arrays (None dropped)."""
    out: dict[str, np.ndarray] = {}
    choice = head.label_kind == "choice"
    rank, layout = (3, "[batch, num_choices, seq]") if choice else (2, "[batch, seq]")
    ids = V.token_ids("input_ids", inputs.get("input_ids"), config.vocab_size, rank, layout)
    out["input_ids"] = ids.astype(np.int32)
    shape = ids.shape
    t = shape[-1]
    for name in ("attention_mask", "global_attention_mask"):
        if inputs.get(name) is not None:
            out[name] = V.binary_mask(name, inputs[name], shape).astype(np.int32)
    out.update(V.roberta_types_and_positions(inputs, ids, type_vocab_size=config.type_vocab_size,
                                             pad_token_id=config.pad_token_id, max_positions=max_positions(config)))

    # A global flag on padding is a caller bug (HF silently ignores it): say so rather than guess.
    if out.get("global_attention_mask") is not None and out.get("attention_mask") is not None:
        bad = V.first_true((out["global_attention_mask"] == 1) & (out["attention_mask"] == 0))
        if bad is not None:
            raise ValueError(f"global_attention_mask marks padding position {bad} "
                             "(attention_mask is 0 there); global tokens must be real tokens")

    # The static number of global slots, as HF counts it (global AND attended, max over the (flattened) batch).
    gmask = out.get("global_attention_mask")
    if gmask is None and isinstance(head.prepare, DefaultGlobal):
        if head.prepare.from_question:
            seps = V.host_value((ids == config.sep_token_id).sum(axis=-1))
            if (seps != 3).any():
                raise ValueError(f"input_ids: without a global_attention_mask, {head.name} puts global attention on "
                                 f"the question, which needs exactly 3 sep tokens (sep_token_id={config.sep_token_id})"
                                 f" in every row; got counts {seps.reshape(-1).tolist()}; pass global_attention_mask")
        gmask = head.prepare.rule(config, ids)
    amask = out.get("attention_mask")
    out["max_num_global"] = 0 if gmask is None else count_max_num_global(
        gmask.reshape(-1, t) if amask is None else amask.reshape(-1, t), gmask.reshape(-1, t))

    out.update(checked_labels(head, config, inputs, shape))
    out.update(V.span_positions(inputs, shape[0]))
    return out
