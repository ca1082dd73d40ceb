"""`jaxzoo finetune` killed with SIGKILL mid-run and started again with --resume ends exactly as an uninterrupted run.

Three processes of the command line: one uninterrupted; one killed (kill -9) as soon as its first checkpoint is on
disk, while it trains on; and that one's --resume. The resumed run's metrics.json equals the uninterrupted one's:
every evaluation, the best checkpoint, the train loss of every step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.finetune import synthetic as S
from tests.pipelines.checkpoints import checkpoint

STEPS, EVAL_EVERY = 120, 30


def command(model: Path, train: str, validation: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "conversion.cli", "finetune", "causal-lm", "--model", str(model), "--train", train,
            "--validation", validation, "--out", str(out), "--max-steps", str(STEPS), "--eval-every", str(EVAL_EVERY),
            "--batch-size", "4", "--max-seq-length", "16", "--learning-rate", "1e-3", *extra]


def complete_steps(out: Path) -> list[int]:
    directory = out / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    model = checkpoint(root / "llama", "llama", "causal_lm", initializer_range=0.02)
    rng = np.random.default_rng(0)
    train = S.write_jsonl(root / "train.jsonl", S.cycle_rows(rng, 80))
    validation = S.write_jsonl(root / "validation.jsonl", S.cycle_rows(rng, 16))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return root, model, train, validation, env


def test_kill_9_then_resume_equals_an_uninterrupted_run(job):
    root, model, train, validation, env = job
    whole = subprocess.run(command(model, train, validation, root / "whole"), env=env, capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = root / "killed"
    proc = subprocess.Popen(command(model, train, validation, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not complete_steps(killed) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before its first checkpoint could be killed"
    assert not (killed / "metrics.json").exists() and complete_steps(killed)[-1] < STEPS

    resumed = subprocess.run(command(model, train, validation, killed, "--resume"), env=env, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr + resumed.stdout
    a, b = (json.loads((out / "metrics.json").read_text()) for out in (root / "whole", killed))
    for key in ("best", "evals", "train_loss", "steps"):
        assert a[key] == b[key], f"{key} differs after kill -9 and --resume"
    assert (killed / "model" / "config.json").exists() and (killed / "curves.png").exists()
