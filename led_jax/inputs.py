"""Validation of the inputs of every LED head (host side, before anything is traced).

Also computes on the host what must be static under jit: the number of global attention slots
(``max_num_global``), which ``common.model.Model`` passes to the head as a static argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common import validation as V
from common.family import Head, checked_labels
from common.longformer_attention import count_max_num_global
from led_jax.config import LEDConfig
from led_jax.model import DefaultDecoderInputs


def max_positions(config: LEDConfig) -> int:
    """Largest decoder position + 1 (generation writes prompt + new tokens at decoder positions)."""
    return config.max_decoder_position_embeddings


def validate_inputs(config: LEDConfig, head: Head, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check and convert the array inputs of ``head``; returns them as numpy arrays (None dropped)."""
    out: dict[str, np.ndarray] = {}
    ids = V.token_ids("input_ids", inputs.get("input_ids"), config.vocab_size)
    out["input_ids"] = ids.astype(np.int32)
    b, s = ids.shape
    for name in ("attention_mask", "global_attention_mask"):
        if inputs.get(name) is not None:
            out[name] = V.binary_mask(name, inputs[name], ids.shape).astype(np.int32)
    padded = -(-s // config.max_window) * config.max_window
    if padded > config.max_encoder_position_embeddings:
        raise ValueError(f"input_ids has length {s}, padded to {padded} (a multiple of the attention window "
                         f"{config.max_window}): past max_encoder_position_embeddings="
                         f"{config.max_encoder_position_embeddings}; the allowed length is at most "
                         f"{config.max_encoder_position_embeddings // config.max_window * config.max_window}")
    amask = out.get("attention_mask")
    gmask = out.get("global_attention_mask")
    if gmask is not None and amask is not None:
        bad = V.first_true((gmask == 1) & (amask == 0))
        if bad is not None:
            raise ValueError(f"global_attention_mask marks padding position {bad} "
                             "(attention_mask is 0 there); global tokens must be real tokens")
    out["max_num_global"] = 0 if gmask is None else count_max_num_global(gmask if amask is None else amask, gmask)

    # The decoder's length: its own ids, else the labels' (conditional generation) or input_ids' (shifted).
    dec = inputs.get("decoder_input_ids")
    if dec is not None:
        dec = V.token_ids("decoder_input_ids", dec, config.vocab_size)
        if dec.shape[0] != b:
            raise ValueError(f"decoder_input_ids has batch {dec.shape[0]}, input_ids has {b}: they must match")
        out["decoder_input_ids"] = dec.astype(np.int32)
    if inputs.get("decoder_attention_mask") is not None:
        if dec is None:
            raise ValueError("decoder_attention_mask needs decoder_input_ids")
        out["decoder_attention_mask"] = V.binary_mask("decoder_attention_mask", inputs["decoder_attention_mask"],
                                                      dec.shape, "decoder_input_ids").astype(np.int32)
    out.update(_checked_labels(config, head, inputs, ids.shape, dec))
    if dec is not None:
        source, t = "decoder_input_ids", dec.shape[1]
    elif "labels" in out and decoder_reads_labels(head):
        source, t = "labels", out["labels"].shape[1]
    else:
        source, t = "input_ids (shifted, as decoder_input_ids)", s
    if t > config.max_decoder_position_embeddings:
        raise ValueError(f"{source} has length {t}: past max_decoder_position_embeddings="
                         f"{config.max_decoder_position_embeddings}; pass decoder_input_ids of at most that length")

    if head.label_kind == "sequence":
        # The sequence classification head: HF 4.x pools the decoder state at the last eos of each row and needs
        # the same count in every row.
        eos = config.eos_token_ids[0] if config.eos_token_ids else None
        counts = V.host_value((ids == eos).sum(axis=1)) if eos is not None else np.zeros(b, int)
        if (counts == 0).any() or len(set(counts.tolist())) > 1:
            raise ValueError(f"input_ids: sequence classification pools at the eos token (eos_token_id={eos}); "
                             f"every row needs the same number (>= 1) of them, got {counts.tolist()}")
        if t < s:
            raise ValueError(f"decoder_input_ids has length {t} < input_ids' {s}: sequence classification reads "
                             "the decoder at input_ids' eos positions")
    out.update(V.span_positions(inputs, b))
    return out


def decoder_reads_labels(head: Head) -> bool:
    """Whether ``head``'s decoder reads the shifted labels when no decoder_input_ids are given."""
    return isinstance(head.prepare, DefaultDecoderInputs) and head.prepare.from_labels


def _checked_labels(config: LEDConfig, head: Head, inputs: dict[str, Any], ids_shape: tuple[int, int],
                    dec: np.ndarray | None) -> dict[str, np.ndarray]:
    """``{"labels": ...}`` checked as ``head`` reads them, or {} when not given. Token labels are shaped like the
    decoder's inputs: decoder_input_ids when given, else the labels are themselves the decoder's (shifted)."""
    labels = inputs.get("labels")
    if labels is None:
        return {}
    shape = ids_shape
    if head.label_kind == "token":
        b = ids_shape[0]
        shape = dec.shape if dec is not None else V.as_array("labels", labels).shape
        if dec is None and (len(shape) != 2 or shape[0] != b):
            raise ValueError(f"labels has shape {shape}: expected [batch={b}, target_len]")
    return checked_labels(head, config, inputs, shape)
