"""The main job at toy size: it learns, writes its outputs, exports to transformers, resumes exactly, and sizes
itself to a time budget (an explicit step count wins)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers

import conversion
import llama_jax.pretrain as job
from common.checkpoint import Checkpointer
from common.tokenization import docs_corpus
from conversion import ARCHITECTURES, save_pretrained
from llama_jax.pretrain import PretrainConfig, ProbeTimes, plan_steps, run

# Training loops until the model learns: running, not compiling, is their cost.
pytestmark = pytest.mark.optimized

SPEC = ARCHITECTURES["LlamaForCausalLM"].spec


def tiny(tmp_path, name, **overrides) -> PretrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text("\n\n".join(docs_corpus(stdlib_docstrings=False)[:30]))
    kw = dict(out=str(tmp_path / name), corpus=str(corpus), vocab_size=400, hidden_size=64, layers=2, heads=2,
              kv_heads=1, intermediate_size=128, seq_len=32, batch_size=8, steps=40, warmup_steps=5,
              learning_rate=1e-2, eval_every=20, checkpoint_every=20, sample_tokens=8)
    kw.update(overrides)
    return PretrainConfig(**kw)


def checkpointed_steps(cfg: PretrainConfig) -> int:
    """The run's step count as its newest checkpoint records it (what a resume continues to)."""
    with Checkpointer(Path(cfg.out) / "checkpoints") as ckpt:
        latest = ckpt.latest_step()
    return json.loads((Path(cfg.out) / "checkpoints" / str(latest) / "metadata" / "metadata").read_text())["steps"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """40 explicit steps, with a budget that would allow only the minimum: the explicit count must win."""
    tmp = tmp_path_factory.mktemp("pretrain")
    cfg, lines = tiny(tmp, "run", time_budget=0.001), []
    return cfg, run(cfg, SPEC, save_pretrained, log=lines.append), lines


def test_job_learns_and_writes_everything(finished):
    cfg, summary, _ = finished
    out = Path(cfg.out)
    assert summary["final_train_loss"] < np.log(400) - 0.5  # well below the uniform guess after 40 steps
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["sample"].startswith(cfg.sample_prompt)


def test_explicit_steps_win_over_the_budget(finished):
    cfg, summary, lines = finished
    written = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert written["steps"] == summary["steps"] == 40 and written["tokens_seen"] == 40 * 8 * 32
    assert written["budget"] is None and not any(line.startswith("budget") for line in lines)
    assert checkpointed_steps(cfg) == 40


PROBE = ProbeTimes(compile=5.0, step=0.125, eval=1.0, eval_compile=0.5)  # binary fractions: exact arithmetic


def planned_seconds(steps, spent, times, eval_every, reserved):
    return spent + reserved + steps * (times.step + times.eval / eval_every)


def test_plan_steps_fills_the_budget_and_no_more():
    steps, reserved = plan_steps(60.0, 10.0, PROBE, eval_every=8)
    # Reserved: 10% headroom + 4 sampler compiles + the real step's compile + the final evaluation.
    assert reserved == 6.0 + 2.0 + 5.0 + 1.0
    assert steps == 144  # (60 - 10 - 14) s / (0.125 + 1.0 / 8) s per step
    assert planned_seconds(steps, 10.0, PROBE, 8, reserved) <= 60.0 < planned_seconds(steps + 1, 10.0, PROBE, 8,
                                                                                       reserved)
    assert plan_steps(60.0, 10.0, dataclasses.replace(PROBE, step=0.0625), eval_every=8)[0] > steps
    assert plan_steps(120.0, 10.0, PROBE, eval_every=8)[0] > steps
    assert plan_steps(20.0, 10.0, PROBE, eval_every=8)[0] < 1  # the fixed costs alone use it up


def test_budget_decides_steps_from_measured_rate(tmp_path):
    lines = []
    cfg = tiny(tmp_path, "budget", steps=None, time_budget=0.2)
    summary = run(cfg, SPEC, save_pretrained, log=lines.append)
    plan, steps = summary["budget"], summary["steps"]
    pattern = re.compile(r"budget 0\.2 min: measured ([\d.]+) steps/s -> (\d+) steps")
    decision = [m for m in map(pattern.match, lines) if m]
    assert len(decision) == 1 and int(decision[0][2]) == steps
    assert float(decision[0][1]) == round(plan["steps_per_second"], 2)
    # The count is the plan for what the probe measured (or the schedule's minimum where the budget is too small).
    times = ProbeTimes(**{f.name: plan[f"{f.name}_seconds"] for f in dataclasses.fields(ProbeTimes)})
    planned, _ = plan_steps(60 * 0.2, plan["seconds_before_training"], times, cfg.eval_every)
    assert steps == max(planned, cfg.warmup_steps + 1) and plan["minutes"] == 0.2
    assert json.loads((Path(cfg.out) / "summary.json").read_text())["steps"] == steps
    assert checkpointed_steps(cfg) == steps


def test_export_loads_in_transformers_with_same_logits(finished):
    cfg, *_ = finished
    export = Path(cfg.out) / "hf"
    hf = transformers.AutoModelForCausalLM.from_pretrained(export, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(export)
    ours = conversion.from_pretrained(export, progress=False)
    ids = np.array([tok("The with statement")["input_ids"]])
    with torch.no_grad():
        ref = hf(input_ids=torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(input_ids=ids).logits), ref, atol=1e-4)


def test_resume_continues_exactly(tmp_path, finished, monkeypatch):
    """A budgeted run that plans 40 steps, stopped at step 20 (a checkpoint) and resumed: the resume keeps the
    stored count without planning again, and the loss curve and weights equal the explicit 40-step run's (the
    probe's steps leave no trace)."""
    cfg, summary, _ = finished
    part = tiny(tmp_path, "resumed", steps=None, time_budget=0.2)
    monkeypatch.setattr(job, "plan_steps", lambda *args: (40, 1.0))
    # First half: the same job with its schedule intact, stopped after the step-20 checkpoint.
    stopped = {}

    class Stop(Exception):
        pass

    real_save = job.Checkpointer.save

    def save_then_stop(self, step, state, **kw):
        real_save(self, step, state, **kw)
        if step == 20:
            self.wait()
            stopped["step"] = step
            raise Stop

    job.Checkpointer.save = save_then_stop
    try:
        with pytest.raises(Stop):
            run(part, SPEC, save_pretrained, log=lambda *_: None)
    finally:
        job.Checkpointer.save = real_save

    def no_second_plan(*args):
        raise AssertionError("a resume planned its step count again")

    monkeypatch.setattr(job, "plan_steps", no_second_plan)
    resume = PretrainConfig(**{**part.__dict__, "resume": True})
    resumed = run(resume, SPEC, save_pretrained, log=lambda *_: None)
    first = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert stopped["step"] == 20
    assert resumed["steps"] == 40 and resumed["budget"]["minutes"] == 0.2
    assert resumed["final_train_loss"] == first["final_train_loss"]
    assert resumed["final_eval_loss"] == first["final_eval_loss"]
    a = conversion.from_pretrained(Path(cfg.out) / "hf", progress=False).params
    b = conversion.from_pretrained(Path(part.out) / "hf", progress=False).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="steps = 30 differs from the 40 steps"):
        run(PretrainConfig(**{**resume.__dict__, "steps": 30}), SPEC, save_pretrained, log=lambda *_: None)


def test_bad_budget_or_steps_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="time_budget = 0"):
        tiny(tmp_path, "x", time_budget=0)
    with pytest.raises(ValueError, match="steps = 5 is invalid: expected more than warmup_steps = 5"):
        tiny(tmp_path, "x", steps=5)
