"""question-answering against transformers 4.57's QuestionAnsweringPipeline (5.x removed it) on the same
directories: 4.57 runs in one subprocess for every family (tests/pipelines/oracle457.py)."""

from __future__ import annotations

import json

import pytest

import conversion
from common.pipelines.question_answering import QuestionAnswering
from conversion.pipeline import load_tokenizer
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result
from tests.pipelines.oracle457 import call, job, result_of, run_457_jobs

FAMILIES = ("longformer", "led", "llama")
Q = "What is returned?"
SHORT = "The value is returned."
LONG = "The value of the module is returned by the call. If the class is defined, the object of its type is made."
WIN = {"max_seq_len": 32, "doc_stride": 8}  # windows with tiny inputs (LED's decoder has 40 positions)
PAIRS = [{"question": Q, "context": LONG}, {"question": "Which class?", "context": SHORT},
         {"question": "What is made?", "context": "It is made."}]
CALLS = {  # name -> one pipeline call, made by both pipelines
    "keywords": call(question=Q, context=SHORT),
    "positional pair": call(Q, SHORT),
    "dict": call({"question": Q, "context": SHORT}),
    "one-element list": call([PAIRS[1]]),
    "batch of lengths, windows": call(PAIRS, **WIN),
    "questions for one context": call(question=[Q, "Which class?"], context=LONG, **WIN),
    "two lists": call(question=[Q, "Which class?"], context=[LONG, SHORT], **WIN),
    "top_k 3": call(question=Q, context=LONG, top_k=3, **WIN),
    "batch top_k 2": call(PAIRS, top_k=2, **WIN),
    "max_answer_len 2": call(question=Q, context=LONG, max_answer_len=2, top_k=5, **WIN),
    "impossible answer": call(question=Q, context=LONG, handle_impossible_answer=True, top_k=2, **WIN),
    "impossible, top 1": call(PAIRS, handle_impossible_answer=True, **WIN),
    "not aligned to words": call(question=Q, context=LONG, align_to_words=False, top_k=5, **WIN),
    "wider windows": call(question=Q, context=LONG, max_seq_len=40, doc_stride=4, top_k=3),
    "max_question_len (slow tokenizers only)": call(question=Q, context=SHORT, max_question_len=2),
}


def ours_for(directory) -> QuestionAnswering:
    model = conversion.from_pretrained(directory)
    return QuestionAnswering(model, load_tokenizer(model, directory), batch_size=4)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (our pipeline, 4.57's outcome of each of CALLS, 4.57's load messages): one 4.57 subprocess."""
    directories = {}
    for family in FAMILIES:
        directory = checkpoint(tmp_path_factory.mktemp(family), family, "question_answering")
        if family == "llama":
            # 4.57 fails on a left-padding tokenizer without a pad token ("'bool' object has no attribute
            # 'numpy'"): give it the pad token Llama checkpoints usually set.
            config_file = directory / "tokenizer_config.json"
            config = json.loads(config_file.read_text())
            config_file.write_text(json.dumps({**config, "pad_token": config["eos_token"]}))
        directories[family] = directory
    outcomes = run_457_jobs([job("question-answering", directories[f], list(CALLS.values())) for f in FAMILIES])
    return {family: (ours_for(directories[family]), dict(zip(CALLS, outcome["results"])), outcome["load_messages"])
            for family, outcome in zip(FAMILIES, outcomes)}


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_equal_transformers_457(setups, family):
    ours, theirs, _ = setups[family]
    for name, c in CALLS.items():
        assert_same_result(ours(*c["args"], **c["kwargs"]), result_of(c, theirs[name]), f"{family} {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_457_reads_our_checkpoints_without_complaint(setups, family):
    """Our tiny checkpoints (config.json by 5.x save_pretrained, tokenizer files as on the Hub) load in 4.57
    with no warning: nothing in them is unknown or ignored there."""
    assert setups[family][2] == ["Device set to use cpu"]


def test_windows_of_one_input_share_batches_with_other_inputs(setups):
    """``each`` runs several inputs' windows in shared padded batches and gives each input's own answer."""
    ours, theirs, _ = setups["longformer"]
    single = [ours(pair, **WIN) for pair in PAIRS]
    assert_same_result(ours.each(PAIRS, **WIN), single, "each")
    assert_same_result(single, result_of(CALLS["batch of lengths, windows"], theirs["batch of lengths, windows"]))


def test_bad_inputs(setups):
    ours = setups["longformer"][0]
    cases = [
        (lambda: ours(context=LONG), r"inputs: question is missing"),
        (lambda: ours(question=Q), r"inputs: context is missing"),
        (lambda: ours([PAIRS[0], {"question": Q}], **WIN),
         r"inputs\[1\]: expected a \{\"question\", \"context\"\} dict, got keys \['question'\]"),
        (lambda: ours({"question": "", "context": LONG}), r"inputs\['question'\]: the question is empty"),
        (lambda: ours([PAIRS[0], {"question": Q, "context": ""}], **WIN),
         r"inputs\[1\]\['context'\]: the context is empty"),
        (lambda: ours([PAIRS[0], {"question": Q, "context": None}], **WIN),
         r"inputs\[1\]\['context'\]: expected a str"),
        (lambda: ours(["a question?"]),
         r"inputs: expected a \{\"question\", \"context\"\} dict or a non-empty list of them, got str"),
        (lambda: ours(question=[Q, Q], context=[LONG]), r"inputs: 2 questions for 1 contexts"),
        (lambda: ours(question=Q, context=LONG, max_seq_len=32, doc_stride=32),
         r"doc_stride: 32 must be smaller than max_seq_len \(32\)"),
        (lambda: ours(question=Q, context=LONG, max_seq_len=32),  # default doc_stride 16 > the 14 tokens left
         r"inputs: the question takes \d+ tokens .* not more than doc_stride=16"),
        (lambda: ours(question=Q, context=LONG * 2), r"inputs: a window of \d+ tokens is longer than the model's "
                                                     r"\d+ positions; pass max_seq_len"),
        (lambda: ours(question=Q, context=LONG, top_k=0), r"top_k: expected an int >= 1, got 0"),
        (lambda: ours(question=Q, context=LONG, max_answer_len=0), r"max_answer_len: expected an int >= 1, got 0"),
        (lambda: ours(question=Q, context=LONG, handle_impossible_answer="yes"),
         r"handle_impossible_answer: expected True or False"),
        (lambda: ours(question=Q, context=LONG, topk=2), r"question-answering: unexpected option \['topk'\]"),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message):
            run()
