"""Block tables for block-sparse attention: which key blocks each query block visits, and back.

Everything here is numpy on static shapes, evaluated at trace time: the tables are constants of the compiled
program even when the global-token positions are data, because the global keys are gathered into their own
segment at the end of the key array (see :class:`Layout`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Layout:
    """The static shape of one block-sparse attention problem.

    Keys ``[0, band_len)`` are positional: key j sits at position j and query i may see it iff
    ``i - left <= j <= i + right`` (``None``: unbounded on that side; causal is ``right=0``). Keys at index
    ``>= band_len`` (gathered global keys) are visible to every query. Which keys actually take part is further
    decided per key by a validity vector at run time (padding, removed duplicates).

    q_len, k_len: padded lengths, multiples of block_q and block_k; band_len: a multiple of block_k.
    """

    block_q: int
    block_k: int
    q_len: int
    k_len: int
    band_len: int
    left: int | None = None
    right: int | None = None

    def __post_init__(self):
        if self.q_len % self.block_q or self.k_len % self.block_k or self.band_len % self.block_k:
            raise ValueError(f"lengths must be block multiples: {self}")
        if not 0 <= self.band_len <= self.k_len:
            raise ValueError(f"band_len {self.band_len} must be in [0, k_len={self.k_len}]")

    @property
    def n_q(self) -> int:
        return self.q_len // self.block_q

    @property
    def n_k(self) -> int:
        return self.k_len // self.block_k

    @property
    def n_band(self) -> int:
        """Number of positional key blocks (the rest are global key blocks)."""
        return self.band_len // self.block_k

    @property
    def windowed(self) -> bool:
        return self.left is not None or self.right is not None


def visits(layout: Layout) -> np.ndarray:
    """[n_q, n_k] bool: query block i has at least one (position-)visible key in key block j."""
    bq, bk = layout.block_q, layout.block_k
    q_first = np.arange(layout.n_q)[:, None] * bq
    q_last = q_first + bq - 1
    k_first = np.arange(layout.n_k)[None, :] * bk
    k_last = k_first + bk - 1
    ok = np.ones((layout.n_q, layout.n_k), bool)
    if layout.left is not None:
        ok &= k_last >= q_first - layout.left
    if layout.right is not None:
        ok &= k_first <= q_last + layout.right
    ok[:, layout.n_band:] = True  # global key blocks: every query
    return ok


def _rows_to_table(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged rows of block indices -> (table [n, W] int32, counts [n] int32). Slots past a row's count
    repeat its last entry, so a grid-driven launcher re-uses the block already in fast memory (no copy)."""
    width = max([len(r) for r in rows] + [1])
    table = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        if len(r):
            table[i, :len(r)] = r
            table[i, len(r):] = r[-1]
    return table, np.array([len(r) for r in rows], np.int32)


def forward_table(layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Key blocks per query block (the forward and dq passes): (table [n_q, W], counts [n_q])."""
    ok = visits(layout)
    return _rows_to_table([np.nonzero(row)[0] for row in ok])


def transposed_table(layout: Layout, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Query blocks per key block, for key blocks [first, first + count) (the dk/dv pass).

    The dk/dv pass is run once over the positional key blocks and once over the global ones: a global key
    block is visited by every query block, and in one table its row would widen every band row to n_q."""
    ok = visits(layout)[:, first:first + count]
    return _rows_to_table([np.nonzero(col)[0] for col in ok.T])
