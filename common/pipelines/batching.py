"""Running a model over many variable-length rows in a bounded set of compiled shapes.

Rows are sorted by length (inside one call: a JSONL job's chunk, or a call's list), cut into batches of
``batch_size``, and each batch padded to a bucketed length (``padded_length``: powers of two up to 256, then
steps of 1.5x: 384, 512, 768, 1024, 1536, ...; or the caller's own ladder; capped at the model's position limit)
and its row count to a power of two no larger than ``batch_size`` (only a call's last batch is short; filled with
copies of a real row, never with an empty one, so no fully-masked row ever reaches a softmax). A pipeline that
sees inputs of every length from 5 to 4,096 therefore compiles at most 14 lengths (+ a few short-batch shapes),
and pads about 15% of the positions it runs on uniformly spread lengths (25% with powers of two alone). A head
whose output padding would change (one that averages every position) is run "exact": only rows of one length
share a batch.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from common.pipelines.stats import BatchStats
from common.tokenization import pad_rows

SHORTEST = 8  # the smallest padded length: shorter rows share one program
DOUBLING_UNTIL = 256  # padded lengths double up to here, then step by 1.5x (half of the doublings' padding)


def bucket(n: int, limit: int | None = None, smallest: int = SHORTEST) -> int:
    """The padded size of ``n``: the next power of two >= max(n, smallest), at most ``limit`` (when n fits)."""
    size = 1 << max(int(n) - 1, smallest - 1, 0).bit_length()
    return max(n, min(size, limit)) if limit is not None else size


def padded_length(n: int, limit: int | None = None, ladder: Sequence[int] | None = None) -> int:
    """The length a row of ``n`` tokens is padded to: the smallest step of ``ladder`` (sorted ints) >= n, else of
    the default ladder (8, 16, ..., 256, 384, 512, 768, 1024, 1536, ...); at most ``limit`` (when n fits), and
    never shorter than n."""
    size = next((step for step in ladder or () if step >= n), None)
    if size is None:
        size = bucket(n)
        if size > DOUBLING_UNTIL and size * 3 // 4 >= n:
            size = size * 3 // 4
    return max(n, min(size, limit)) if limit is not None else size


def ladder_steps(shortest: int, longest: int, limit: int | None = None,
                 ladder: Sequence[int] | None = None) -> list[int]:
    """Every padded length rows of ``shortest``..``longest`` tokens (at most ``limit``) can get."""
    steps, n = [], shortest
    while n <= (longest if limit is None else min(longest, limit)):
        steps.append(padded_length(n, limit, ladder))
        n = steps[-1] + 1
    return steps


def check_ladder(ladder) -> tuple[int, ...] | None:
    """A ``buckets=`` argument: None (the default ladder) or increasing positive ints (ValueError otherwise)."""
    if ladder is None:
        return None
    if isinstance(ladder, (str, bytes)) or not hasattr(ladder, "__iter__"):
        raise ValueError(f"buckets: expected None or a list of increasing lengths, got {ladder!r}")
    steps = tuple(ladder)
    if not steps or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in steps) \
            or list(steps) != sorted(set(steps)):
        raise ValueError(f"buckets: expected increasing ints >= 1, got {list(steps)!r}")
    return tuple(int(s) for s in steps)


def run_batched(call: Callable[[dict], dict], rows: Sequence[dict], *, batch_size: int, pad_values: dict,
                padding: str = "right", limit: int | None = None, token_fields: Sequence[str] = (),
                ladder: Sequence[int] | None = None, stats: BatchStats | None = None,
                min_length: int = 0) -> list[dict]:
    """``call`` over ``rows`` in padded batches; returns each row's outputs, in the order of ``rows``.

    rows: one dict per row of 1-D (or [seq, ...]) numpy arrays, all of the row's own length along axis 0
        (``input_ids``, ``attention_mask``, ``bbox`` [seq, 4], ...).
    call: padded arrays {name: [batch, length, ...]} -> {field: array [batch, ...]} (numpy or jax).
    pad_values: the fill of each input (a scalar, or one value of its trailing shape such as a pad box).
    padding: "right", "left" (where the padding goes) or "exact" (no padding: batches of equal lengths).
    token_fields: output fields with a sequence axis (axis 1), cut back to the row's own tokens.
    ladder: the padded lengths (``padded_length``); stats: where each batch is recorded; min_length: pad every
    batch to at least this (``Pipeline.warmup``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if padding not in ("right", "left", "exact"):
        raise ValueError(f"padding: expected 'right', 'left' or 'exact', got {padding!r}")
    lengths = [len(row["input_ids"]) for row in rows]
    order = sorted(range(len(rows)), key=lambda i: lengths[i])  # similar lengths share a batch
    results: list[dict | None] = [None] * len(rows)
    side = "left" if padding == "left" else "right"
    for chunk in _chunks(order, lengths, batch_size, exact=padding == "exact"):
        length = lengths[chunk[0]] if padding == "exact" else \
            padded_length(max([min_length] + [lengths[i] for i in chunk]), limit, ladder)
        filled = chunk + [chunk[-1]] * (bucket(len(chunk), batch_size, smallest=1) - len(chunk))
        if stats is not None:
            stats.record_batch([lengths[i] for i in chunk], len(filled), length)
        arrays = {name: pad_rows([rows[i][name] for i in filled], length, side, fill)
                  for name, fill in pad_values.items() if name in rows[chunk[0]]}
        out = {field: np.asarray(value) for field, value in call(arrays).items()}
        for j, i in enumerate(chunk):
            row = {}
            for field, value in out.items():
                if field in token_fields:
                    cols = slice(length - lengths[i], length) if side == "left" else slice(0, lengths[i])
                    row[field] = value[j, cols]
                else:
                    row[field] = value[j]
            results[i] = row
    return results


def _chunks(order: list[int], lengths: list[int], batch_size: int, exact: bool):
    """``order`` (sorted by length) in runs of at most batch_size rows, of one length each when ``exact``."""
    start = 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        if exact:
            end = next((j for j in range(start + 1, end) if lengths[order[j]] != lengths[order[start]]), end)
        yield order[start:end]
        start = end
