"""Input checks at the API boundary.

XLA clamps out-of-range gathers, so an id past the vocabulary or a position past the table would give a
plausible, wrong answer instead of an error. Everything a user passes to ``model(...)`` or ``generate`` is
checked here first, and each failure is a ValueError naming the argument, the bad value and the range.

Host (numpy, lists) inputs are checked with numpy. Arrays already on the devices (``jax.Array``) stay there:
a value check runs as a small reduction on the devices and only its scalars are read back
(:func:`first_true`, :func:`host_value`), so ``model(...)`` on a device batch never copies it to the host.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from common.losses import IGNORE_INDEX


def on_device(value: Any) -> bool:
    """A concrete jax.Array (checked where it lives); numpy arrays and Python values are host values."""
    return isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer)


def xp(value: Any):
    """The array namespace of ``value``: jax.numpy for device arrays, numpy otherwise."""
    return jnp if on_device(value) else np


def host_value(value: Any) -> np.ndarray:
    """A small derived value (a count, a per-row vector, one box) as numpy: read back from the devices when it
    lives there. Never call it on a whole batch."""
    return np.asarray(jax.device_get(value)) if on_device(value) else np.asarray(value)


@jax.jit
def _first_true_on_device(bad):
    flat = bad.reshape(-1)
    index = jnp.argmax(flat)  # the first True (argmax of bools), or 0 when there is none
    return flat[index], index


def first_true(bad: Any) -> tuple[int, ...] | None:
    """The index of the first True entry of ``bad`` (row-major), or None. On the devices this is one jitted
    reduction whose two scalars are read."""
    if on_device(bad):
        found, index = jax.device_get(_first_true_on_device(bad))
        return tuple(int(i) for i in np.unravel_index(int(index), bad.shape)) if found else None
    hits = np.argwhere(np.asarray(bad))
    return tuple(int(i) for i in hits[0]) if len(hits) else None


def as_array(name: str, value: Any):
    """``value`` as an array: device arrays as they are, anything else through numpy."""
    if on_device(value):
        return value
    try:
        return np.asarray(value)
    except Exception as e:  # noqa: BLE001 - anything that is not array-like
        raise ValueError(f"{name} must be array-like, got {type(value).__name__}: {e}") from None


def check_rank(name: str, value: np.ndarray, rank: int, layout: str) -> None:
    if value.ndim != rank:
        raise ValueError(f"{name} must have rank {rank} ({layout}), got shape {value.shape}")


def check_int(name: str, value: np.ndarray) -> None:
    if not (np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_):
        raise ValueError(f"{name} must hold integers, got dtype {value.dtype}")


def check_range(name: str, value, low: int, high: int, allowed: tuple[int, ...] = ()) -> None:
    """Every entry in [low, high) or in ``allowed`` (e.g. -100 for ignored labels)."""
    if value.size == 0:
        return
    if value.dtype == bool:
        value = value.astype(np.int32)
    bad = (value < low) | (value >= high)
    for a in allowed:
        bad &= value != a
    where = first_true(bad)
    if where is not None:
        first = host_value(value[where]).item()
        extra = f" or one of {allowed}" if allowed else ""
        raise ValueError(f"{name} holds {first}, outside the allowed range [{low}, {high - 1}]{extra}")


def check_shape(name: str, value: np.ndarray, shape: tuple[int, ...], like: str) -> None:
    if value.shape != tuple(shape):
        raise ValueError(f"{name} has shape {value.shape}, expected {tuple(shape)} (the shape of {like})")


def token_ids(name: str, value: Any, vocab_size: int, rank: int = 2, layout: str = "[batch, seq]"):
    arr = as_array(name, value)
    check_rank(name, arr, rank, layout)
    check_int(name, arr)
    if 0 in arr.shape:
        raise ValueError(f"{name} has shape {arr.shape}: batch and sequence must be non-empty")
    check_range(name, arr, 0, vocab_size)
    return arr


def binary_mask(name: str, value: Any, shape: tuple[int, ...], like: str = "input_ids"):
    arr = as_array(name, value)
    check_shape(name, arr, shape, like)
    check_int(name, arr)
    check_range(name, arr, 0, 2)
    return arr


def labels(value: Any, kind: str, *, batch: int, token_shape: tuple[int, ...], classes: int) -> np.ndarray:
    """Check a head's ``labels``. kind: "sequence" ([batch] class ids, or [batch] / [batch, classes] floats for
    regression and multi-label), "token" (token_shape ids, -100 ignored; classes = vocab or labels) or
    "choice" ([batch] choice index, -100 ignored; classes = number of choices)."""
    arr = as_array("labels", value)
    if kind == "sequence":
        check_shape("labels", arr, (batch,) if arr.ndim == 1 else (batch, classes), "[batch] or [batch, num_labels]")
        if not np.issubdtype(arr.dtype, np.integer):
            return arr
        if classes > 1:
            check_range("labels", arr, 0, classes)
        return arr.astype(np.int32)
    shape, layout = (token_shape, "input_ids") if kind == "token" else ((batch,), "[batch]")
    check_shape("labels", arr, shape, layout)
    check_int("labels", arr)
    check_range("labels", arr, 0, classes, allowed=(IGNORE_INDEX,))
    return arr.astype(np.int32)


def span_positions(inputs: dict[str, Any], batch: int) -> dict[str, np.ndarray]:
    """start_positions / end_positions of a QA head, each [batch] int, when given."""
    out = {}
    for name in ("start_positions", "end_positions"):
        if inputs.get(name) is not None:
            pos = as_array(name, inputs[name])
            check_shape(name, pos, (batch,), "[batch]")
            check_int(name, pos)
            out[name] = pos.astype(np.int32)
    return out


def roberta_types_and_positions(inputs: dict[str, Any], ids: np.ndarray, *, type_vocab_size: int,
                                pad_token_id: int, max_positions: int) -> dict[str, np.ndarray]:
    """token_type_ids and position_ids of a RoBERTa-style model (Longformer, LiLT), shaped like ``ids``, when
    given; without position_ids, the positions RoBERTa derives from the pads (pad_token_id + 1 + index among
    non-pad tokens) must fit ``max_positions``."""
    out = {}
    if inputs.get("token_type_ids") is not None:
        tt = as_array("token_type_ids", inputs["token_type_ids"])
        check_shape("token_type_ids", tt, ids.shape, "input_ids")
        check_int("token_type_ids", tt)
        check_range("token_type_ids", tt, 0, type_vocab_size)
        out["token_type_ids"] = tt.astype(np.int32)
    if inputs.get("position_ids") is not None:
        pos = as_array("position_ids", inputs["position_ids"])
        check_shape("position_ids", pos, ids.shape, "input_ids")
        check_int("position_ids", pos)
        check_range("position_ids", pos, 0, max_positions)
        out["position_ids"] = pos.astype(np.int32)
    else:
        highest = pad_token_id + int(host_value((ids != pad_token_id).sum(axis=-1).max()))
        if highest >= max_positions:
            raise ValueError(f"input_ids has {highest - pad_token_id} non-pad tokens in a row: position "
                             f"{highest} is past max_position_embeddings={max_positions}; the allowed range is "
                             f"[1, {max_positions - pad_token_id - 1}] tokens")
    return out
