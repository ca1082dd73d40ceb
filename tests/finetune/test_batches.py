"""Batches of a fine-tuning job: a function of the step alone, every feature once an epoch, little padding, and
padding by field group (and along the choice axis's sequences for multiple choice)."""

from __future__ import annotations

import numpy as np
import pytest

from common.finetune.batches import Field, TrainBatches, collate, eval_batches, feature_length


def test_batches_are_a_function_of_the_step():
    lengths = np.random.default_rng(0).integers(5, 300, 103)
    a, b = TrainBatches(lengths, 8, seed=4), TrainBatches(lengths, 8, seed=4)
    for step in (57, 3, 200, 0, 57):  # any order, any instance: the same rows
        np.testing.assert_array_equal(a.indices_at(step), b.indices_at(step))
    assert a.steps_per_epoch == 13
    for epoch in range(3):
        rows = np.concatenate([a.indices_at(epoch * 13 + k) for k in range(13)])
        assert len(rows) == 104 and set(rows) == set(range(103))  # each once, one topped up
    assert not np.array_equal(a.epoch_batches(0), a.epoch_batches(1))
    assert not np.array_equal(a.epoch_batches(0), TrainBatches(lengths, 8, seed=5).epoch_batches(0))
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        TrainBatches(lengths, 0)


def test_length_grouping_pads_less_than_random_batches():
    lengths = np.random.default_rng(1).integers(5, 500, 512)
    grouped = TrainBatches(lengths, 8)
    waste = lambda batches: sum(lengths[b].max() - lengths[b] for b in batches).sum()  # noqa: E731
    random = np.random.default_rng(2).permutation(512).reshape(64, 8)
    assert waste(grouped.epoch_batches(0)) < 0.25 * waste(random)


def test_collate_pads_each_group_to_its_bucket():
    fields = {"input_ids": Field(1), "attention_mask": Field(0), "bbox": Field((0, 0, 0, 0)),
              "labels": Field(-100, group="target")}
    features = [{"input_ids": np.arange(n, dtype=np.int32), "attention_mask": np.ones(n, np.int32),
                 "bbox": np.full((n, 4), 7, np.int32), "labels": np.arange(m, dtype=np.int32), "score": np.int32(n)}
                for n, m in ((5, 3), (11, 2))]
    batch = collate(features, fields)
    assert batch["input_ids"].shape == (2, 16) and batch["labels"].shape == (2, 8) and batch["bbox"].shape == (2, 16, 4)
    np.testing.assert_array_equal(batch["input_ids"][0], list(range(5)) + [1] * 11)
    np.testing.assert_array_equal(batch["bbox"][0, 5:], 0)
    np.testing.assert_array_equal(batch["labels"][1], [0, 1] + [-100] * 6)
    np.testing.assert_array_equal(batch["score"], [5, 11])
    assert collate(features, fields, limits={"input": 12})["input_ids"].shape == (2, 12)  # capped at the model
    assert collate(features, fields, ladder=(12, 40))["input_ids"].shape == (2, 12)


def test_multiple_choice_pads_the_sequence_axis():
    fields = {"input_ids": Field(1, axis=1)}
    features = [{"input_ids": np.zeros((4, n), np.int32)} for n in (3, 9)]
    assert collate(features, fields)["input_ids"].shape == (2, 4, 16)
    assert feature_length(features[1], fields) == 9


def test_eval_batches_keep_one_row_count():
    out = list(eval_batches([9, 1, 5, 3, 7], 2))
    assert [real for real, _ in out] == [[1, 3], [2, 4], [0]]
    assert [filled for _, filled in out][-1] == [0, 0]
