"""Language-model data: pack token streams into fixed-length rows, and batches that are a function of the step.

``batch_at(step)`` depends only on (rows, batch_size, seed, step), never on how many batches were drawn
before, so a run resumed at step k sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


def pack(token_lists: Sequence[Sequence[int]], seq_len: int, separator: int | None) -> np.ndarray:
    """Concatenate documents (each followed by ``separator`` if given) and cut into rows: [rows, seq_len] int32.

    The tail shorter than seq_len is dropped.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len = {seq_len} is invalid: expected >= 2")
    pieces = []
    for tokens in token_lists:
        pieces.append(np.asarray(tokens, np.int32))
        if separator is not None:
            pieces.append(np.asarray([separator], np.int32))
    stream = np.concatenate(pieces) if pieces else np.zeros((0,), np.int32)
    rows = len(stream) // seq_len
    if rows == 0:
        raise ValueError(f"the corpus has {len(stream)} tokens, fewer than one row of seq_len = {seq_len}")
    return stream[: rows * seq_len].reshape(rows, seq_len)


def unigram_entropy(rows: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats/token) of the corpus's token frequencies: the loss of the best context-free model."""
    counts = np.bincount(rows.reshape(-1), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@dataclasses.dataclass(frozen=True)
class Batches:
    """Shuffled batches over ``rows`` [n, seq_len]: epoch e uses permutation(seed, e); no row repeats within an epoch."""

    rows: np.ndarray
    batch_size: int
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.batch_size <= len(self.rows):
            raise ValueError(f"batch_size = {self.batch_size} is invalid: expected 1..{len(self.rows)} (rows available)")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.rows) // self.batch_size

    def batch_at(self, step: int, rows: slice = slice(None)) -> dict[str, np.ndarray]:
        """{"input_ids", "labels"} [batch, seq_len] for global step ``step`` (labels = inputs: HF shifts inside);
        ``rows``: only those rows of the batch (what one process of a multi-process job feeds)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        ids = self.rows[order[index * self.batch_size:(index + 1) * self.batch_size][rows]]
        return {"input_ids": ids, "labels": ids}
