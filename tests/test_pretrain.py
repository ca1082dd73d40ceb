"""The main job at toy size: it learns, writes its outputs, exports to transformers, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import transformers

import conversion
from common.tokenization import docs_corpus
from conversion import ARCHITECTURES, save_pretrained
from llama_jax.pretrain import PretrainConfig, run

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


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pretrain")
    cfg = tiny(tmp, "run")
    return cfg, run(cfg, SPEC, save_pretrained, log=lambda *_: None)


def test_job_learns_and_writes_everything(finished):
    cfg, summary = finished
    out = Path(cfg.out)
    assert summary["final_train_loss"] < np.log(400) - 0.5  # well below the uniform guess after 40 steps
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["steps"] == 40
    assert summary["sample"].startswith(cfg.sample_prompt)


def test_export_loads_in_transformers_with_same_logits(finished):
    cfg, _ = finished
    export = Path(cfg.out) / "hf"
    hf = transformers.AutoModelForCausalLM.from_pretrained(export, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(export)
    ours = conversion.from_pretrained(export, progress=False)
    ids = np.array([tok("The with statement")["input_ids"]])
    with torch.no_grad():
        ref = hf(input_ids=torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(input_ids=ids).logits), ref, atol=1e-4)


def test_resume_continues_exactly(tmp_path, finished):
    """Stop at step 20 (a checkpoint), resume to 40: the same loss curve and weights as the uninterrupted run."""
    cfg, summary = finished
    part = tiny(tmp_path, "resumed", steps=40)
    # First half: the same job with its schedule intact, stopped after the step-20 checkpoint.
    import llama_jax.pretrain as job

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
    resumed = run(PretrainConfig(**{**part.__dict__, "resume": True}), SPEC, save_pretrained, log=lambda *_: None)
    first = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert stopped["step"] == 20
    assert resumed["final_train_loss"] == first["final_train_loss"]
    assert resumed["final_eval_loss"] == first["final_eval_loss"]
    a = conversion.from_pretrained(Path(cfg.out) / "hf", progress=False).params
    b = conversion.from_pretrained(Path(part.out) / "hf", progress=False).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
