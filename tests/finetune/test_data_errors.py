"""Bad data stops a fine-tuning job before it trains, with an error naming the file, the row and the field."""

from __future__ import annotations

import json

import pytest

from common.finetune.data import DataError, read_rows
from common.finetune.task import TaskOptions
from common.finetune.tasks import TASKS
from conversion.finetune import prepare
from tests.finetune import synthetic as S
from tests.pipelines.checkpoints import checkpoint


@pytest.fixture(scope="module")
def longformer(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("longformer"), "longformer", "masked_lm")


@pytest.fixture(scope="module")
def lilt(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("lilt"), "lilt", "model")


def jsonl(tmp_path, name: str, rows: list[dict]) -> str:
    return S.write_jsonl(tmp_path / name, rows)


def test_file_kinds(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match=r"empty\.jsonl: the file is empty"):
        read_rows(tmp_path / "empty.jsonl")
    (tmp_path / "data.txt").write_text("hello\n")
    with pytest.raises(DataError, match=r"data\.txt: unknown file type '\.txt'"):
        read_rows(tmp_path / "data.txt")
    with pytest.raises(DataError, match="no such file"):
        read_rows(tmp_path / "missing.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl: line 2 is not JSON \(Expecting value at column \d+\)"):
        read_rows(tmp_path / "broken.jsonl")
    (tmp_path / "list.jsonl").write_text('{"text": "a"}\n\n[1, 2]\n')
    with pytest.raises(DataError, match=r"list\.jsonl: line 3 is list, expected a JSON object"):
        read_rows(tmp_path / "list.jsonl")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: could not read it as parquet"):
        read_rows(tmp_path / "bad.parquet")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match=r"header\.csv: the file has no rows"):
        read_rows(tmp_path / "header.csv")


def test_csv_and_parquet_read_like_jsonl(tmp_path):
    rows = S.sentiment_rows(__import__("numpy").random.default_rng(0), 5)
    (tmp_path / "data.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    assert read_rows(tmp_path / "data.csv") == rows
    pyarrow = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pyarrow.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    assert read_rows(tmp_path / "data.parquet") == rows


def test_missing_column_lists_the_columns(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", [{"review": "good", "stars": "positive"}] * 4)
    with pytest.raises(DataError, match=r"train\.jsonl: no text column \('text' or 'sentence' or 'sentence1'\); the "
                                        r"file has columns \['review', 'stars'\]; name the column with --column"):
        prepare("text-classification", longformer, train, train, tmp_path / "out")


def test_renamed_columns_are_used(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", [{"review": "good food", "stars": "positive"},
                                            {"review": "bad food", "stars": "negative"}])
    runner, *_ = prepare("text-classification", longformer, train, train, tmp_path / "out",
                         columns=(("text", "review"), ("label", "stars")))
    assert runner.labels == ["negative", "positive"]
    with pytest.raises(ValueError, match=r"columns: task 'text-classification' has no column role \['review'\]"):
        TASKS["text-classification"](TaskOptions(columns=(("review", "x"),)), None, "longformer")


def test_label_outside_the_training_labels(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", [{"text": "good", "label": "positive"},
                                            {"text": "bad", "label": "negative"}])
    validation = jsonl(tmp_path, "dev.jsonl", [{"text": "so so", "label": "positive"},
                                               {"text": "meh", "label": "mixed"}])
    runner, _, data, *_ = prepare("text-classification", longformer, train, validation, tmp_path / "out")
    with pytest.raises(DataError, match=r"dev\.jsonl: row 2, field 'label': label 'mixed' is not in the label set "
                                        r"\['negative', 'positive'\]"):
        runner.features(data.rows["validation"], data.sources["validation"])


def test_token_tags_per_word_and_names(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", [{"tokens": ["alice", "went"], "ner_tags": ["B-PER", "O"]},
                                            {"tokens": ["bob"], "ner_tags": ["B-PER", "O"]}])
    runner, _, data, *_ = prepare("token-classification", longformer, train, train, tmp_path / "out")
    with pytest.raises(DataError, match=r"train\.jsonl: row 2, field 'ner_tags': expected one tag per word \(1\), "
                                        r"got 2"):
        runner.features(data.rows["train"], data.sources["train"])
    ints = jsonl(tmp_path, "ints.jsonl", [{"tokens": ["alice", "went"], "ner_tags": [1, 0]}])
    with pytest.raises(DataError, match=r"ints\.jsonl: column 'ner_tags' holds int tags; name them with --label-names"):
        prepare("token-classification", longformer, ints, ints, tmp_path / "out2")
    named, *_ = prepare("token-classification", longformer, ints, ints, tmp_path / "out3", label_names=("O", "B-PER"))
    assert named.labels == ["O", "B-PER"]
    with pytest.raises(DataError, match=r"has the label 1, but --label-names names only 1 labels"):
        prepare("token-classification", longformer, ints, ints, tmp_path / "out4", label_names=("O",))


def test_answer_not_in_its_context(tmp_path, longformer):
    rows = S.squad_rows(__import__("numpy").random.default_rng(0), 3)
    rows[1]["answers"]["answer_start"] = [rows[1]["answers"]["answer_start"][0] + 1]
    train = jsonl(tmp_path, "train.jsonl", rows)
    runner, _, data, *_ = prepare("question-answering", longformer, train, train, tmp_path / "out")
    with pytest.raises(DataError, match=r"train\.jsonl: row 2, field 'answers': answer 0 '\w+' does not start at "
                                        r"character \d+ of the context \(the text is at \d+\)"):
        runner.features(data.rows["train"], data.sources["train"])
    rows[1]["answers"] = {"text": ["purple"], "answer_start": [0]}
    train = jsonl(tmp_path, "train2.jsonl", rows)
    runner, _, data, *_ = prepare("question-answering", longformer, train, train, tmp_path / "out2")
    with pytest.raises(DataError, match=r"answer 0 'purple' does not start at character 0 of the context \(the text "
                                        r"is not in the context\)"):
        runner.features(data.rows["train"], data.sources["train"])


@pytest.mark.parametrize("box, why", [([0, 0, 1001, 10], "1001"), ([-1, 0, 5, 5], "-1"), ([10, 0, 5, 5], "x0 > x1"),
                                      ([0, 0, 5], "three numbers")])
def test_boxes_outside_the_page(tmp_path, lilt, box, why):
    rows = S.form_rows(__import__("numpy").random.default_rng(0), 3)
    rows[2]["bboxes"][1] = box
    train = jsonl(tmp_path, "train.jsonl", rows)
    runner, _, data, *_ = prepare("document-token-classification", lilt, train, train, tmp_path / "out")
    with pytest.raises(DataError, match=r"train\.jsonl: row 3, field 'bboxes'\[1\]: expected \[x0, y0, x1, y1\], ints "
                                        r"in 0\.\.1000"):
        runner.features(data.rows["train"], data.sources["train"])


def test_task_and_options_are_checked(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", S.sentiment_rows(__import__("numpy").random.default_rng(0), 4))
    with pytest.raises(ValueError, match=r"task 'translation' is not one of"):
        prepare("translation", longformer, train, train, tmp_path / "out")
    with pytest.raises(ValueError, match=r"task 'summarization' trains led models, not longformer"):
        prepare("summarization", longformer, train, train, tmp_path / "out")
    with pytest.raises(ValueError, match=r"finetune: unexpected options \['epoch'\]"):
        prepare("text-classification", longformer, train, train, tmp_path / "out", epoch=3)
    with pytest.raises(ValueError, match=r"mlm_probability = 1.5 is invalid"):
        prepare("masked-lm", longformer, train, train, tmp_path / "out", mlm_probability=1.5)
    with pytest.raises(ValueError, match=r"max_seq_length = 4096 is more than the 62 tokens"):
        runner, _, data, *_ = prepare("text-classification", longformer, train, train, tmp_path / "out",
                                      max_seq_length=4096)
        runner.features(data.rows["train"], data.sources["train"])


def test_mixed_label_kinds(tmp_path, longformer):
    train = jsonl(tmp_path, "train.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": "x"}])
    with pytest.raises(DataError, match=r"column 'label' mixes label kinds"):
        prepare("text-classification", longformer, train, train, tmp_path / "out")
    (tmp_path / "nolabel.jsonl").write_text(json.dumps({"text": "a", "label": 1}) + "\n"
                                            + json.dumps({"text": "b"}) + "\n")
    with pytest.raises(DataError, match=r"column 'label' mixes label kinds \(e\.g\. None\)"):
        prepare("text-classification", longformer, str(tmp_path / "nolabel.jsonl"), train, tmp_path / "out")
