"""LM data pipeline: packing, entropy, and batches that depend only on the step."""

from __future__ import annotations

import numpy as np
import pytest

from common.data import Batches, pack, unigram_entropy


def test_pack_separates_documents_and_drops_the_tail():
    rows = pack([[1, 2, 3], [4, 5]], seq_len=3, separator=0)
    np.testing.assert_array_equal(rows, [[1, 2, 3], [0, 4, 5]])  # stream 1 2 3 0 4 5 0 -> tail "0" dropped
    with pytest.raises(ValueError, match="fewer than one row"):
        pack([[1]], seq_len=4, separator=None)
    with pytest.raises(ValueError, match="seq_len = 1 is invalid"):
        pack([[1, 2]], seq_len=1, separator=None)


def test_unigram_entropy():
    assert unigram_entropy(np.array([[0, 1, 0, 1]]), 4) == pytest.approx(np.log(2))
    assert unigram_entropy(np.array([[3, 3, 3]]), 4) == 0.0


def test_batches_are_a_function_of_the_step():
    rows = np.arange(40).reshape(20, 2)
    a, b = Batches(rows, 4, seed=1), Batches(rows, 4, seed=1)
    first = [a.batch_at(s)["input_ids"] for s in range(12)]
    np.testing.assert_array_equal(b.batch_at(7)["input_ids"], first[7])  # no hidden iterator state
    epoch = np.concatenate(first[:5])  # 5 steps = one epoch: every row exactly once
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, rows))
    assert not np.array_equal(np.concatenate(first[5:10]), epoch)  # the next epoch is reshuffled
    assert not np.array_equal(Batches(rows, 4, seed=2).batch_at(0)["input_ids"], first[0])
    with pytest.raises(ValueError, match="batch_size = 30 is invalid"):
        Batches(rows, 30)
