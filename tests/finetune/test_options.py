"""The job's options: a mesh gives the single-device run's numbers, bf16 / remat / accumulation train, the command
line reaches the same job, a bad metric name is refused, and the features are cached."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from conversion.cli import main
from conversion.finetune import finetune
from tests.finetune import synthetic as S
from tests.pipelines.checkpoints import checkpoint

SHORT = {"max_steps": 6, "eval_every": 3, "batch_size": 8, "buckets": (32,), "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def ner(tmp_path_factory):
    root = tmp_path_factory.mktemp("ner")
    model = checkpoint(root / "longformer", "longformer", "masked_lm", vocab_size=S.VOCAB_SIZE)
    rng = np.random.default_rng(0)
    return model, S.write_jsonl(root / "train.jsonl", S.ner_rows(rng, 32)), \
        S.write_jsonl(root / "validation.jsonl", S.ner_rows(rng, 8))


@pytest.fixture(scope="module")
def single_device(ner, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    finetune("token-classification", *ner, out, log=lambda *a: None, **SHORT)
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("make", ["jax.make_mesh", "tuple"])
def test_a_mesh_gives_the_single_device_numbers(ner, single_device, tmp_path, make):
    if make == "tuple":
        mesh = (2, 2, 2)
    else:  # JAX's own (Explicit axes by default)
        mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"))
    summary = finetune("token-classification", *ner, tmp_path, log=lambda *a: None, mesh=mesh, **SHORT)
    np.testing.assert_allclose([l for _, l in summary["train_loss"]],
                               [l for _, l in single_device["train_loss"]], rtol=0, atol=2e-5)
    for ours, theirs in zip(summary["evals"], single_device["evals"]):
        assert ours["step"] == theirs["step"] and abs(ours["accuracy"] - theirs["accuracy"]) <= 1e-9


@pytest.mark.parametrize("options", [{"compute_dtype": "bfloat16"}, {"remat": "full"}, {"accumulate_steps": 2},
                                     {"warmup_ratio": 0.5, "weight_decay": 0.01}])
def test_training_options_train(ner, tmp_path, options):
    summary = finetune("token-classification", *ner, tmp_path, log=lambda *a: None, **{**SHORT, **options})
    losses = [l for _, l in summary["train_loss"]]
    assert len(losses) == SHORT["max_steps"] and np.isfinite(losses).all()
    assert summary["options"] == {**summary["options"], **options}


def test_the_command_line_runs_the_same_job(ner, single_device, tmp_path, capsys):
    model, train, validation = ner
    code = main(["finetune", "token-classification", "--model", str(model), "--train", train, "--validation",
                 validation, "--out", str(tmp_path), "--max-steps", "6", "--eval-every", "3", "--batch-size", "8",
                 "--buckets", "32", "--learning-rate", "1e-3"])
    assert code == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["evals"] == single_device["evals"] and summary["train_loss"] == single_device["train_loss"]
    assert (tmp_path / "curves.png").stat().st_size > 0
    with pytest.raises(SystemExit) as bad_flag:  # argparse's exit, with our words
        main(["finetune", "token-classification", "--model", str(model), "--train", train, "--validation",
              validation, "--out", str(tmp_path / "x"), "--column", "words"])
    assert bad_flag.value.code == 2
    assert "expected ROLE=COLUMN (e.g. text=review), got 'words'" in capsys.readouterr().err
    assert main(["finetune", "summarization", "--model", str(model), "--train", train, "--validation", validation,
                 "--out", str(tmp_path / "y")]) == 2
    assert "task 'summarization' trains led models, not longformer" in capsys.readouterr().err


def test_bad_metric_cached_features_and_a_used_out(ner, tmp_path):
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'"):
        finetune("token-classification", *ner, tmp_path, log=lambda *a: None, metric="bleu", **SHORT)
    assert not (tmp_path / "cache").exists()  # refused before any work
    finetune("token-classification", *ner, tmp_path / "a", log=lambda *a: None, stop_after=3, **SHORT)
    cached = sorted((tmp_path / "a" / "cache").glob("features-*.pkl"))
    assert len(cached) == 2  # train and validation
    stamp = [p.stat().st_mtime_ns for p in cached]
    finetune("token-classification", *ner, tmp_path / "a", log=lambda *a: None, resume=True, **SHORT)
    assert [p.stat().st_mtime_ns for p in cached] == stamp  # read back, not written again
    with pytest.raises(ValueError, match=r"holds the checkpoints of a run \(steps \[3, 6\]\): pass resume=True"):
        finetune("token-classification", *ner, tmp_path / "a", log=lambda *a: None, **SHORT)


def test_as_many_labels_as_padded_tokens(tmp_path):
    """Eight classes and rows padded to eight tokens: the [batch, 8] logits are one score per class, not per
    token (evaluation must not confuse the two)."""
    from common.finetune.task import Evaluator
    from conversion.finetune import prepare

    model = checkpoint(tmp_path / "xlm", "xlm", "with_lm_head", vocab_size=S.VOCAB_SIZE, summary_type="first")
    rng = np.random.default_rng(0)
    names = [f"class_{k}" for k in range(8)]
    rows = [{"text": " ".join(rng.choice(S.FILLER, 3)), "label": names[k % 8]} for k in range(12)]
    train = S.write_jsonl(tmp_path / "train.jsonl", rows)
    runner, loaded, data, *_ = prepare("text-classification", model, train, train, tmp_path / "out", buckets=(8,),
                                       max_seq_length=8)
    features = runner.features(data.rows["train"], data.sources["train"])
    assert max(len(f["input_ids"]) for f in features) < 8  # each row shorter than the padded length
    logits = Evaluator(loaded, runner.fields, 8, {"input": 8}, (8,)).outputs(features)
    for f, row in zip(features, logits):
        assert row.shape == (8,)
        one = loaded(input_ids=f["input_ids"][None], attention_mask=f["attention_mask"][None]).logits[0]
        np.testing.assert_allclose(row, np.asarray(one), atol=1e-5)
