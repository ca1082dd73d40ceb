"""summarization / text2text-generation on LED against transformers 4.57's pipelines (5.x removed them), and the
default first-token global attention against transformers' LED generate with that mask."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

import conversion
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result
from tests.pipelines.oracle457 import call, job, result_of, run_457_jobs

TEXTS = ["The value of the module is returned by the call.", "Short text.",
         "If the class is defined, the object of its type is made and returned to the caller of the function."]
FAST = {"max_new_tokens": 4, "num_beams": 1}  # small, so that the comparison compiles and runs quickly
CALLS = {
    "one text": call(TEXTS[0], **FAST),
    "texts of several lengths": call(TEXTS, **FAST),
    "beams": call(TEXTS, max_new_tokens=4, num_beams=2, num_return_sequences=2),
    "min and max length": call(TEXTS[:2], min_length=4, max_new_tokens=5, num_beams=1),
    "no repeated bigrams, length penalty": call(TEXTS[2], max_new_tokens=5, num_beams=2, no_repeat_ngram_size=2,
                                               length_penalty=2.0),
    "token ids": call(TEXTS[1], return_tensors=True, **FAST),
}
# Our call where it differs: 4.57's pipeline ignores a call's max_length (its own max_new_tokens=256 default
# wins, and a tiny LED's 40 decoder positions overflow); here max_length counts, the decoder's start token
# included, as transformers' generate counts it: max_length 6 = 5 new tokens.
OURS = {"min and max length": call(TEXTS[:2], min_length=4, max_length=6, num_beams=1)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # init std 1.0: a tiny LED at 0.2 repeats one token whatever the text; this one's continuations vary
    directory = checkpoint(tmp_path_factory.mktemp("led_sum"), "led", "conditional_generation", seed=3,
                           init_std=1.0)
    # the encoder's 64 positions as the tokenizer's limit, so that truncation=True has something to cut to
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    outcomes = run_457_jobs([job("summarization", directory, list(CALLS.values())),
                             job("text2text-generation", directory, [CALLS["texts of several lengths"]])])
    return directory, conversion.pipeline("summarization", directory, batch_size=2), outcomes


@pytest.mark.parametrize("name", list(CALLS))
def test_summaries_equal_transformers_457(setup, name):
    _, ours, outcomes = setup
    theirs = result_of(CALLS[name], outcomes[0]["results"][list(CALLS).index(name)])
    c = OURS.get(name, CALLS[name])
    assert_same_result(ours(*c["args"], global_attention=None, **c["kwargs"]), theirs, name)


def test_outputs_vary_with_the_text(setup):
    """The comparison can fail: different texts give different summaries."""
    _, ours, _ = setup
    texts = [r["summary_text"] for r in ours(TEXTS, global_attention=None, **FAST)]
    assert len(set(texts)) == len(TEXTS), texts


def test_text2text_names_its_output_generated_text(setup):
    directory, _, outcomes = setup
    c = CALLS["texts of several lengths"]
    ours = conversion.pipeline("text2text-generation", directory, global_attention=None)
    assert_same_result(ours(*c["args"], **c["kwargs"]), result_of(c, outcomes[1]["results"][0]))


def test_first_token_global_attention_by_default(setup):
    """The default puts global attention on each text's first token, as LED's documentation: the summaries equal
    transformers' LED generate given that global_attention_mask."""
    directory, ours, _ = setup
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    hf = transformers.LEDForConditionalGeneration.from_pretrained(directory).eval()
    for text, got in zip(TEXTS, ours(TEXTS, max_new_tokens=4, num_beams=2)):
        enc = tokenizer(text, return_tensors="pt")
        globals_ = torch.zeros_like(enc["input_ids"])
        globals_[:, 0] = 1
        with torch.no_grad():
            ids = hf.generate(**enc, global_attention_mask=globals_, max_new_tokens=4, num_beams=2)
        assert got["summary_text"] == tokenizer.decode(ids[0], skip_special_tokens=True)


def test_bad_inputs(setup):
    _, ours, _ = setup
    with pytest.raises(ValueError, match=r"inputs\[1\]: the text is empty"):
        ours(["a text", ""])
    with pytest.raises(ValueError, match=r"max_length: expected an int >= 2, got int 1"):
        ours("a text", max_length=1)
    with pytest.raises(ValueError, match=r"global_attention: expected 'first'"):
        ours("a text", global_attention="all")
    long = " ".join(["word"] * 80)
    with pytest.raises(ValueError, match=r"inputs: the text is \d+ tokens, more than the encoder's 64 positions; "
                                         r"pass truncation=True"):
        ours(long)
    cut = ours(long, truncation=True, **FAST)  # cut to the tokenizer's model_max_length (64)
    assert len(cut) == 1 and isinstance(cut[0]["summary_text"], str)


def test_a_head_that_cannot_write_is_refused(tmp_path):
    directory = checkpoint(tmp_path, "led", "model")
    with pytest.raises(ValueError, match=r"task 'summarization' cannot run on a LEDModel: it needs "
                                         r"LEDForConditionalGeneration"):
        conversion.pipeline("summarization", directory)


def test_continuous_batching_gives_the_static_batches_summaries(setup):
    """Five texts of one padded length through two slots (each refilled as its summary ends) equal static
    batching's summaries (which the tests above compare with 4.57)."""
    _, ours, _ = setup
    texts = ["The value of the module is returned.", "The class is defined by the call.", "An object is made.",
             "It is returned by the function.", "The type of the object is the class."]
    continuous = ours(texts, continuous=True, **FAST)
    assert ours(texts, **FAST) == continuous
    with pytest.raises(ValueError, match="continuous: expected True or False"):
        ours(texts, continuous="yes", **FAST)
