"""text-classification against transformers 5.x's TextClassificationPipeline on the same directories."""

from __future__ import annotations

import pytest

import conversion
from tests.pipelines.checkpoints import checkpoint, labelled
from tests.pipelines.oracle import assert_same_result, hf_pipeline
from tests.pipelines.oracle457 import call, result_of, run_457

FAMILIES = ("longformer", "llama", "xlm")
TEXTS = ["The value of the module is returned.", "Short one", "If the class is defined, the object of its type is "
         "made", "x"]
PAIRS = [{"text": "What does it return?", "text_pair": "The value of the module is returned."},
         {"text": "A question", "text_pair": "x"}]
# (config overrides, the model kind): single-label 3 classes, multi-label, one label, regression
KINDS = {"single": labelled(3), "multi": {**labelled(4), "problem_type": "multi_label_classification"},
         "one": labelled(1), "regression": {**labelled(2), "problem_type": "regression"}}


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """(family, kind) -> (our pipeline, transformers' pipeline); batch_size 2, so a list spans batches."""
    out = {}
    for family in FAMILIES:
        for kind in (("single", "multi", "one", "regression") if family == "longformer" else ("single",)):
            directory = str(checkpoint(tmp_path_factory.mktemp(f"{family}_{kind}"), family,
                                       "sequence_classification", **KINDS[kind]))
            out[family, kind] = (conversion.pipeline("text-classification", directory, batch_size=2),
                                 hf_pipeline("text-classification", directory))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_texts_and_options_equal_transformers(setups, family):
    ours, hf = setups[family, "single"]
    assert_same_result(ours(TEXTS[0]), hf(TEXTS[0]), "one text")
    assert_same_result(ours(TEXTS), hf(TEXTS), "texts")
    for kwargs in ({"top_k": 2}, {"top_k": None}, {"top_k": 1}, {"function_to_apply": "sigmoid"},
                   {"function_to_apply": "none", "top_k": None}, {"function_to_apply": "SOFTMAX"}):
        assert_same_result(ours(TEXTS[0], **kwargs), hf(TEXTS[0], **kwargs), f"one text {kwargs}")
        assert_same_result(ours(TEXTS, **kwargs), hf(TEXTS, **kwargs), f"texts {kwargs}")


@pytest.mark.parametrize("family", ["longformer", "xlm"])
def test_text_pairs_equal_transformers(setups, family):
    ours, hf = setups[family, "single"]
    assert_same_result(ours(PAIRS[0]), hf(PAIRS[0]), "one pair")
    assert_same_result(ours(PAIRS), hf(PAIRS), "pairs")
    assert_same_result(ours(PAIRS, top_k=None), hf(PAIRS, top_k=None), "pairs, every label")


@pytest.mark.parametrize("summary_type", ["first", "mean"])
def test_xlm_summaries_read_the_same_tokens_in_batches(tmp_path, summary_type):
    """XLM's classifier reads position 0 ("first": padded on the right) or every position ("mean": only rows of
    one length share a batch); the fixture's checkpoint covers "last" (padded on the left)."""
    directory = str(checkpoint(tmp_path, "xlm", "sequence_classification", summary_type=summary_type,
                               **labelled(3)))
    ours, hf = conversion.pipeline("text-classification", directory, batch_size=4), \
        hf_pipeline("text-classification", directory)
    assert_same_result(ours(TEXTS + TEXTS[:2], top_k=None), hf(TEXTS + TEXTS[:2], top_k=None), summary_type)


@pytest.mark.parametrize("kind", ["multi", "one", "regression"])
def test_multi_label_one_label_and_regression_configs(setups, kind):
    ours, hf = setups["longformer", kind]
    for kwargs in ({}, {"top_k": None}):
        assert_same_result(ours(TEXTS, **kwargs), hf(TEXTS, **kwargs), f"{kind} {kwargs}")


def test_bad_inputs(setups):
    ours, _ = setups["longformer", "single"]
    with pytest.raises(ValueError, match=r"inputs\[1\]\['text'\]: the text is empty"):
        ours([PAIRS[0], {"text": "", "text_pair": "b"}])
    with pytest.raises(ValueError, match=r"inputs: expected a \{\"text\", \"text_pair\"\} dict, got keys \['txt'\]"):
        ours({"txt": "a"})
    with pytest.raises(ValueError, match=r"inputs\[0\]\['text_pair'\]: expected a str, got int 3"):
        ours([{"text": "a", "text_pair": 3}])
    with pytest.raises(ValueError, match=r"function_to_apply: expected one of \['none', 'sigmoid', 'softmax'\]"):
        ours("a", function_to_apply="relu")
    with pytest.raises(ValueError, match=r"top_k: expected an int >= 1 or None \(every label\), got 0"):
        ours("a", top_k=0)
    with pytest.raises(ValueError, match=r"inputs: expected a str or a \{\"text\", \"text_pair\"\} dict or a "
                                         r"non-empty list of them, got list \[\]"):
        ours([])


def test_led_equals_transformers_457(tmp_path):
    """LEDForSequenceClassification (5.x removed it): against transformers 4.57's pipeline on the same directory."""
    directory = checkpoint(tmp_path, "led", "sequence_classification", **labelled(3))
    # (pairs: the short one; LED reads every text through a decoder of 40 positions)
    calls = [call(TEXTS[0]), call(TEXTS), call(TEXTS, top_k=None), call(PAIRS[1:], top_k=2),
             call(TEXTS, function_to_apply="sigmoid")]
    outcome = run_457("text-classification", directory, calls)
    ours = conversion.pipeline("text-classification", directory, batch_size=2)
    results = [result_of(c, r) for c, r in zip(calls, outcome["results"])]
    assert len({r["label"] for r in results[1]}) > 1 or len({round(r["score"], 3) for r in results[1]}) > 1
    for c, theirs in zip(calls, results):
        assert_same_result(ours(*c["args"], **c["kwargs"]), theirs, str(c)[:80])
