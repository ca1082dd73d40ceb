"""question-answering on XLM (a tokenizer without offsets: transformers 4.57's SQuAD-features path) against 4.57 on
the call matrix of test_question_answering.py.

4.57's slow path fails with a KeyError whenever one of its candidate spans starts or ends on the window's cls
token, XLM's ``</s>`` separator (it keeps that token's probability but has no word for it). So, per call: where
4.57 answers, ours equals its answer; where it raises that KeyError, ours equals the best legal spans computed here
from 4.57's own features and its model's logits (this brute force also equals 4.57 wherever 4.57 answers). The beam
head (XLMForQuestionAnswering, which 4.57's pipeline cannot serve) equals the best legal beam spans computed here
from transformers' XLMForQuestionAnswering outputs on 4.57's features.

The checkpoints have 512 positions, as real XLM ones (and the tokenizer's model_max_length): 4.57 pads every
window to max_seq_len = min(model_max_length, 384), beyond the tiny default's 64 positions.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import transformers

import conversion
from common.pipelines.question_answering import QuestionAnswering
from conversion.pipeline import load_tokenizer
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result
from tests.pipelines.oracle457 import Oracle457Error, install
from tests.pipelines.test_question_answering import CALLS, LONG, PAIRS, Q, SHORT, WIN

POSITIONS = {"max_position_embeddings": 512}
MARKER = "\n@@FEATURES457@@\n"
# In 4.57's subprocess: per job {"directory", "calls", "forward"}, the pipeline's load messages and model class, and
# per call its outcome and, per example, the features its preprocess makes (+ its model's logits on them).
_SCRIPT = r"""
import io, json, logging, sys, warnings
import torch, transformers

def features(pipe, example, params, forward):
    out = []
    for f in pipe.preprocess(example, **params):
        item = {k: f[k][0].tolist() for k in ("input_ids", "attention_mask", "token_type_ids", "p_mask")}
        item.update(cls_index=int(f["cls_index"]),
                    token_to_orig_map=[[int(k), int(v)] for k, v in f["token_to_orig_map"].items()])
        if forward:
            with torch.no_grad():
                logits = pipe._forward(f)
            item.update(start_logits=logits["start"][0].tolist(), end_logits=logits["end"][0].tolist())
        out.append(item)
    return out

def run(job):
    torch.manual_seed(0)
    log = io.StringIO()
    transformers.utils.logging.get_logger("transformers").addHandler(logging.StreamHandler(log))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = transformers.pipeline("question-answering", model=job["directory"], device="cpu")
    calls = []
    for c in job["calls"]:
        examples = pipe._args_parser(*c["args"], **c["kwargs"])
        params = pipe._sanitize_parameters(**c["kwargs"])[0]
        record = {"examples": [{"question": e.question_text, "context": e.context_text, "words": e.doc_tokens,
                                "char_to_word": e.char_to_word_offset,
                                "features": features(pipe, e, params, job["forward"])} for e in examples]}
        try:
            record["result"] = pipe(*c["args"], **c["kwargs"])
        except Exception as e:
            record["error"] = f"{type(e).__name__}: {e}"
        calls.append(record)
    messages = [line for line in log.getvalue().splitlines() if line.strip()] + [str(w.message) for w in caught]
    return {"model": type(pipe.model).__name__, "load_messages": messages, "calls": calls}

request = json.load(sys.stdin)
sys.stdout.write("\n@@FEATURES457@@\n" + json.dumps([run(job) for job in request]))
"""


def run_features_457(jobs: list[dict]) -> list[dict]:
    """``_SCRIPT`` under transformers 4.57 (installed as oracle457 does), one subprocess for every job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFORMERS_", "HF_", "PYTHON"))}
    env.update(PYTHONPATH=str(install()), HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-c", _SCRIPT], input=json.dumps(jobs), capture_output=True, text=True,
                          env=env, timeout=600)
    if done.returncode != 0 or MARKER not in done.stdout:
        raise Oracle457Error(f"transformers 4.57's SQuAD features failed (exit {done.returncode}):\n"
                             f"{done.stderr[-4000:]}")
    return json.loads(done.stdout.rsplit(MARKER, 1)[1])


def ours_for(directory) -> QuestionAnswering:
    model = conversion.from_pretrained(directory)
    return QuestionAnswering(model, load_tokenizer(model, directory), batch_size=2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Our two pipelines, 4.57's runs (simple: answers, features and logits; beam: its load and features) and
    transformers' beam-head model."""
    simple = checkpoint(tmp_path_factory.mktemp("simple"), "xlm", "question_answering_simple", **POSITIONS)
    beam = checkpoint(tmp_path_factory.mktemp("beam"), "xlm", "question_answering", num_labels=2, **POSITIONS)
    calls = list(CALLS.values())
    theirs_simple, theirs_beam = run_features_457([{"directory": str(simple), "calls": calls, "forward": True},
                                                   {"directory": str(beam), "calls": calls, "forward": False}])
    beam_model = transformers.XLMForQuestionAnswering.from_pretrained(beam).eval()
    return {"simple": (ours_for(simple), theirs_simple), "beam": (ours_for(beam), theirs_beam),
            "beam_model": beam_model}


# ------------------------------------------------------------------------ the oracle computed here
def softmax_over(logits, allowed) -> np.ndarray:
    x = np.where(allowed, np.asarray(logits, np.float32), -np.inf).astype(np.float32)
    x = np.exp(x - x[allowed].max())
    return x / x.sum()


def window_spans(feature: dict) -> tuple[dict, np.ndarray]:
    """token -> word of the window's context tokens, and where an answer may start / end (p_mask 0, not a pad)."""
    allowed = (np.asarray(feature["p_mask"]) == 0) & (np.asarray(feature["attention_mask"]) == 1)
    return dict(feature["token_to_orig_map"]), allowed


def legal(words: dict, allowed, s: int, e: int, max_answer_len: int) -> bool:
    return s in words and e in words and allowed[s] and allowed[e] and s <= e < s + max_answer_len


def simple_candidates(feature: dict, max_answer_len: int):
    """Every legal span of a window (start word, end word, P(start) P(end)), and its null score P(0) P(0)."""
    words, allowed = window_spans(feature)
    start, end = softmax_over(feature["start_logits"], allowed), softmax_over(feature["end_logits"], allowed)
    spans = [(words[s], words[e], (start[s] * end[e]).item()) for s in words for e in words
             if legal(words, allowed, s, e, max_answer_len)]
    return spans, (start[0] * end[0]).item()


def beam_candidates(model, feature: dict, max_answer_len: int):
    """The legal spans of the beams of transformers' XLMForQuestionAnswering on a window (4.57's padded one), and
    its null score sigmoid(cls_logits)."""
    words, allowed = window_spans(feature)
    with torch.no_grad():
        out = model(**{k: torch.tensor([feature[k]]) for k in ("input_ids", "attention_mask", "token_type_ids")},
                    p_mask=torch.tensor([feature["p_mask"]], dtype=torch.float32),
                    cls_index=torch.tensor([feature["cls_index"]]))
    n_start, n_end = model.config.start_n_top, model.config.end_n_top
    spans = []
    for i in range(n_start):
        s = int(out.start_top_index[0, i])
        for j in range(n_end):  # end beam j of start beam i
            e = int(out.end_top_index[0, j * n_start + i])
            if legal(words, allowed, s, e, max_answer_len):
                spans.append((words[s], words[e],
                              (out.start_top_log_probs[0, i] * out.end_top_log_probs[0, j * n_start + i]).item()))
    return spans, torch.sigmoid(out.cls_logits[0]).item()


def answer(example: dict, first: int, last: int, score: float) -> dict:
    """4.57's slow-path answer: start = the first character of the first word, end = the last character counted
    to the last word (its trailing whitespace included), the words joined by spaces."""
    char_to_word = example["char_to_word"]
    return {"score": score, "start": char_to_word.index(first),
            "end": len(char_to_word) - 1 - char_to_word[::-1].index(last),
            "answer": " ".join(example["words"][first:last + 1])}


def expected(record: dict, kwargs: dict, candidates, merge_windows: bool):
    """The best legal spans of each example of a call, as the pipeline's result."""
    top_k, max_answer_len = kwargs.get("top_k", 1), kwargs.get("max_answer_len", 15)
    results = []
    for example in record["examples"]:
        spans, nulls = [], []
        for feature in example["features"]:
            window, null = candidates(feature, max_answer_len)
            spans += window
            nulls.append(null)
        if merge_windows:  # one answer per span, its best score
            best = {}
            for first, last, score in spans:
                best[(first, last)] = max(score, best.get((first, last), score))
            spans = [(first, last, score) for (first, last), score in best.items()]
        answers = [answer(example, *span) for span in spans]
        if kwargs.get("handle_impossible_answer"):
            answers.append({"score": min(nulls), "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]
        results.append(answers[0] if len(answers) == 1 else answers)
    return results[0] if len(results) == 1 else results


# -------------------------------------------------------------------------------------------- tests
def test_features_are_457s(setup):
    """Our windows of every example of every call are 4.57's SQuAD features: ids, token types, p_mask (the beam
    head's input), cls index and the word of each context token; our words are its words."""
    for head in ("simple", "beam"):
        ours, theirs = setup[head]
        for (name, c), record in zip(CALLS.items(), theirs["calls"]):
            kwargs = {k: v for k, v in c["kwargs"].items() if k not in ("question", "context")}
            opts = ours.resolve_options({**ours.defaults, **kwargs})
            for example in record["examples"]:
                item = ours.check({"question": example["question"], "context": example["context"]}, "inputs")
                encoded = ours.preprocess(item, "inputs", opts)
                assert list(encoded.meta["words"].words) == example["words"], name
                where = f"{head} {name}"
                assert len(encoded.rows) == len(example["features"]), where
                for row, window, feature in zip(encoded.rows, encoded.meta["windows"], example["features"]):
                    n = sum(feature["attention_mask"])
                    for key in ("input_ids", "token_type_ids", "p_mask"):
                        np.testing.assert_array_equal(getattr(window, key), feature[key][:n], f"{where} {key}")
                    assert sorted(row) == (["attention_mask", "input_ids", "p_mask", "token_type_ids"] if head == "beam"
                                           else ["attention_mask", "input_ids", "token_type_ids"]), where
                    assert window.cls_index == feature["cls_index"], where
                    words = {int(i): int(w) for i, w in enumerate(window.word_of_token) if w >= 0}
                    assert words == dict(feature["token_to_orig_map"]), where


def test_simple_head_answers_are_457s_or_its_best_legal_spans(setup):
    ours, theirs = setup["simple"]
    ran = failed = 0
    for (name, c), record in zip(CALLS.items(), theirs["calls"]):
        brute_force = expected(record, c["kwargs"], simple_candidates, merge_windows=False)
        mine = ours(*c["args"], **c["kwargs"])
        if "result" in record:
            ran += 1
            assert_same_result(brute_force, record["result"], f"{name}: the oracle computed here vs 4.57")
            assert_same_result(mine, record["result"], name)
        else:  # 4.57's bug: a candidate span on the separator (cls token) that has no word
            failed += 1
            assert record["error"].startswith("KeyError: "), f"{name}: 4.57 raised {record['error']}"
            assert_same_result(mine, brute_force, name)
    assert ran >= 4 and failed >= 4, f"4.57 answered {ran} calls and failed on {failed}: both should be tested"


def test_beam_head_answers_are_its_best_legal_beam_spans(setup):
    ours, theirs = setup["beam"]
    model = setup["beam_model"]
    for (name, c), record in zip(CALLS.items(), theirs["calls"]):
        brute_force = expected(record, c["kwargs"], lambda f, n: beam_candidates(model, f, n), merge_windows=True)
        assert_same_result(ours(*c["args"], **c["kwargs"]), brute_force, name)


def test_457_serves_a_beam_checkpoint_with_a_new_random_span_layer(setup):
    """What our beam answers replace: 4.57 loads XLMForQuestionAnswering as XLMForQuestionAnsweringSimple, whose
    span layer the checkpoint lacks (the SQuAD head's weights go unused)."""
    theirs = setup["beam"][1]
    assert theirs["model"] == "XLMForQuestionAnsweringSimple"
    assert any("newly initialized: ['qa_outputs.bias', 'qa_outputs.weight']" in m for m in theirs["load_messages"])


def test_bad_inputs(setup):
    ours = setup["simple"][0]
    beam = setup["beam"][0]
    cases = [
        (lambda: ours({"question": "", "context": LONG}), r"inputs\['question'\]: the question is empty"),
        (lambda: beam([PAIRS[0], {"question": Q, "context": ""}], **WIN),
         r"inputs\[1\]\['context'\]: the context is empty"),
        (lambda: ours([PAIRS[0], {"question": Q, "context": " \n "}], **WIN),
         r"inputs\[1\]\['context'\]: the context has no tokens"),
        (lambda: beam(question=Q, context=LONG, max_seq_len=12, doc_stride=2),
         r"inputs: the question takes 10 tokens and the special tokens 3, leaving no room of max_seq_len=12"),
        (lambda: ours(question=Q, context=LONG, max_seq_len=20, doc_stride=8),
         r"inputs: .* leaving 7 of max_seq_len=20 for each window of context, fewer than the doc_stride=8"),
        (lambda: ours(question=Q, context=LONG, doc_stride=0), r"doc_stride: expected an int >= 1, got 0"),
        (lambda: beam(question=Q, context=LONG, max_question_len=0), r"max_question_len: expected an int >= 1"),
    ]
    for run, message in cases:
        with pytest.raises(ValueError, match=message):
            run()
    # a context that fits in one window may hold fewer tokens than doc_stride; a long question is cut to
    # max_question_len (4.57's rule), not refused
    assert ours(question=Q, context=PAIRS[2]["context"], max_seq_len=20, doc_stride=8)["answer"]
    assert ours(question=Q * 20, context=SHORT, max_seq_len=40, max_question_len=10)["answer"]


def test_tokenizers_that_cannot_serve_are_refused(setup):
    model = setup["simple"][0].model
    beam_model = setup["beam"][0].model
    tokenizer = setup["simple"][0].tokenizer
    left, no_cls = copy.copy(tokenizer), copy.copy(tokenizer)
    left.padding_side = "left"
    no_cls.cls_token_id = None
    cases = [
        (model, types.SimpleNamespace(is_fast=False, padding_side="right"),
         r"needs a tokenizer with character offsets .* or one that tokenizes word by word"),
        (model, left, r"padding_side='left'; its SQuAD features put the question first"),
        (model, no_cls, r"XLMTokenizer has no cls_token"),
        (beam_model, types.SimpleNamespace(is_fast=True, _tokenizer=None, padding_side="right"),
         r"XLMForQuestionAnswering's beams are read on the SQuAD features of XLM's own tokenizer"),
    ]
    for m, tok, message in cases:
        with pytest.raises(ValueError, match=message):
            QuestionAnswering(m, tok)
