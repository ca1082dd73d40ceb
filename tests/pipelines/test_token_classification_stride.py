"""token-classification with ``stride``: texts longer than the tokenizer's model_max_length, read in overlapping
windows whose entities are merged, against transformers 5.x's TokenClassificationPipeline on the same directories.

The checkpoints' tokenizers are given a small model_max_length (and the Llama one a pad token, without which
transformers cannot pad a text's windows), so that the texts span several windows of a few tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import conversion
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline
from tests.pipelines.test_token_classification import BIO, TEXTS

FAMILIES = ("longformer", "llama")  # the fast tokenizers; XLM's refusal is in test_token_classification.py
MAX_LENGTH = 20  # tokens per window, special tokens included
# one text within a window, the others over two to several (batch_size 2: the list spans batches)
LONG_TEXTS = [" ".join(TEXTS), TEXTS[0], TEXTS[3] + " " + TEXTS[1], "x"]
WORDS = [text.split(" ") for text in LONG_TEXTS[:3]]
ALLOWED = (None, "simple", "first", "average", "max")  # None: unset, the per-token entities merged
pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")


def limit_tokenizer(directory: Path) -> None:
    """model_max_length = MAX_LENGTH in tokenizer_config.json, and a pad token (the end token) where none is set."""
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config["model_max_length"] = MAX_LENGTH
    if "eos_token" in config and "pad_token" not in config:
        config["pad_token"] = config["eos_token"]
    path.write_text(json.dumps(config))


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (our pipeline, transformers' pipeline)."""
    out = {}
    for family in FAMILIES:
        directory = checkpoint(tmp_path_factory.mktemp(family), family, "token_classification", **BIO)
        limit_tokenizer(directory)
        ours = conversion.pipeline("ner", str(directory), batch_size=2)
        if getattr(ours.tokenizer, "model_max_length", None) is None:
            # llama_jax's tokenizer does not read model_max_length from tokenizer_config.json: give it the value
            ours.tokenizer.model_max_length = MAX_LENGTH
        out[family] = (ours, hf_pipeline("token-classification", str(directory)))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_equal_transformers(setups, family):
    """Each strategy stride allows, with every entity kept (ignore_labels=[]), for a stride of 0 (windows side by
    side), a middle one and the largest (one new token per window); and the default filter (per window, before the
    merge) for the two strategies that keep per-token entities."""
    ours, hf = setups[family]
    room = MAX_LENGTH - ours.special_count()
    assert len(ours.tokenizer._tokenizer.encode(LONG_TEXTS[0]).ids) > 4 * MAX_LENGTH, "texts must span windows"
    cases = [{"stride": stride, "aggregation_strategy": s, "ignore_labels": []}
             for stride in (0, 7, room - 1) for s in ALLOWED]
    cases += [{"stride": 7, "aggregation_strategy": s} for s in ALLOWED[:2]]
    for kwargs in cases:
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        theirs = hf(LONG_TEXTS, **kwargs)
        assert any(theirs), f"{family} {kwargs}: transformers finds no entity at all, a weak comparison"
        assert_same_result(ours(LONG_TEXTS, **kwargs), theirs, f"{family} {kwargs}")


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_of_words_equal_transformers(setups, family):
    ours, hf = setups[family]
    for strategy in ALLOWED[1:3]:
        kwargs = {"stride": 5, "aggregation_strategy": strategy, "is_split_into_words": True, "ignore_labels": []}
        assert_same_result(ours(WORDS, **kwargs), hf(WORDS, **kwargs), f"{family} words {kwargs}")
        assert_same_result(ours(WORDS[0], **kwargs), hf(WORDS[0], **kwargs), f"{family} one list of words {kwargs}")


def test_without_stride_texts_are_cut(setups):
    ours, hf = setups["longformer"]
    theirs = hf(LONG_TEXTS, ignore_labels=[])
    assert max(len(r) for r in theirs) == MAX_LENGTH - 2, "the text should be cut to one window"
    assert_same_result(ours(LONG_TEXTS, ignore_labels=[]), theirs, "cut")


def test_stride_as_a_pipeline_default(setups):
    ours, hf = setups["longformer"]
    pipe = conversion.pipeline("ner", ours.model, tokenizer=ours.tokenizer, batch_size=2, stride=3)
    kwargs = {"aggregation_strategy": "max", "ignore_labels": []}
    assert_same_result(pipe(LONG_TEXTS[:2], **kwargs), hf(LONG_TEXTS[:2], stride=3, **kwargs), "pipeline default")


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_strides(setups, family):
    ours, hf = setups[family]
    room = MAX_LENGTH - ours.special_count()
    with pytest.raises(ValueError, match="stride. must be less than .tokenizer.model_max_length"):
        hf("a", stride=MAX_LENGTH, aggregation_strategy="simple")  # what we mirror
    with pytest.raises(ValueError, match=rf"stride: {MAX_LENGTH} must be less than the tokenizer's model_max_length "
                                         rf"\({MAX_LENGTH}\)"):
        ours("a", stride=MAX_LENGTH, aggregation_strategy="simple")
    # no room beside the special tokens: transformers' tokenizer raises for a larger stride, and at stride == room
    # the `tokenizers` library panics (a PanicException, not an Exception); we refuse both
    with pytest.raises(ValueError, match=rf"stride: {room} must be less than the {room} text tokens each window "
                                         rf"holds \(model_max_length {MAX_LENGTH} less {MAX_LENGTH - room} special"):
        ours(LONG_TEXTS[0], stride=room, aggregation_strategy="simple")
    with pytest.raises(ValueError, match="stride. was provided to process all the text but .aggregation_strategy="):
        hf("a", stride=2, aggregation_strategy="none")
    with pytest.raises(ValueError, match=r"stride: the windows' entities are merged, which aggregation_strategy="
                                         r"\"none\" does not allow .*\['simple', 'first', 'average', 'max'\]"):
        ours("a", stride=2, aggregation_strategy="NONE")
    for bad in (-1, 2.0, True, "2"):
        with pytest.raises(ValueError, match=rf"stride: expected an int >= 0 .*got {bad!r}"):
            ours("a", stride=bad, aggregation_strategy="simple")
