"""text-classification and feature-extraction on LiLT (LiltForSequenceClassification, LiltModel) over words + boxes.

transformers' own pipelines load these checkpoints but cannot read their inputs: the LayoutLMv3 tokenizer takes no
plain text (checked below). The reference is therefore transformers' pipeline classes with one step replaced: the
pre-processing, by transformers' LayoutLMv3 tokenizer on the document's words and boxes (as
test_document.hf_word_labels encodes them); the model call, the batching of lists and the post-processing (scores,
top_k, function_to_apply, nested lists, return_tensors) are transformers' own.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import conversion
from tests.pipelines.checkpoints import checkpoint, labelled
from tests.pipelines.oracle import assert_same_result, hf_pipeline
from tests.pipelines.test_document import DOCUMENTS, LONG


class HFDocumentClassification(transformers.TextClassificationPipeline):
    def preprocess(self, inputs, **tokenizer_kwargs):
        return self.tokenizer(inputs["words"], boxes=inputs["boxes"], return_tensors="pt", **tokenizer_kwargs)


class HFDocumentFeatures(transformers.FeatureExtractionPipeline):
    def preprocess(self, inputs, **tokenize_kwargs):
        return self.tokenizer(inputs["words"], boxes=inputs["boxes"], return_tensors="pt", **tokenize_kwargs)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """task -> (our pipeline, transformers' pipeline on documents, the directory); batch_size 2."""
    out = {}
    for task, head, fields, hf_class in (
            ("text-classification", "sequence_classification", labelled(3), HFDocumentClassification),
            ("feature-extraction", "model", {}, HFDocumentFeatures)):
        directory = str(checkpoint(tmp_path_factory.mktemp(head), "lilt", head, **fields))
        out[task] = (conversion.pipeline(task, directory, batch_size=2),
                     transformers.pipeline(task, model=directory, device="cpu", pipeline_class=hf_class), directory)
    return out


def in_page_units(document: dict) -> dict:
    return {"words": document["words"], "boxes": [[x * 3 for x in box] for box in document["boxes"]],
            "page_size": [3000, 3000]}


def test_documents_are_classified_as_transformers_classifies_them(setups):
    ours, hf, _ = setups["text-classification"]
    assert_same_result(ours(DOCUMENTS[0]), hf(DOCUMENTS[0]), "one document")  # a dict in: a dict out
    assert_same_result(ours(DOCUMENTS), hf(DOCUMENTS), "documents")  # three, so a list spans two batches
    for kwargs in ({"top_k": 2}, {"top_k": None}, {"top_k": 1}, {"function_to_apply": "sigmoid"},
                   {"function_to_apply": "none", "top_k": None}):
        assert_same_result(ours(DOCUMENTS[2], **kwargs), hf(DOCUMENTS[2], **kwargs), f"one document {kwargs}")
        assert_same_result(ours(DOCUMENTS, **kwargs), hf(DOCUMENTS, **kwargs), f"documents {kwargs}")
    scores = [r["score"] for r in ours(DOCUMENTS)]
    assert len({round(s, 4) for s in scores}) == len(scores)  # the documents differ: a wrong encoding shows
    assert_same_result(ours(in_page_units(DOCUMENTS[1])), ours(DOCUMENTS[1]), "page units")


def test_document_features_are_transformers_features(setups):
    ours, hf, _ = setups["feature-extraction"]
    assert_same_result(ours(DOCUMENTS[0]), hf(DOCUMENTS[0]), "one document")  # nested lists [1, seq, hidden]
    assert_same_result(ours(DOCUMENTS), hf(DOCUMENTS), "documents")
    tensors = ours(DOCUMENTS, return_tensors=True)
    assert [t.shape for t in tensors] == [tuple(t.shape) for t in hf(DOCUMENTS, return_tensors=True)]
    np.testing.assert_allclose(tensors[1], np.asarray(hf(DOCUMENTS[1])), atol=1e-5, rtol=0)
    # truncation=True cuts a long document to the model's 62 tokens (its positions, as RoBERTa numbers them)
    cut = ours(LONG, truncation=True)
    assert np.shape(cut) == (1, 62, 24)
    assert_same_result(cut, hf(LONG, tokenize_kwargs={"truncation": True, "max_length": 62}), "truncated")
    assert_same_result(ours(in_page_units(DOCUMENTS[0])), ours(DOCUMENTS[0]), "page units")


@pytest.mark.parametrize("task", ["text-classification", "feature-extraction"])
def test_plain_text_is_refused_as_transformers_refuses_it(setups, task):
    """transformers' pipeline fails on a str (its LayoutLMv3 tokenizer takes only pre-split words with boxes);
    ours says what to give instead of guessing a layout."""
    ours, _, directory = setups[task]
    with pytest.raises(ValueError, match="Words must be of type"):
        hf_pipeline(task, directory)("Total: 12.50")
    architecture = "LiltForSequenceClassification" if task == "text-classification" else "LiltModel"
    with pytest.raises(ValueError, match=rf"inputs\[1\]: {architecture} reads words \+ boxes; expected a "
                                         r"\{\"words\", \"boxes\"\} dict, got a str \(to run a text without its "
                                         r"layout, give every word the empty box"):
        ours([DOCUMENTS[0], "Total: 12.50"])


@pytest.mark.parametrize("task", ["text-classification", "feature-extraction"])
def test_bad_documents(setups, task):
    ours, _, _ = setups[task]
    with pytest.raises(ValueError, match=r"inputs\[1\]\['boxes'\]: expected one box per word \(2\), got 1"):
        ours([DOCUMENTS[0], {"words": ["a", "b"], "boxes": [[0, 0, 1, 1]]}])
    with pytest.raises(ValueError, match=r"inputs: expected keys \['words', 'boxes', 'page_size'\] \(page_size "
                                         r"optional\), got \['text', 'text_pair'\]"):
        ours({"text": "a", "text_pair": "b"})
    with pytest.raises(ValueError, match=r"inputs\['boxes'\]\[0\]: expected 4 ints in 0..1000"):
        ours({"words": ["a"], "boxes": [[0, 0, 1001, 5]]})
    hint = " or pass truncation=True to cut it" if task == "feature-extraction" else ""
    with pytest.raises(ValueError, match=rf"inputs: the document is \d+ tokens, more than the model's 62 tokens; "
                                         rf"split it into pages{hint}$"):
        ours(LONG)
    with pytest.raises(ValueError, match=r"inputs: expected a \{\"words\", \"boxes\"\} dict or a non-empty list of "
                                         r"them, got list \[\]"):
        ours([])
