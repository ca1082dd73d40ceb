"""Every fine-tuning task learns its synthetic data set, and a run stopped half way and resumed ends exactly as an
uninterrupted one.

Each case fine-tunes a tiny random checkpoint (transformers' usual 0.02 init) on data that only the task's signal
explains (tests/finetune/synthetic.py says what a model must use and what chance scores); the bar is the
validation metric of the best checkpoint, stated beside the chance level. A short run of the same job is cut after
a checkpoint (``stop_after``, a run ended by a time limit) and resumed; its metrics must equal the uninterrupted
short run's: every evaluation, the best checkpoint, the test scores and the train loss of every step
(tests/finetune/test_kill.py does the same after a kill -9).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import numpy as np
import pytest
import transformers

from conversion.finetune import finetune
from tests.finetune import synthetic as S
from tests.pipelines.checkpoints import checkpoint

# Training loops: running, not compiling, is their cost.
pytestmark = pytest.mark.optimized

# transformers' own init scale (the parity checkpoints use 0.2 so that outputs are O(1); a model learns from
# 0.02), and for Longformer and LED twice the family tests' width (their 32 wide, 37 / 29 MLP learn the
# detection tasks too slowly for a test). XLM reads its first position for a sequence's class, as the Hub's XLM
# checkpoints do.
LEARNING_CONFIG = {"longformer": {"initializer_range": 0.02, "hidden_size": 64, "intermediate_size": 128},
                   "lilt": {"initializer_range": 0.02}, "llama": {"initializer_range": 0.02},
                   "led": {"init_std": 0.02, "d_model": 64, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128},
                   "xlm": {"init_std": 0.02, "embed_init_std": 0.02, "summary_type": "first"}}


@dataclasses.dataclass(frozen=True)
class Case:
    task: str
    family: str
    head: str  # the head the checkpoint holds (the job starts the task's head where it differs)
    rows: Callable  # (rng, n) -> rows
    bar: float  # the best validation metric must reach this
    chance: float  # what chance (or the best rule without the signal) scores on the metric
    options: dict = dataclasses.field(default_factory=dict)
    n_train: int = 160
    n_validation: int = 40


COMMON = {"batch_size": 8, "buckets": (32,), "seed": 0}
CASES = {
    "text-classification": Case("text-classification", "longformer", "masked_lm", S.sentiment_rows, 0.9, 0.5,
                                {"epochs": 6, "learning_rate": 5e-3}),
    "text-classification-multi-label": Case("text-classification", "llama", "causal_lm", S.topics_rows, 0.9, 0.67,
                                            {"epochs": 8, "learning_rate": 3e-3}),
    "token-classification": Case("token-classification", "longformer", "masked_lm", S.ner_rows, 0.9, 0.0,
                                 {"epochs": 3, "learning_rate": 5e-3}),
    "question-answering": Case("question-answering", "longformer", "masked_lm",
                               lambda r, n: S.squad_rows(r, n, unanswerable=0.25), 0.9, 0.1,
                               {"epochs": 6, "learning_rate": 5e-3}),
    "summarization": Case("summarization", "led", "conditional_generation", S.summary_rows, 0.9, 0.5,
                          {"epochs": 12, "learning_rate": 2e-3, "max_target_length": 8}),
    "multiple-choice": Case("multiple-choice", "xlm", "with_lm_head", S.swag_rows, 0.9, 0.25,
                            {"epochs": 12, "learning_rate": 5e-3}),
    "masked-lm": Case("masked-lm", "longformer", "masked_lm", S.cycle_rows, 2.0, 10.0,
                      {"epochs": 20, "learning_rate": 2e-3, "max_seq_length": 32}),
    "causal-lm": Case("causal-lm", "llama", "causal_lm", S.cycle_rows, 1.5, 10.0,
                      {"epochs": 15, "learning_rate": 3e-3, "max_seq_length": 32}),
    "document-token-classification": Case("document-token-classification", "lilt", "model", S.form_rows, 0.9, 0.34,
                                          {"epochs": 12, "learning_rate": 5e-3}),
}
LOWER_IS_BETTER = ("masked-lm", "causal-lm")  # perplexity


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """name -> (checkpoint directory, train file, validation file, test file), made once per case."""
    made, checkpoints = {}, {}

    def get(name: str):
        if name not in made:
            case = CASES[name]
            key = (case.family, case.head)
            if key not in checkpoints:
                checkpoints[key] = checkpoint(tmp_path_factory.mktemp(f"{case.family}-{case.head}"), case.family,
                                              case.head, vocab_size=S.VOCAB_SIZE, **LEARNING_CONFIG[case.family])
            root = tmp_path_factory.mktemp(name)
            rng = np.random.default_rng(0)
            files = [S.write_jsonl(root / f"{split}.jsonl", case.rows(rng, n))
                     for split, n in (("train", case.n_train), ("validation", case.n_validation), ("test", 24))]
            made[name] = (checkpoints[key], *files)
        return made[name]

    return get


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """name -> the uninterrupted run's metrics.json (run once per case)."""
    done = {}

    def get(name: str) -> dict:
        if name not in done:
            case = CASES[name]
            model, train, validation, test = data(name)
            out = tmp_path_factory.mktemp(f"{name}-run")
            finetune(case.task, model, train, validation, out, test, log=lambda *a: None, **COMMON, **case.options)
            done[name] = json.loads((out / "metrics.json").read_text())
        return done[name]

    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_task_learns(name, runs):
    case, summary = CASES[name], runs(name)
    value = summary["best"][summary["metric"]]
    if name in LOWER_IS_BETTER:
        assert value <= case.bar < case.chance, f"{name}: {summary['metric']} {value:.3f} (unigram {case.chance})"
    else:
        assert value >= case.bar > case.chance, f"{name}: {summary['metric']} {value:.3f} (chance {case.chance})"
    assert summary["test"] is not None and np.isfinite(summary["test"][summary["metric"]])
    assert summary["train_programs"] <= 2  # one bucketed length (+ a second global-slot count at most)


# What a resume restores (optimizer state, the step, and batches, dropout and masking as functions of the step) is
# the same for every task; these cases cover a classification, step-dependent masking and windowed features.
# (The CLI's kill -9 resume, tests/finetune/test_kill.py, runs causal-lm.)
RESUMED = ("text-classification", "masked-lm", "question-answering")


@pytest.mark.parametrize("name", RESUMED)
def test_a_stopped_and_resumed_run_ends_as_an_uninterrupted_one(name, data, tmp_path):
    """Six steps with an evaluation every three, uninterrupted; then the same stopped after step 4 (between two
    evaluations: the stop checkpoints there, and the resumed run evaluates at 6 as the uninterrupted one) and
    resumed."""
    case = CASES[name]
    model, train, validation, test = data(name)
    options = {**COMMON, **case.options, "max_steps": 6, "eval_every": 3}
    whole = finetune(case.task, model, train, validation, tmp_path / "whole", test, log=lambda *a: None, **options)
    first = finetune(case.task, model, train, validation, tmp_path / "cut", test, log=lambda *a: None,
                     stop_after=4, **options)
    assert first == {"stopped_after": 4, "steps": 6}
    assert not (tmp_path / "cut" / "metrics.json").exists()
    resumed = finetune(case.task, model, train, validation, tmp_path / "cut", test, log=lambda *a: None, resume=True,
                       **options)
    assert [e["step"] for e in whole["evals"]] == [3, 6]
    for key in ("best", "evals", "test", "train_loss", "steps"):
        assert resumed[key] == whole[key], f"{name}: {key} differs after the resume"


def test_the_export_loads_in_transformers_and_serves_a_pipeline(data, runs):
    """The best token-classification checkpoint: transformers' class reads it with the label names, gives our
    logits, and conversion.pipeline serves it."""
    from conversion.api import from_pretrained
    from conversion.pipeline import pipeline

    summary = runs("token-classification")
    export = summary["export"]
    hf = transformers.AutoModelForTokenClassification.from_pretrained(export).eval()
    assert sorted(hf.config.id2label.values()) == ["B-LOC", "B-PER", "O"]
    ours = from_pretrained(export)
    ids = np.array([[0, 50, 60, 70, 2]], np.int32)
    import torch

    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(ids).long()).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours(input_ids=ids).logits), theirs, atol=1e-5)
    pipe = pipeline("token-classification", export)
    entities = pipe("alice went to paris")
    assert {e["entity"] for e in entities} <= {"B-LOC", "B-PER", "O"}
