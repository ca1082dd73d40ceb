"""``jaxzoo pipeline`` jobs lose nothing: killed with SIGKILL at random points of a 2,000-line job five times and
rerun, the output ends equal to an uninterrupted run's, every input once, in input order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.pipelines.jsonl import run_jsonl
from conversion.pipeline import pipeline
from tests.pipelines.checkpoints import checkpoint, corpus, labelled
from tests.pipelines.oracle import assert_same_result

ROOT = Path(__file__).resolve().parents[2]
LINES, CHUNK, KILLS = 2000, 64, 5


def job_inputs(n: int) -> list:
    """Texts of 1..3 corpus lines, every tenth a text pair."""
    pool, rng = corpus(), np.random.default_rng(0)
    items = []
    for i in range(n):
        at, k = int(rng.integers(0, len(pool) - 3)), int(rng.integers(1, 4))
        text = " ".join(pool[at:at + k])[:150]
        items.append({"text": text, "text_pair": pool[at + 3][:60]} if i % 10 == 0 else text)
    return items


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_a_job_killed_five_times_ends_as_an_uninterrupted_run(tmp_path):
    directory = checkpoint(tmp_path / "model", "longformer", "sequence_classification", max_position_embeddings=258,
                           **labelled(3))  # room for 256 tokens: the longest line and its pair
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in job_inputs(LINES)))
    reference = tmp_path / "reference.jsonl"
    run_jsonl(pipeline("text-classification", directory, compile_cache=False), src, reference, chunk=CHUNK)

    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "conversion.cli", "pipeline", "text-classification", "--model", str(directory),
           "--input", str(src), "--output", str(out), "--chunk", str(CHUNK), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAXZOO_COMPILE_CACHE": str(tmp_path / "xla")}
    rng = np.random.default_rng(1)
    targets = sorted(int(t) for t in rng.integers(1, LINES - CHUNK, KILLS))
    killed_at = []
    for target in targets:  # each run is killed once the output holds `target` lines (mid-chunk writes too)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 240
        while lines_in(out) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"the job ended before line {target}: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        killed_at.append(out.stat().st_size)
    assert len(set(killed_at)) > 1  # the kills landed at different points of the job
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ours = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [json.loads(line) for line in reference.read_text().splitlines()]
    assert len(ours) == LINES
    # equal up to float32 rounding: a resumed chunk batches its lines with different neighbours
    assert_same_result(ours, expected)
