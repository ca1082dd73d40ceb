"""Batches of variable-length features in a bounded set of shapes, for training and for evaluation.

A feature is one example after tokenization: a dict of numpy arrays, some with a sequence axis (``input_ids``
[seq], ``bbox`` [seq, 4], a multiple-choice example's ``input_ids`` [choices, seq], a summary's ``labels``
[target]) and some without (a class label). ``collate`` pads each group of sequence fields to the group's padded
length, the inference pipelines' ladder (``common.pipelines.batching.padded_length``: powers of two to 256, then
steps of 1.5x), so a job compiles one train step per length on the ladder, never one per batch.

Training batches are a function of the step alone (``TrainBatches.indices_at``), so a resumed job sees exactly
the batches an uninterrupted one would: epoch e shuffles the features with (seed, e), cuts the order into windows
of ``window`` batches, sorts each window by length (little padding) and shuffles the batches of the epoch again.
Every batch has ``batch_size`` rows: an epoch whose size does not divide evenly is topped up with the first
features of its own order, so every feature is seen at least once per epoch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Mapping, Sequence

import numpy as np

from common.pipelines.batching import padded_length


@dataclasses.dataclass(frozen=True)
class Field:
    """How one sequence field is padded: with ``pad`` (a scalar, or one value of a trailing shape such as a pad
    box), along ``axis``, to the padded length of its ``group`` (fields of one group share a length)."""

    pad: int | float | tuple = 0
    group: str = "input"
    axis: int = 0


def feature_length(feature: Mapping[str, np.ndarray], fields: Mapping[str, Field], group: str = "input") -> int:
    """The longest sequence field of ``group`` in one feature."""
    return max(np.shape(feature[name])[f.axis] for name, f in fields.items() if f.group == group and name in feature)


def collate(features: Sequence[Mapping[str, np.ndarray]], fields: Mapping[str, Field],
            limits: Mapping[str, int | None] | None = None, ladder: Sequence[int] | None = None
            ) -> dict[str, np.ndarray]:
    """Stack features into one batch: [batch, ...] per field, sequence fields padded (``Field``) to their group's
    padded length, at most ``limits[group]`` (the model's positions) when the longest fits it."""
    limits = limits or {}
    groups = {f.group for name, f in fields.items() if name in features[0]}
    lengths = {g: padded_length(max(feature_length(x, fields, g) for x in features), limits.get(g), ladder)
               for g in groups}
    batch = {}
    for name in features[0]:
        values = [np.asarray(x[name]) for x in features]
        spec = fields.get(name)
        if spec is None:
            batch[name] = np.stack(values)
            continue
        shape = list(values[0].shape)
        shape[spec.axis] = lengths[spec.group]
        out = np.empty((len(values), *shape), dtype=values[0].dtype)
        out[...] = spec.pad
        for row, v in zip(out, values):
            row[tuple(slice(0, n) for n in v.shape)] = v
        batch[name] = out
    return batch


@dataclasses.dataclass
class TrainBatches:
    """Which features make up the batch of each step (module docstring). lengths: [n] each feature's length."""

    lengths: np.ndarray
    batch_size: int
    seed: int = 0
    window: int = 32  # batches sorted together: larger pads less, smaller mixes lengths more across steps

    def __post_init__(self):
        self.lengths = np.asarray(self.lengths)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {self.batch_size!r}")
        self._epochs: dict[int, np.ndarray] = {}

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """[steps_per_epoch, batch_size] feature indices of every batch of ``epoch``, in the order they run."""
        if epoch not in self._epochs:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.lengths))
            order = np.concatenate([order, order[:self.steps_per_epoch * self.batch_size - len(order)]])
            span = self.window * self.batch_size
            for start in range(0, len(order), span):
                piece = order[start:start + span]
                order[start:start + span] = piece[np.argsort(self.lengths[piece], kind="stable")]
            batches = order.reshape(self.steps_per_epoch, self.batch_size)
            self._epochs = {epoch: batches[rng.permutation(len(batches))]}  # one epoch held at a time
        return self._epochs[epoch]

    def indices_at(self, step: int) -> np.ndarray:
        """[batch_size] feature indices of global step ``step`` (0-based)."""
        epoch, index = divmod(int(step), self.steps_per_epoch)
        return self.epoch_batches(epoch)[index]


def eval_batches(lengths: Sequence[int], batch_size: int) -> Iterator[tuple[list[int], list[int]]]:
    """Evaluation order: features sorted by length in batches of ``batch_size``; yields (the batch's feature
    indices, the same filled to batch_size rows with copies of its last one), so every batch has one row count."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        real = order[start:start + batch_size]
        yield real, real + [real[-1]] * (batch_size - len(real))


def padding_fraction(batch: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(real tokens, padded positions) of a batch, from its attention_mask."""
    mask = np.asarray(batch["attention_mask"])
    return int(mask.sum()), int(mask.size)
