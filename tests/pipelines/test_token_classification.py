"""token-classification against transformers 5.x's TokenClassificationPipeline on the same directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import pytest

import conversion
from common.pipelines.token_classification import TokenClassification
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline

FAMILIES = ("longformer", "llama", "xlm")
LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")  # BIO labels, so that the strategies have groups to form
BIO = {"num_labels": len(LABELS), "id2label": dict(enumerate(LABELS)),
       "label2id": {name: i for i, name in enumerate(LABELS)}}
# different lengths (batch_size 2: the list spans batches), words of several pieces, punctuation, runs of spaces,
# tabs and newlines, characters of several bytes (byte-level pieces sharing one character's span), a 1-char text
TEXTS = ["Hello, world-wide Parisians! x", "The module's  __init__ is\treturned.  Zürich café — 東京 🙂\n", "x",
         "Alice met Bob in New-York; they didn't stay (2024)."]
STRATEGIES = ("none", "simple", "first", "average", "max")
FAST = ("longformer", "llama")  # XLM's tokenizer is slow, as transformers': no offsets, no word strategies
pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")


def load(directory: str, **defaults):
    return conversion.pipeline("ner", directory, batch_size=2, **defaults)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (directory, our pipeline, transformers' pipeline)."""
    out = {}
    for family in FAMILIES:
        directory = str(checkpoint(tmp_path_factory.mktemp(family), family, "token_classification", **BIO))
        out[family] = (directory, load(directory), hf_pipeline("token-classification", directory))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_every_strategy_equals_transformers(setups, family):
    """Each strategy with ignore_labels=[] (every entity, "O" ones included), and the default ["O"] for the two
    that every tokenizer serves (the filter is the same code whatever the strategy)."""
    _, ours, hf = setups[family]
    strategies = STRATEGIES if family in FAST else STRATEGIES[:2]
    cases = [{"aggregation_strategy": s, "ignore_labels": []} for s in strategies]
    cases += [{"aggregation_strategy": s} for s in STRATEGIES[:2]]
    for kwargs in cases:
        theirs = hf(TEXTS, **kwargs)
        assert any(theirs), f"{family} {kwargs}: transformers finds no entity at all, a weak comparison"
        assert_same_result(ours(TEXTS, **kwargs), theirs, f"{family} texts {kwargs}")


@pytest.mark.parametrize("family", FAMILIES)
def test_default_call_one_element_list_and_labels_to_ignore(setups, family):
    _, ours, hf = setups[family]
    assert_same_result(ours(TEXTS[1]), hf(TEXTS[1]), f"{family} default")
    assert_same_result(ours(TEXTS[1:2]), hf(TEXTS[1:2]), f"{family} a one-element list")
    kwargs = {"aggregation_strategy": "Simple", "ignore_labels": ["O", "PER", "I-LOC"]}
    assert_same_result(ours(TEXTS, **kwargs), hf(TEXTS, **kwargs), f"{family} {kwargs}")


def test_defaults_given_to_the_pipeline(setups):
    directory, _, hf = setups["longformer"]
    ours = load(directory, aggregation_strategy="max", ignore_labels=[])
    assert_same_result(ours(TEXTS), hf(TEXTS, aggregation_strategy="max", ignore_labels=[]), "pipeline defaults")
    assert_same_result(ours(TEXTS, aggregation_strategy="none"), hf(TEXTS, ignore_labels=[]), "a call overrides them")


@pytest.mark.parametrize("family", FAST)
def test_word_strategies_warn_as_transformers(setups, family):
    """Neither byte-level BPE has a continuing-subword prefix: words come from transformers' fallback heuristic,
    with its warning."""
    _, ours, _ = setups[family]
    assert not ours.word_aware()
    with pytest.warns(UserWarning, match="Tokenizer does not support real words, using fallback heuristic"):
        ours(TEXTS[0], aggregation_strategy="first")


def test_truncated_to_model_max_length(setups, tmp_path):
    """transformers tokenizes with truncation=True: a text past the tokenizer's model_max_length is cut."""
    directory = Path(shutil.copytree(setups["longformer"][0], tmp_path / "short"))
    (directory / "tokenizer_config.json").write_text('{"model_max_length": 8}')
    ours, hf = load(str(directory)), hf_pipeline("token-classification", str(directory))
    theirs = hf(TEXTS, ignore_labels=[])
    assert max(len(r) for r in theirs) == 6, "the checkpoint should cut texts to 8 tokens (6 + 2 special)"
    assert_same_result(ours(TEXTS, ignore_labels=[]), theirs, "truncated")


def test_bad_inputs_and_options(setups):
    directory, ours, _ = setups["longformer"]
    with pytest.raises(ValueError, match=r"inputs\[1\]: the text is empty"):
        ours(["a", ""])
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a str, got int 3"):
        ours([3])
    with pytest.raises(ValueError, match=r"inputs: expected a str or a non-empty list of them, got list \[\]"):
        ours([])
    with pytest.raises(ValueError, match=r"aggregation_strategy: expected one of \['none', 'simple', 'first', "
                                         r"'average', 'max'\], got 'longest'"):
        ours("a", aggregation_strategy="longest")
    with pytest.raises(ValueError, match=r"ignore_labels: expected a list of label names \(str\), got str 'O'"):
        ours("a", ignore_labels="O")
    with pytest.raises(ValueError, match=r"offset_mapping: not supported by this token-classification pipeline"):
        ours("a", offset_mapping=[(0, 1)])
    with pytest.raises(ValueError, match=r"token-classification: unexpected option \['top_k'\]"):
        ours("a", top_k=2)
    with pytest.raises(ValueError, match=r"aggregation_strategy: expected one of"):
        load(directory, aggregation_strategy=3)("a")


@pytest.mark.parametrize("strategy", STRATEGIES[2:])
def test_word_strategies_need_a_fast_tokenizer(setups, strategy):
    _, ours, hf = setups["xlm"]
    with pytest.raises(ValueError, match="Slow tokenizers cannot handle subwords"):
        hf("a", aggregation_strategy=strategy)  # what we mirror
    with pytest.raises(ValueError, match=rf"aggregation_strategy: '{strategy}' needs word boundaries.*slow "
                                         "tokenizers cannot handle subwords"):
        ours("a", aggregation_strategy=strategy)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_head_that_cannot_serve(setups):
    directory, ours, _ = setups["longformer"]
    bare = conversion.from_pretrained(directory, architecture="LongformerModel", progress=False,
                                      init_missing=jax.random.PRNGKey(0))  # its pooler is not in the file
    with pytest.raises(ValueError, match=r"task 'token-classification' cannot run on a LongformerModel: it needs "
                                         r".*LlamaForTokenClassification.*XLMForTokenClassification"):
        TokenClassification(bare, ours.tokenizer)


# ------------------------------------------------------------------------------------- is_split_into_words
# words of several pieces, punctuation, a word with a space inside, an empty word, characters of several bytes
WORDS = [text.split(" ") for text in TEXTS[:2]] + [["Alice", "met", "Bob", "", "in New-York;", "東京"], ["x"]]


@pytest.mark.parametrize("family", FAST)
def test_words_equal_transformers(setups, family):
    """One list of words (transformers gives a list of one result) and a batch, each strategy, and a delimiter
    other than " " (the text start / end index into, and the word heuristic reads)."""
    _, ours, hf = setups[family]
    cases = [{"aggregation_strategy": s, "ignore_labels": []} for s in STRATEGIES]
    cases += [{"aggregation_strategy": "first", "delimiter": "", "ignore_labels": []}, {"delimiter": "__"}, {}]
    for kwargs in cases:
        kwargs = {**kwargs, "is_split_into_words": True}
        theirs = hf(WORDS, **kwargs)
        assert any(theirs), f"{family} {kwargs}: transformers finds no entity at all, a weak comparison"
        assert_same_result(ours(WORDS, **kwargs), theirs, f"{family} words {kwargs}")
        assert_same_result(ours(WORDS[0], **kwargs), hf(WORDS[0], **kwargs), f"{family} one list of words {kwargs}")


def test_words_as_a_pipeline_default(setups):
    directory, _, hf = setups["longformer"]
    ours = load(directory, is_split_into_words=True, delimiter="\t")
    kwargs = {"is_split_into_words": True, "delimiter": "\t", "aggregation_strategy": "simple"}
    assert_same_result(ours(WORDS[1], aggregation_strategy="simple"), hf(WORDS[1], **kwargs), "pipeline defaults")
    # each(): every item one list of words, its result as a call on it gives it (what `jaxzoo pipeline` writes)
    assert_same_result(ours.each(WORDS), [hf(words, is_split_into_words=True, delimiter="\t") for words in WORDS],
                       "each")


def test_bad_words(setups):
    _, ours, _ = setups["longformer"]
    with pytest.raises(ValueError, match=r"sentence. must be a list of tokens"):
        setups["longformer"][2]("Alice met", is_split_into_words=True)  # what we mirror
    with pytest.raises(ValueError, match=r"inputs: is_split_into_words=True takes a list of words \(str\), "
                                         r"got str 'Alice met'"):
        ours("Alice met", is_split_into_words=True)
    with pytest.raises(ValueError, match=r"inputs\[0\]: is_split_into_words=True takes a list of words \(str\), "
                                         r"got str 'a'"):
        ours(("a", "b"), is_split_into_words=True)  # a tuple is a batch (transformers: not a list of words)
    with pytest.raises(ValueError, match=r"inputs\[1\]: expected a word \(str\), got int 3"):
        ours(["Alice", 3], is_split_into_words=True)
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a word \(str\), got list"):
        ours([["a"], ("b", "c")], is_split_into_words=True)  # not a list of lists: one input, as transformers
    with pytest.raises(ValueError, match=r"inputs\[1\]: the list of words is empty"):
        ours([["a"], []], is_split_into_words=True)
    with pytest.raises(ValueError, match=r"inputs: expected a str or a non-empty list of them, got list \[\]"):
        ours([], is_split_into_words=True)
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a str, got list .*; a list of words needs "
                                         r"is_split_into_words=True"):
        ours([["Alice", "met"]])
    with pytest.raises(ValueError, match=r"is_split_into_words: expected True or False, got 'yes'"):
        ours(["a"], is_split_into_words="yes")
    with pytest.raises(ValueError, match=r"delimiter: expected a str, got int 0"):
        ours(["a"], is_split_into_words=True, delimiter=0)


def test_words_and_stride_need_a_fast_tokenizer(setups):
    """XLM's tokenizer is slow, as transformers': both options are refused, by name."""
    _, ours, hf = setups["xlm"]
    with pytest.raises(ValueError, match="is_split_into_words=True is only supported with fast tokenizers"):
        hf(WORDS[0], is_split_into_words=True)  # what we mirror
    with pytest.raises(ValueError, match=r"is_split_into_words: only supported with fast tokenizers .*this "
                                         r"XLMTokenizer is a slow one"):
        ours(WORDS[0], is_split_into_words=True)
    with pytest.raises(ValueError, match="stride. was provided to process all the text but you're using a slow"):
        hf(TEXTS[0], stride=2, aggregation_strategy="simple")
    with pytest.raises(ValueError, match=r"stride: needs a fast tokenizer .*this XLMTokenizer is a slow one"):
        ours(TEXTS[0], stride=2, aggregation_strategy="simple")


def test_stride_needs_a_pad_token(setups):
    """The Llama checkpoint has no pad token: transformers cannot pad a text's windows to one length."""
    _, ours, hf = setups["llama"]
    assert ours.tokenizer.pad_token_id is None
    with pytest.raises(ValueError, match="Asking to pad but the tokenizer does not have a padding token"):
        hf(TEXTS[0], stride=2)  # what we mirror
    with pytest.raises(ValueError, match=r"stride: the windows of a text are padded to one length .*this tokenizer "
                                         r"has no pad token"):
        ours(TEXTS[0], stride=2)
