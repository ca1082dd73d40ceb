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
    with pytest.raises(ValueError, match=r"stride: not supported by this token-classification pipeline"):
        ours("a", stride=2)
    with pytest.raises(ValueError, match=r"is_split_into_words: not supported"):
        ours(["a", "b"], is_split_into_words=True)
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
