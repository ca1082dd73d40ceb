"""LiLT's document tasks over words + boxes, against transformers' LiLT model and LayoutLMv3 tokenizer on the same
directory (transformers has no pipeline that runs LiLT on given words and boxes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import conversion
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result

LABELS = {0: "O", 1: "B-KEY", 2: "I-KEY", 3: "B-VALUE", 4: "I-VALUE"}
DOCUMENTS = [
    {"words": ["Invoice", "Total:", "1,234.56", "EUR"], "boxes": [[10, 10, 120, 30], [10, 50, 80, 70],
                                                             [90, 50, 200, 70], [210, 50, 260, 70]]},
    {"words": ["Date", "2024-05-01"], "boxes": [[10, 10, 60, 30], [70, 10, 200, 30]]},
    {"words": ["Name:", "Ada", "Lovelace", "of", "London", "supercalifragilistic"],
     "boxes": [[0, 0, 100, 20], [110, 0, 150, 20], [160, 0, 260, 20], [270, 0, 290, 20], [300, 0, 380, 20],
               [0, 900, 1000, 1000]]},
]


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory):
    directory = str(checkpoint(tmp_path_factory.mktemp("lilt_tok"), "lilt", "token_classification",
                               id2label=LABELS, label2id={v: k for k, v in LABELS.items()}))
    hf = transformers.LiltForTokenClassification.from_pretrained(directory).eval()
    return (conversion.pipeline("document-token-classification", directory, batch_size=2), hf,
            transformers.AutoTokenizer.from_pretrained(directory))


def hf_word_labels(hf, tokenizer, document) -> list[tuple[str, float]]:
    """transformers' LiLT on transformers' LayoutLMv3 encoding: (label, probability) at each word's first
    sub-token."""
    enc = tokenizer(document["words"], boxes=document["boxes"], return_tensors="pt")
    with torch.no_grad():
        probs = hf(input_ids=enc["input_ids"], bbox=enc["bbox"], attention_mask=enc["attention_mask"]) \
            .logits[0].softmax(-1).numpy()
    word_ids = enc.word_ids(0)
    first = [word_ids.index(i) for i in range(len(document["words"]))]
    return [(LABELS[int(probs[t].argmax())], float(probs[t].max())) for t in first]


def test_word_labels_are_the_models_at_each_first_sub_token(token_setup):
    ours, hf, tokenizer = token_setup
    results = ours(DOCUMENTS)
    assert len(results) == len(DOCUMENTS)
    for document, result in zip(DOCUMENTS, results):
        assert [r["index"] for r in result] == list(range(len(document["words"])))
        assert [r["word"] for r in result] == document["words"]
        assert [r["box"] for r in result] == document["boxes"]
        expected = hf_word_labels(hf, tokenizer, document)
        assert [r["entity"] for r in result] == [label for label, _ in expected]
        np.testing.assert_allclose([r["score"] for r in result], [p for _, p in expected], atol=1e-5, rtol=0)
    assert len({r["entity"] for result in results for r in result}) > 1  # the labels vary: the check can fail
    assert_same_result(ours(DOCUMENTS[1]), results[1], "one document alone")  # a dict in: its list out


def test_page_units_and_ignore_labels(token_setup):
    ours, _, _ = token_setup
    document = DOCUMENTS[0]
    in_pixels = {"words": document["words"], "boxes": [[x * 2 for x in box] for box in document["boxes"]],
                 "page_size": [2000, 2000]}
    a, b = ours(document), ours(in_pixels)
    assert [r["entity"] for r in a] == [r["entity"] for r in b]
    assert [r["box"] for r in b] == in_pixels["boxes"]  # the boxes as given
    kept = ours(document, ignore_labels=["O"])
    assert [r for r in a if r["entity"] != "O"] == kept


def test_bad_documents(token_setup):
    ours, _, _ = token_setup
    with pytest.raises(ValueError, match=r"inputs\[1\]\['boxes'\]: expected one box per word \(2\), got 1"):
        ours([DOCUMENTS[0], {"words": ["a", "b"], "boxes": [[0, 0, 1, 1]]}])
    with pytest.raises(ValueError, match=r"inputs\['boxes'\]\[0\]: expected 4 ints in 0..1000"):
        ours({"words": ["a"], "boxes": [[0, 0, 1001, 5]]})
    with pytest.raises(ValueError, match=r"inputs\['boxes'\]\[0\]: expected 0 <= x0 <= x1 <= width=100"):
        ours({"words": ["a"], "boxes": [[0, 0, 150, 5]], "page_size": [100, 100]})
    with pytest.raises(ValueError, match=r"inputs\['words'\]\[1\]: expected a word \(a str that is not blank\)"):
        ours({"words": ["a", " "], "boxes": [[0, 0, 1, 1]] * 2})
    with pytest.raises(ValueError, match=r"inputs: expected keys \['words', 'boxes', 'page_size'\]"):
        ours({"words": ["a"]})
    with pytest.raises(ValueError, match=r"ignore_labels: expected a list of label names"):
        ours(DOCUMENTS[0], ignore_labels="O")
    with pytest.raises(ValueError, match=r"inputs\[1\]: the document is \d+ tokens, more than the model's 62 "
                                         r"tokens; split it into pages$"):
        ours([DOCUMENTS[0], LONG])
    with pytest.raises(ValueError, match=r"inputs: LiltForTokenClassification reads words \+ boxes; expected a "
                                         r"\{\"words\", \"boxes\"\} dict, got a str"):
        ours("Total: 12.50")


def test_a_text_model_is_refused(tmp_path):
    directory = checkpoint(tmp_path, "longformer", "token_classification")
    with pytest.raises(ValueError, match=r"task 'document-token-classification' reads words \+ boxes: it cannot "
                                         r"run on a LongformerForTokenClassification"):
        conversion.pipeline("document-token-classification", directory)


# ---------------------------------------------------------------------------------------- question answering
QUESTIONS = ["What is the total?", "When?", "Who is named here"]
# longer than one window of the tiny model (62 tokens): its words numbered so that answers show where they are
LONG_WORDS = [f"{word}{i}" for i, word in enumerate("Invoice Total: Date Name: Ada Lovelace of London EUR amount due "
                                                    "paid on the".split() * 4)]
LONG = {"words": LONG_WORDS, "boxes": [[(37 * i) % 900, (53 * i) % 950, (37 * i) % 900 + 90, (53 * i) % 950 + 40]
                                       for i in range(len(LONG_WORDS))]}


@pytest.fixture(scope="module")
def qa_setup(tmp_path_factory):
    directory = str(checkpoint(tmp_path_factory.mktemp("lilt_qa"), "lilt", "question_answering"))
    hf = transformers.LiltForQuestionAnswering.from_pretrained(directory).eval()
    return (conversion.pipeline("document-question-answering", directory, batch_size=2), hf,
            transformers.AutoTokenizer.from_pretrained(directory))


def hf_windows(tokenizer, question, document, max_length=None, stride=0) -> list[dict]:
    """transformers' LayoutLMv3 encoding of (question, words): one window, or with max_length its windows
    (truncation "only_second", stride, return_overflowing_tokens), each {input_ids, bbox, word_ids, sequence_ids}."""
    cut = {} if max_length is None else {"truncation": "only_second", "max_length": max_length, "stride": stride,
                                         "return_overflowing_tokens": True}
    enc = tokenizer([question], [document["words"]], boxes=[document["boxes"]], **cut)
    return [{"input_ids": enc["input_ids"][i], "bbox": enc["bbox"][i], "word_ids": enc.word_ids(i),
             "sequence_ids": enc.sequence_ids(i)} for i in range(len(enc["input_ids"]))]


def hf_best_spans(hf, tokenizer, question, document, top_k, max_answer_len, null=False, max_length=None,
                  stride=0) -> list[dict]:
    """By brute force over transformers' LiLT logits on transformers' LayoutLMv3 encoding of (question, words)
    (its windows with max_length): in every window, every token span start <= end < start + max_answer_len within
    the document tokens, scored P(start) * P(end) with each softmax over the window's document tokens and its cls
    token (as select_starts_ends normalises them), mapped to words through the encoding's word_ids (+ the null
    answer, the lowest P(cls) * P(cls) of the windows, with null); the top_k of all windows, best first."""
    answers, null_score = [], np.inf
    for window in hf_windows(tokenizer, question, document, max_length, stride):
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([window["input_ids"]]), bbox=torch.tensor([window["bbox"]]))
        word_ids = window["word_ids"]
        document_tokens = [t for t, s in enumerate(window["sequence_ids"]) if s == 1]
        allowed = np.zeros(len(word_ids), bool)
        allowed[document_tokens + [0]] = True  # + the cls token, which takes part in the softmax

        def probabilities(logits):
            logits = np.where(allowed, logits[0].numpy().astype(np.float64), -np.inf)
            p = np.exp(logits - logits.max())
            return p / p.sum()

        p_start, p_end = probabilities(out.start_logits), probabilities(out.end_logits)
        answers += [{"score": float(p_start[s] * p_end[e]),
                     "answer": " ".join(document["words"][word_ids[s]:word_ids[e] + 1]),
                     "start": word_ids[s], "end": word_ids[e], "boxes": document["boxes"][word_ids[s]:word_ids[e] + 1]}
                    for s in document_tokens for e in document_tokens if s <= e < s + max_answer_len]
        null_score = min(null_score, float(p_start[0] * p_end[0]))
    if null:
        answers.append({"score": null_score, "answer": "", "start": 0, "end": 0, "boxes": []})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k]


def assert_same_answers(ours: list[dict], expected: list[dict]) -> None:
    assert [list(a) for a in ours] == [["score", "answer", "start", "end", "boxes"]] * len(ours)
    assert [{k: v for k, v in a.items() if k != "score"} for a in ours] == \
        [{k: v for k, v in a.items() if k != "score"} for a in expected]
    assert all(type(a["score"]) is float and type(a["start"]) is int for a in ours)
    np.testing.assert_allclose([a["score"] for a in ours], [a["score"] for a in expected], atol=1e-5, rtol=0)


def test_answers_are_the_best_legal_spans(qa_setup):
    ours, hf, tokenizer = qa_setup
    inputs = [{"question": q, **d} for q, d in zip(QUESTIONS, DOCUMENTS)]
    best = ours(inputs)
    for options in ({}, {"top_k": 3}, {"top_k": 3, "max_answer_len": 1}):
        results = ours(inputs, **options) if options else best  # three documents, batch_size 2
        assert len(results) == len(inputs)
        for item, result in zip(inputs, results):
            expected = hf_best_spans(hf, tokenizer, item["question"], item, options.get("top_k", 1),
                                     options.get("max_answer_len", 15))
            assert_same_answers(result, expected)
            if options.get("max_answer_len") == 1:
                assert len(result) == 3  # every answer one token, so one word
                assert all(a["start"] == a["end"] for a in result)
    assert any(a["start"] != a["end"] for result in ours(inputs, top_k=3) for a in result)  # the limit can bite
    one = ours(inputs[2])
    assert isinstance(one, list) and len(one) == 1  # a list even for top_k=1, as transformers 5.x
    assert_same_result(one, best[2], "one document alone")


def test_impossible_answer_and_page_units(qa_setup):
    ours, hf, tokenizer = qa_setup
    item = {"question": QUESTIONS[1], **DOCUMENTS[1]}
    answers = ours(item, top_k=100, handle_impossible_answer=True)  # the null answer ranks in the top 100
    assert_same_answers(answers, hf_best_spans(hf, tokenizer, item["question"], item, 100, 15, null=True))
    assert sum(a["answer"] == "" for a in answers) == 1
    assert [a for a in answers if a["answer"]] == ours(item, top_k=99)  # the same spans, the null one left out
    in_pixels = {**item, "boxes": [[x * 2 for x in box] for box in item["boxes"]], "page_size": [2000, 2000]}
    a, b = ours(item, top_k=3), ours(in_pixels, top_k=3)
    assert [(x["start"], x["end"]) for x in a] == [(x["start"], x["end"]) for x in b]
    assert b[0]["boxes"] == in_pixels["boxes"][b[0]["start"]:b[0]["end"] + 1]  # the boxes as given


def test_bad_questions(qa_setup):
    ours, _, _ = qa_setup
    good = {"question": "What?", **DOCUMENTS[1]}
    with pytest.raises(ValueError, match=r"inputs\[1\]: the question is missing; expected keys \['question', "):
        ours([good, DOCUMENTS[1]])
    with pytest.raises(ValueError, match=r"inputs\['question'\]: the question is empty"):
        ours({**good, "question": "  "})
    with pytest.raises(ValueError, match=r"inputs\['question'\]: expected a str, got"):
        ours({**good, "question": ["What?"]})
    with pytest.raises(ValueError, match=r"inputs\[0\]\['boxes'\]: expected one box per word \(2\), got 1"):
        ours([{**good, "boxes": good["boxes"][:1]}])
    for option, value in (("top_k", 0), ("max_answer_len", 1.5), ("handle_impossible_answer", "yes")):
        with pytest.raises(ValueError, match=rf"{option}: expected"):
            ours(good, **{option: value})


# ---------------------------------------------------------------------------- question answering: strided windows
def test_long_documents_give_the_best_spans_of_all_windows(qa_setup):
    """max_seq_len 32 (a question of a few tokens, windows overlapping by doc_stride 8): every window a row, the
    spans of all windows ranked together, word indices of the whole document; then the defaults (the model's 62
    tokens, doc_stride 31), a list mixing long and short documents (batch_size 2), and the null answer."""
    ours, hf, tokenizer = qa_setup
    item = {"question": QUESTIONS[0], **LONG}
    windows = hf_windows(tokenizer, item["question"], LONG, 32, 8)
    assert len(windows) >= 4
    last_of_first = max(w for w in windows[0]["word_ids"][1:] if w is not None)
    small = {"max_seq_len": 32, "doc_stride": 8}
    for top_k in (1, 5):
        result = ours(item, top_k=top_k, **small)
        assert_same_answers(result, hf_best_spans(hf, tokenizer, item["question"], LONG, top_k, 15, max_length=32,
                                                  stride=8))
    assert any(a["start"] > last_of_first for a in ours(item, top_k=5, **small))  # answers past the first window
    mixed = ours([item, {"question": QUESTIONS[1], **DOCUMENTS[1]}, {**item, "question": QUESTIONS[2]}], top_k=3)
    for got, (question, document) in zip(mixed, [(QUESTIONS[0], LONG), (QUESTIONS[1], DOCUMENTS[1]),
                                                 (QUESTIONS[2], LONG)]):
        window = (62, 31) if document is LONG else (None, 0)
        assert_same_answers(got, hf_best_spans(hf, tokenizer, question, document, 3, 15, max_length=window[0],
                                               stride=window[1]))
    # every one-token span of every window, + the null answer; a top_k past a window's spans also brings, as in
    # transformers, score-0 pairs of its decode_spans (start after end): left out here
    answers = ours(item, top_k=1000, max_answer_len=1, handle_impossible_answer=True, **small)
    scored = [a for a in answers if a["score"] > 0]
    assert all(a["score"] == 0.0 for a in answers[len(scored):])
    assert_same_answers(scored, hf_best_spans(hf, tokenizer, item["question"], LONG, 1000, 1, null=True,
                                              max_length=32, stride=8))
    assert sum(a["answer"] == "" and a["start"] == a["end"] == 0 for a in scored) == 1


def test_our_windows_are_transformers_windows(qa_setup):
    ours, _, tokenizer = qa_setup
    rows = ours.tokenizer.windows(QUESTIONS[0], LONG["words"], LONG["boxes"], max_length=32, stride=8)
    theirs = hf_windows(tokenizer, QUESTIONS[0], LONG, 32, 8)
    assert len(rows) == len(theirs)
    for row, window in zip(rows, theirs):
        assert row["input_ids"].tolist() == window["input_ids"]
        assert row["bbox"].tolist() == window["bbox"]
        assert row["attention_mask"].tolist() == [1] * len(window["input_ids"])
        assert row["word_ids"].tolist() == [w if s == 1 else -1 for w, s in zip(window["word_ids"],
                                                                                 window["sequence_ids"])]
    with pytest.raises(ValueError, match=r"stride: the question and the special tokens take \d+ of max_length=16 "
                                         r"tokens, leaving \d+ for the words of each window, not more than stride=12"):
        ours.tokenizer.windows(QUESTIONS[0], LONG["words"], LONG["boxes"], max_length=16, stride=12)


def test_bad_window_options(qa_setup):
    ours, _, _ = qa_setup
    item = {"question": QUESTIONS[0], **LONG}
    for options, message in (
            ({"max_seq_len": 32, "doc_stride": 32}, r"doc_stride: 32 must be smaller than max_seq_len \(32\)"),
            ({"max_seq_len": 63}, r"max_seq_len: expected at most the model's 62 tokens, got 63"),
            ({"max_seq_len": 0}, r"max_seq_len: expected an int >= 1, got 0"),
            ({"doc_stride": -1}, r"doc_stride: expected an int >= 0, got -1"),
            ({"doc_stride": 2.0}, r"doc_stride: expected an int >= 0, got 2.0"),
            ({"max_question_len": 2}, r"inputs\['question'\]: the question is \d+ tokens, more than "
                                      r"max_question_len=2"),
            ({"max_seq_len": 16, "doc_stride": 12}, r"inputs: the question and the special tokens take \d+ of "
                                                    r"max_seq_len=16 tokens, leaving \d+ for the words of each "
                                                    r"window, not more than doc_stride=12 \(the overlap of windows\); "
                                                    r"raise max_seq_len or lower doc_stride")):
        with pytest.raises(ValueError, match=message):
            ours(item, **options)
