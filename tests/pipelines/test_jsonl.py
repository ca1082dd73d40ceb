"""``jaxzoo pipeline``: JSON Lines in, one result per line out, each exactly ``pipe(input)``; resumable; bad lines
named by file and line."""

from __future__ import annotations

import json

import pytest

import conversion
from conversion.cli import main, task_options
from tests.pipelines.checkpoints import checkpoint, labelled
from tests.pipelines.oracle import assert_same_result

LINES = ["The <mask> of it", "A <mask> returns <mask>.", "<mask>", "What the <mask> is made of", "x <mask> y"]


@pytest.fixture(scope="module")
def directory(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("jsonl"), "longformer", "masked_lm")


def write_lines(path, items):
    path.write_text("".join(json.dumps(x) + "\n" for x in items))


def test_each_line_is_the_result_of_its_input_and_a_stop_resumes(directory, tmp_path, capsys):
    pipe = conversion.pipeline("fill-mask", directory)
    expected = [json.loads(json.dumps(pipe(x, top_k=2))) for x in LINES]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(src, LINES)
    args = ["pipeline", "fill-mask", "--model", str(directory), "--input", str(src), "--output", str(dst),
            "--chunk", "2", "--top-k", "2"]
    assert main(args) == 0
    assert_same_result([json.loads(line) for line in dst.read_text().splitlines()], expected)
    first = dst.read_text()
    # A stop after two lines, the third cut short: the rerun keeps the two, redoes the third, adds the rest.
    lines = dst.read_text().splitlines(keepends=True)
    dst.write_text("".join(lines[:2]) + lines[2][:7])
    assert main(args) == 0
    assert dst.read_text() == first
    assert "3 results written" in capsys.readouterr().err


def test_text_pairs_and_stdout(tmp_path, capsys, monkeypatch):
    directory = checkpoint(tmp_path / "cls", "xlm", "sequence_classification", **labelled(3))
    items = ["a text", {"text": "a question", "text_pair": "an answer"}]
    src = tmp_path / "in.jsonl"
    write_lines(src, items)
    assert main(["pipeline", "text-classification", "--model", str(directory), "--input", str(src),
                 "--top-k", "null"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pipe = conversion.pipeline("text-classification", directory)
    # (equal up to float32 rounding: the file's two inputs share a batch, the single calls do not)
    assert_same_result(out, [json.loads(json.dumps(pipe(x, top_k=None))) for x in items])


def test_bad_lines_are_named(directory, tmp_path, capsys):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('"The <mask> is"\n\n{"text": broken\n')
    assert main(["pipeline", "fill-mask", "--model", str(directory), "--input", str(src), "--output", str(dst)]) == 2
    assert f"error: {src} line 3: not JSON" in capsys.readouterr().err
    write_lines(src, ["The <mask> is", "no mask"])
    assert main(["pipeline", "fill-mask", "--model", str(directory), "--input", str(src), "--output", str(dst)]) == 2
    assert f"error: {src} line 2: no mask token '<mask>' in the text" in capsys.readouterr().err
    assert dst.read_text() == ""  # nothing of the failed chunk is written


def test_task_options_read_json_values():
    assert task_options(["--top-k", "3", "--targets", '["a", "b"]', "--function-to-apply=none"]) == \
        {"top_k": 3, "targets": ["a", "b"], "function_to_apply": "none"}
    with pytest.raises(ValueError, match="task arguments: --top-k has no value"):
        task_options(["--top-k"])
    with pytest.raises(ValueError, match="task arguments: expected --name value, got 'x'"):
        task_options(["x"])


def test_bad_lines_recorded_in_their_place(directory, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    items = ["The <mask> is", "no mask", "A <mask> returns <mask>.", "", 7, "x <mask> y"]
    src.write_text("".join(json.dumps(x) + "\n" for x in items))
    assert main(["pipeline", "fill-mask", "--model", str(directory), "--input", str(src), "--output", str(dst),
                 "--on-error", "record", "--chunk", "4", "--no-progress"]) == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(out) == len(items)
    assert out[1] == {"error": "no mask token '<mask>' in the text", "line": 2}
    assert out[3] == {"error": "the text is empty", "line": 4}
    assert out[4]["line"] == 5 and out[4]["error"].startswith("expected a str")
    pipe = conversion.pipeline("fill-mask", directory)
    for i in (0, 2, 5):
        assert_same_result(out[i], json.loads(json.dumps(pipe(items[i]))))
    # an error that names no line (a bad option) stops the job in either mode
    assert main(["pipeline", "fill-mask", "--model", str(directory), "--input", str(src), "--output",
                 str(tmp_path / "o2.jsonl"), "--on-error", "record", "--top-k", "0"]) == 2


def test_a_text_generation_line_carries_its_own_max_new_tokens(tmp_path):
    """A {"text", "max_new_tokens"} line gets its own max (a plain prompt line the job's), as pipe(line)."""
    from common.pipelines.jsonl import run_jsonl

    pipe = conversion.pipeline("text-generation", checkpoint(tmp_path / "llama", "llama", "causal_lm"))
    items = ["The", {"text": "A list of", "max_new_tokens": 1}, {"text": "If the", "max_new_tokens": 5}]
    options = {"max_new_tokens": 3, "do_sample": False, "eos_token_id": None, "return_tensors": True}
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_lines(src, items)
    assert run_jsonl(pipe, src, dst, chunk=3, options=options) == 3
    got = [json.loads(line) for line in dst.read_text().splitlines()]
    assert got == [json.loads(json.dumps(pipe(x, **options))) for x in items]
    new = [len(r[0]["generated_token_ids"]) - len(pipe.tokenizer(t)["input_ids"][0])
           for r, t in zip(got, ["The", "A list of", "If the"])]
    assert new == [3, 1, 5]
