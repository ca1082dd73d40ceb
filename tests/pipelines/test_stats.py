"""Bounded shapes, ``pipe.stats``, ``pipe.warmup`` and the persistent compile cache (a warm second process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import conversion
from common import compile_cache
from common.pipelines.batching import check_ladder, ladder_steps, padded_length, run_batched
from common.pipelines.stats import BatchStats
from tests.pipelines.checkpoints import checkpoint, labelled

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["a b c", "the value of the module is returned", "x", "If the class is defined, the object is made."]


def test_padded_lengths_double_then_step_by_half():
    assert [padded_length(n) for n in (1, 8, 9, 200, 256, 257, 384, 385, 600, 1000, 1500, 4000)] == \
        [8, 8, 16, 256, 256, 384, 384, 512, 768, 1024, 1536, 4096]
    assert padded_length(300, limit=320) == 320 and padded_length(330, limit=320) == 330  # never cuts a row
    assert [padded_length(n, ladder=(10, 20)) for n in (3, 10, 11, 21)] == [10, 10, 20, 32]  # then the default
    assert ladder_steps(5, 1000) == [8, 16, 32, 64, 128, 256, 384, 512, 768, 1024]
    assert ladder_steps(5, 60, limit=50) == [8, 16, 32, 50]
    for bad in ("64", [], [8, 8], [16, 8], [0, 8], [8.0], [True]):
        with pytest.raises(ValueError, match="buckets: expected"):
            check_ladder(bad)


def test_a_thousand_lengths_compile_few_shapes_with_little_padding():
    """The issue's bar: 1,000 inputs of random lengths 5..4,096 -> at most 16 shapes, at most 20% padding."""
    lengths = np.random.default_rng(0).integers(5, 4097, 1000)
    rows = [{"input_ids": np.ones(n, np.int32), "attention_mask": np.ones(n, np.int32)} for n in lengths]
    stats = BatchStats()
    out = run_batched(lambda a: {"n": a["attention_mask"].sum(-1)}, rows, batch_size=8, stats=stats,
                      pad_values={"input_ids": 0, "attention_mask": 0}, limit=4096)
    assert [int(r["n"]) for r in out] == list(lengths)  # every row its own result, in input order
    assert stats.rows == 1000 and stats.tokens == lengths.sum()
    assert len(stats.shapes) <= 16, sorted(stats.shapes)
    assert stats.padded_fraction <= 0.2, stats.padded_fraction


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    # 7 labels: a config no other test compiles, so this module's first call really compiles
    return str(checkpoint(tmp_path_factory.mktemp("stats"), "longformer", "sequence_classification", **labelled(7)))


def test_stats_count_batches_padding_and_compiles_and_warmup_compiles_ahead(directory):
    pipe = conversion.pipeline("text-classification", directory, batch_size=2, compile_cache=False)
    lengths = [len(pipe.tokenizer(t)["input_ids"][0]) for t in TEXTS]
    first = pipe(TEXTS)
    stats = pipe.stats
    assert (stats.calls, stats.inputs, stats.rows, stats.batches) == (1, 4, 4, 2)
    assert stats.tokens == sum(lengths)
    assert stats.padded_tokens == sum(rows * length for rows, length in stats.shapes) and stats.compiles >= 1
    assert stats.padded_fraction == pytest.approx(1 - sum(lengths) / stats.padded_tokens)
    compiled = stats.compiles
    assert pipe(TEXTS) == first and pipe.stats.compiles == compiled  # the same shapes: nothing new
    assert json.loads(json.dumps(pipe.stats.as_dict()))["inputs"] == 8 and "8 inputs" in str(pipe.stats)

    assert pipe.warmup("a b", max_length=60) == [8, 16, 32, 64]  # rows of 33..60 tokens run at 64
    assert pipe.stats.inputs == 8  # warming up is not traffic
    pipe.stats.reset()
    longer = ["word " * 5, "word " * 12, "a", "b c d e f g h i j k"]  # 22 and 50 tokens: other lengths
    pipe(longer)
    assert pipe.stats.compiles == 0 and pipe.stats.inputs == 4 and len(pipe.stats.shapes) == 2
    with pytest.raises(ValueError, match="max_length: expected an int >= the example's"):
        pipe.warmup("a b c d", max_length=3)
    with pytest.raises(ValueError, match=r"inputs\[1\]: input_ids has \d+ non-pad tokens"):
        pipe(["fine", "word " * 80])  # too long for the model: named before anything runs


def test_generation_tasks_have_no_warmup(tmp_path):
    pipe = conversion.pipeline("summarization", checkpoint(tmp_path, "led", "conditional_generation"),
                               compile_cache=False)
    with pytest.raises(ValueError, match="warmup: 'summarization' compiles its generation loop"):
        pipe.warmup("some text")


def test_compile_cache_directory_setting(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.default_directory() is None
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "x"))
    assert compile_cache.default_directory() == tmp_path / "x"
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_directory() == tmp_path / "jaxzoo" / "xla"
    with pytest.raises(ValueError, match="compile_cache: expected True, False, None or a directory"):
        compile_cache.resolve(3)
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ValueError, match="compile cache: cannot create"):
        compile_cache.enable(blocked / "sub")


WARM_START = """
import json, sys, time
start = time.perf_counter()
import conversion
pipe = conversion.pipeline("text-classification", sys.argv[1], batch_size=2)
out = pipe(json.loads(sys.argv[2]))
print(json.dumps({"out": out, "compiles": pipe.stats.compiles, "hits": pipe.stats.cache_hits,
                  "seconds": time.perf_counter() - start}))
"""


def test_a_second_process_reads_its_programs_from_the_compile_cache(directory, tmp_path):
    env = {**os.environ, compile_cache.ENV: str(tmp_path / "xla"), "PYTHONPATH": str(ROOT)}

    def run():
        done = subprocess.run([sys.executable, "-c", WARM_START, directory, json.dumps(TEXTS)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    assert cold["compiles"] >= 1 and any((tmp_path / "xla").iterdir())
    assert warm["compiles"] == 0 and warm["hits"] >= 1, warm
    assert warm["out"] == cold["out"]


def test_global_slot_counts_share_programs_and_change_nothing(directory):
    """Longformer's number of global slots is static: model(...) rounds it up to a power of two, so 3 and 4 global
    tokens (question lengths, say) run one program; the empty slot changes no output (compared with the exact
    count, which output_attentions keeps, its attentions having one column per slot as transformers')."""
    model = conversion.from_pretrained(directory, progress=False)
    ids = np.array([[0] + list(range(5, 17)) + [2]] * 2, np.int32)
    before = model._forward._cache_size()
    for n in (3, 4):
        gmask = np.zeros_like(ids)
        gmask[0, :n], gmask[1, :2] = 1, 1
        bucketed = model(input_ids=ids, global_attention_mask=gmask).logits
        exact = model(input_ids=ids, global_attention_mask=gmask, output_attentions=True)
        assert exact.global_attentions[0].shape[-1] == n  # the exact count: one column per global slot
        np.testing.assert_allclose(np.asarray(bucketed), np.asarray(exact.logits), atol=1e-6, rtol=0)
    assert model._forward._cache_size() - before == 3  # 4 slots (3 and 4 globals) + the two exact counts
