"""Output heads shared by several families."""

from __future__ import annotations

from common import layers as L
from common.losses import span_loss


def span_head(p, hidden, start_positions=None, end_positions=None):
    """Extractive QA: a [H, 2] dense over hidden [B, T, H] -> (start_logits [B, T], end_logits [B, T], loss or None).

    The loss (HF's: positions clamped to the sequence, mean of start and end CE) needs both positions.
    """
    logits = L.dense(p, hidden)
    start, end = logits[..., 0], logits[..., 1]
    loss = None
    if start_positions is not None and end_positions is not None:
        loss = span_loss(start, end, start_positions, end_positions)
    return start, end, loss
