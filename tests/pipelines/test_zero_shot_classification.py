"""zero-shot-classification against transformers 5.x's ZeroShotClassificationPipeline on the same directories."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

import conversion
from common.pipelines.zero_shot_classification import ZeroShotClassification
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline

FAMILIES = ("longformer", "llama", "xlm")
NLI = {"id2label": {0: "contradiction", 1: "neutral", 2: "entailment"},
       "label2id": {"contradiction": 0, "neutral": 1, "entailment": 2}}
# Every (text, hypothesis) row of the main tests is 33..62 tokens in each family (one padded length: one compile
# per row count) and every call has an even number of rows (batches of 2 only).
TEXTS = ["The value of the module is returned.", "A class object is made", "If the class is defined, its object is "
         "made", "The module returns the value."]
LABELS = ["module", "class object", "value", "return"]
TASK = "zero-shot-classification"


def ours_for(directory: str, model=None, **defaults) -> ZeroShotClassification:
    """Our pipeline on ``directory`` (its model: ``model``, when the weights and config are those of an already
    loaded one, whose compiled programs are then reused)."""
    model = model or conversion.from_pretrained(directory, progress=False)
    return ZeroShotClassification(model, model.spec.family.load_tokenizer(directory), batch_size=2, **defaults)


def variant(source: str, target: Path, config: dict | None = None, tokenizer_config: dict | None = None) -> str:
    """A copy of checkpoint ``source`` with config.json / tokenizer_config.json keys replaced (same weights)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    for name, changes in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        if changes:
            path = target / name
            data = json.loads(path.read_text()) if path.exists() else {}
            path.write_text(json.dumps({**data, **changes}))
    return str(target)


def cases(untruncated: ZeroShotClassification, limit: int) -> set[str]:
    """Which truncation cases the pairs of TEXTS x LABELS (default template) meet at ``limit`` tokens."""
    out = set()
    for text in TEXTS:
        n_text = len(untruncated.tokenizer.encode(text, add_special_tokens=False))
        for label in LABELS:
            over = len(untruncated.pair_row(text, f"This example is {label}.")["input_ids"]) - limit
            out.add("whole" if over <= 0 else "cut" if over < n_text else "too short")
    return out


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (directory, our pipeline, transformers' pipeline); batch_size 2, so rows span batches."""
    out = {}
    for family in FAMILIES:
        directory = str(checkpoint(tmp_path_factory.mktemp(family), family, "sequence_classification", **NLI))
        out[family] = (directory, ours_for(directory), hf_pipeline(TASK, directory))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_texts_and_options_equal_transformers(setups, family):
    _, ours, hf = setups[family]
    assert_same_result(ours(TEXTS[0], candidate_labels=LABELS), hf(TEXTS[0], candidate_labels=LABELS), "one text")
    assert_same_result(ours(TEXTS, candidate_labels=LABELS), hf(TEXTS, candidate_labels=LABELS), "texts")
    # (transformers' pipeline runs row by row, slowly: the other options on fewer rows)
    for kwargs in ({"candidate_labels": LABELS, "multi_label": True},
                   {"candidate_labels": " value, return ,, ", "hypothesis_template": "This text is about {}.",
                    "multi_label": False},
                   {"candidate_labels": "value"}):  # one label: scored as with multi_label
        assert_same_result(ours(TEXTS[:2], **kwargs), hf(TEXTS[:2], **kwargs), f"texts {kwargs}")
    assert_same_result(ours(TEXTS[:1], LABELS[:2]), hf(TEXTS[:1], LABELS[:2]), "one-element list, positional labels")


def test_defaults_given_to_the_pipeline(setups):
    directory, loaded, hf = setups["longformer"]
    ours = ours_for(directory, loaded.model, candidate_labels=LABELS, multi_label=True)
    assert_same_result(ours(TEXTS[:2]), hf(TEXTS[:2], candidate_labels=LABELS, multi_label=True), "pipeline defaults")
    assert_same_result(ours(TEXTS[:2], multi_label=False), hf(TEXTS[:2], candidate_labels=LABELS), "a call overrides")


@pytest.mark.parametrize("family, limit", [("longformer", 24), ("xlm", 16)])
def test_texts_are_truncated_only_first_at_model_max_length(setups, tmp_path, family, limit):
    """Over model_max_length the text is cut and the hypothesis kept; a text with fewer tokens than the cut is
    left whole by a fast tokenizer (transformers retries without truncation), emptied by XLM's Python one. The
    limits make both happen among TEXTS x LABELS (rows within the limit: every other test)."""
    directory = variant(setups[family][0], tmp_path / family, tokenizer_config={"model_max_length": limit})
    ours, hf = ours_for(directory, setups[family][1].model), hf_pipeline(TASK, directory)
    assert cases(setups[family][1], limit) == {"cut", "too short"}
    assert_same_result(ours(TEXTS, candidate_labels=LABELS), hf(TEXTS, candidate_labels=LABELS), "truncated")


@pytest.mark.parametrize("labels", [
    {"id2label": {"0": "ENTAILMENT", "1": "neutral", "2": "contradiction"},
     "label2id": {"ENTAILMENT": 0, "neutral": 1, "contradiction": 2}},  # any case; contradiction is then -1
    {"id2label": {"0": "negative", "1": "neutral", "2": "positive"},
     "label2id": {"negative": 0, "neutral": 1, "positive": 2}}])  # none: the last label, with a warning
def test_entailment_label_lookup_and_fallback(setups, tmp_path, caplog, labels):
    directory = variant(setups["llama"][0], tmp_path / "variant", config=labels)  # Llama: the fastest compile
    with caplog.at_level(logging.WARNING, logger="common.pipelines.zero_shot_classification"):
        ours = ours_for(directory)
    warned = "Failed to determine 'entailment' label id" in caplog.text
    assert warned == ("ENTAILMENT" not in labels["label2id"]), caplog.text
    hf = hf_pipeline(TASK, directory)
    for multi_label in (False, True):
        assert_same_result(ours(TEXTS[0], LABELS[:2], multi_label=multi_label),
                           hf(TEXTS[0], LABELS[:2], multi_label=multi_label), f"multi_label={multi_label}")


BAD = [  # (inputs, options, the error; None: transformers takes it too)
    ("a", {}, r"candidate_labels: required, a list of str or a comma-separated str"),
    ("a", {"candidate_labels": []}, r"candidate_labels: expected at least one label, got list \[\]"),
    ("a", {"candidate_labels": " , "}, r"candidate_labels: expected at least one label, got list \[\]"),
    ("a", {"candidate_labels": 3}, r"candidate_labels: expected a list of str or a comma-separated str, got int 3"),
    ("a", {"candidate_labels": ["a", 1]}, r"candidate_labels\[1\]: expected a str, got int 1"),
    ("", {"candidate_labels": ["a"]}, r"inputs: the text is empty"),
    (["a", ""], {"candidate_labels": ["a"]}, r"inputs\[1\]: the text is empty"),
    ([], {"candidate_labels": ["a"]}, r"inputs: expected a str or a non-empty list of them, got list \[\]"),
    ([3], {"candidate_labels": ["a"]}, r"inputs\[0\]: expected a str, got int 3"),
    ("a", {"candidate_labels": ["a"], "hypothesis_template": "No label here."},
     r"hypothesis_template: 'No label here.' has no \{\} where the label goes"),
    ("a", {"candidate_labels": ["a"], "hypothesis_template": "About {x}."},
     r"hypothesis_template: 'About \{x\}.' cannot be formatted with one label \(KeyError: 'x'\)"),
    ("a", {"candidate_labels": ["a"], "hypothesis_template": "{} and {}"}, r"hypothesis_template: .*\(IndexError"),
    ("a", {"candidate_labels": ["a"], "hypothesis_template": "About {"}, r"hypothesis_template: .*\(ValueError"),
    ("a", {"candidate_labels": ["a"], "hypothesis_template": 3},
     r"hypothesis_template: expected a str with \{\} where the label goes, got int 3"),
    ("a", {"candidate_labels": ["a"], "multi_label": "yes"}, r"multi_label: expected True or False, got str 'yes'"),
    ("a", {"candidate_labels": ["a"], "top_k": 2}, r"zero-shot-classification: unexpected option \['top_k'\]"),
]


@pytest.mark.parametrize("inputs, options, error", BAD)
def test_bad_inputs(setups, inputs, options, error):
    _, ours, _ = setups["longformer"]
    with pytest.raises(ValueError, match=error):
        ours(inputs, **options)


def test_transformers_also_refuses_missing_labels_empty_text_and_a_template_without_a_field(setups):
    _, _, hf = setups["longformer"]
    for inputs, options in (("a", {}), ("a", {"candidate_labels": " , "}), ("", {"candidate_labels": ["a"]}),
                            ("a", {"candidate_labels": ["a"], "hypothesis_template": "No label here."})):
        with pytest.raises((ValueError, TypeError)):
            hf(inputs, **options)


def test_extra_positional_arguments_are_refused(setups):
    _, ours, _ = setups["longformer"]
    with pytest.raises(ValueError, match=r"unexpected positional arguments \(\['a'\], 'b'\)"):
        ours("a", ["a"], "b")
    with pytest.raises(ValueError, match=r"unexpected positional arguments \(\['a'\],\)"):
        ours("a", ["a"], candidate_labels=["b"])
