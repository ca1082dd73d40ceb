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


def test_a_text_model_is_refused(tmp_path):
    directory = checkpoint(tmp_path, "longformer", "token_classification")
    with pytest.raises(ValueError, match=r"task 'document-token-classification' reads words \+ boxes: it cannot "
                                         r"run on a LongformerForTokenClassification"):
        conversion.pipeline("document-token-classification", directory)
