"""fill-mask against transformers 5.x's FillMaskPipeline on the same directories (Longformer, XLM)."""

from __future__ import annotations

import pytest

import conversion
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline

HEADS = {"longformer": "masked_lm", "xlm": "with_lm_head"}
MASK = {"longformer": "<mask>", "xlm": "<special1>"}


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (directory, our pipeline, transformers' pipeline); batch_size 2, so a list spans batches."""
    out = {}
    for family, head in HEADS.items():
        directory = str(checkpoint(tmp_path_factory.mktemp(family), family, head))
        out[family] = (directory, conversion.pipeline("fill-mask", directory, batch_size=2),
                       hf_pipeline("fill-mask", directory))
    return out


def texts(family: str) -> list[str]:
    m = MASK[family]
    return [f"The {m} of the module is", f"{m} returns the value.", f"If the {m} is {m}, the class of {m} object",
            f"A much longer sentence about the {m} statement and the functions which it calls in order"]


@pytest.mark.parametrize("family", sorted(HEADS))
def test_single_and_batched_inputs_equal_transformers(setups, family):
    _, ours, hf = setups[family]
    for text in texts(family):
        assert_same_result(ours(text), hf(text), text)
    assert_same_result(ours(texts(family)), hf(texts(family)), "batch")
    one = [texts(family)[0]]
    assert_same_result(ours(one), hf(one), "one-element list")  # transformers unwraps it


@pytest.mark.parametrize("family", sorted(HEADS))
def test_top_k_and_targets_equal_transformers(setups, family):
    _, ours, hf = setups[family]
    vocab = ours.tokenizer.get_vocab()
    in_vocab = sorted(vocab, key=vocab.get)[40:46]
    for kwargs in ({"top_k": 2}, {"top_k": 12}, {"targets": in_vocab}, {"targets": in_vocab[:2], "top_k": 5},
                   {"targets": in_vocab[0]}, {"targets": ["module", "returns", in_vocab[1], in_vocab[1]]}):
        assert_same_result(ours(texts(family), **kwargs), hf(texts(family), **kwargs), str(kwargs))


def test_pipeline_defaults_and_call_options(setups):
    directory, _, hf = setups["longformer"]
    pipe = conversion.pipeline("fill-mask", directory, top_k=3)
    text = texts("longformer")[0]
    assert_same_result(pipe(text), hf(text, top_k=3))
    assert_same_result(pipe(text, top_k=1), hf(text, top_k=1))


def test_bad_inputs(setups):
    _, ours, _ = setups["longformer"]
    with pytest.raises(ValueError, match=r"inputs\[1\]: no mask token '<mask>' in the text"):
        ours(["The <mask> is", "no mask here"])
    with pytest.raises(ValueError, match=r"inputs: the text is empty"):
        ours("")
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a str, got int 3"):
        ours([3])
    with pytest.raises(ValueError, match=r"top_k: expected an int >= 1, got 0"):
        ours("The <mask> is", top_k=0)
    with pytest.raises(ValueError, match=r"fill-mask: unexpected option \['topk'\] \(call\)"):
        ours("The <mask> is", topk=2)
    with pytest.raises(ValueError, match=r"targets: expected a str or a non-empty list of str"):
        ours("The <mask> is", targets=[])


def test_a_head_that_cannot_fill_masks_is_refused(tmp_path):
    directory = checkpoint(tmp_path, "longformer", "token_classification")
    with pytest.raises(ValueError, match=r"task 'fill-mask' cannot run on a LongformerForTokenClassification: it "
                                         r"needs LongformerForMaskedLM or XLMWithLMHeadModel"):
        conversion.pipeline("fill-mask", directory)
    with pytest.raises(ValueError, match=r"task 'fill-masks' is not supported; expected one of"):
        conversion.pipeline("fill-masks", directory)
