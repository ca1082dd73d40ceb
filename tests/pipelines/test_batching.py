"""common.pipelines.batching: bounded shapes, input order kept, rows never mixed with padding rows."""

from __future__ import annotations

import numpy as np
import pytest

from common.pipelines.batching import bucket, run_batched


def test_bucket_is_the_next_power_of_two_within_the_limit():
    assert [bucket(n) for n in (1, 7, 8, 9, 16, 17, 100)] == [8, 8, 8, 16, 16, 32, 128]
    assert bucket(100, limit=110) == 110 and bucket(120, limit=110) == 120  # never shorter than the row
    assert [bucket(n, 6, smallest=1) for n in (1, 2, 3, 5, 6)] == [1, 2, 4, 6, 6]


def rows_of(lengths):
    return [{"input_ids": np.arange(1, n + 1), "attention_mask": np.ones(n, np.int64)} for n in lengths]


@pytest.mark.parametrize("padding", ["right", "left", "exact"])
def test_every_row_gets_its_own_outputs_in_order(padding):
    lengths = [5, 1, 12, 30, 5, 9, 2, 17, 5]
    shapes = []

    def call(arrays):
        shapes.append(arrays["input_ids"].shape)
        if padding == "exact":
            assert arrays["attention_mask"].all()
        ids, mask = arrays["input_ids"], arrays["attention_mask"]
        return {"total": (ids * mask).sum(-1), "tokens": ids * 10}

    out = run_batched(call, rows_of(lengths), batch_size=4, pad_values={"input_ids": 0, "attention_mask": 0},
                      padding=padding, token_fields=("tokens",))
    for n, row in zip(lengths, out):
        assert row["total"] == n * (n + 1) // 2
        np.testing.assert_array_equal(row["tokens"], np.arange(1, n + 1) * 10)
    if padding == "exact":  # no padding at all: each call holds rows of one length
        assert {s[1] for s in shapes} == set(lengths) and len(shapes) == len(set(lengths))
    else:
        assert {s[1] for s in shapes} <= {8, 16, 32} and {s[0] for s in shapes} <= {1, 2, 4}


def test_many_lengths_compile_a_bounded_set_of_shapes():
    rng = np.random.default_rng(0)
    shapes = set()

    def call(arrays):
        shapes.add(arrays["input_ids"].shape)
        return {"n": arrays["attention_mask"].sum(-1)}

    lengths = rng.integers(1, 200, 500)
    out = run_batched(call, rows_of(lengths), batch_size=8, pad_values={"input_ids": 0, "attention_mask": 0})
    assert [int(r["n"]) for r in out] == list(lengths)
    assert len(shapes) <= 6 * 4  # lengths 8..256 x batches 1..8
