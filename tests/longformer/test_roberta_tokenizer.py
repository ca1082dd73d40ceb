"""common.roberta_tokenizer.RobertaTokenizer against transformers' AutoTokenizer on locally built files.

A tiny byte-level BPE is trained here with the `tokenizers` library (no hub) and written the ways the real
repos ship it: roberta-base / bart-base (tokenizer.json + vocab.json + merges.txt, no tokenizer_config.json),
longformer-base-4096 (plus a tokenizer_config.json), led-base-16384 (vocab.json + merges.txt +
special_tokens_map.json + tokenizer_config.json, no tokenizer.json), a transformers 5.x save_pretrained
output, and add_prefix_space variants. Every expected value is transformers' live output.
"""

import json
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import Tokenizer, pre_tokenizers
from tests.factory import roberta_bpe

import transformers  # the oracle every test compares against
from common.roberta_tokenizer import ROBERTA_CLASSES, RobertaTokenizer

TEXTS = [
    "Hello world",
    " Hello world",
    "",
    " ",
    "   ",
    "  leading and trailing  ",
    "multiple   spaces\tand\ttabs",
    "line one\nline two\n\nline four\n",
    "\n",
    "Hello <mask>!",
    "Hello<mask>!",
    "a <mask> b  <mask>c <mask>",
    "<mask>",
    " <mask>",
    "hello</s>world",
    "<s>hello",
    "a <s> b </s> c <pad> d <unk>",
    "café naïve façade — déjà vu",
    "日本語のテキスト",
    "emoji 😀🎉 and 👍🏽!",
    "zero\u200bwidth",
    "Numbers 1234567 and 3.14159",
    "don't you're I'm they'll",
    "def f(x):\n    return x ** 2  # comment",
]
PAIRS = [("Hello world", "How are you?"), ("", ""), (" a", "b "), ("Question <mask>?", "Answer\nhere 😀"),
         ("one", ""), ("", "two words")]
STM = {  # special_tokens_map.json as on allenai/led-base-16384 (4.x save format)
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
    "cls_token": "<s>",
    "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": True},
}
# name -> (model_type, tokenizer_config.json or None, special_tokens_map.json or None, has tokenizer.json,
#          add_prefix_space of tokenizer.json's own pre-tokenizer)
LAYOUTS = {
    "roberta": ("roberta", None, None, True, False),
    "roberta_vocab_merges": ("roberta", None, None, False, False),
    "longformer": ("longformer", {"model_max_length": 4096}, None, True, False),
    "longformer_class": ("longformer", {"model_max_length": 4096, "tokenizer_class": "LongformerTokenizer"},
                         None, True, False),
    "bart": ("bart", None, None, True, False),
    "led": ("led", {"errors": "replace", "add_prefix_space": False, "trim_offsets": True,
                    "model_max_length": 16384, "tokenizer_class": "LEDTokenizer"}, STM, False, False),
    "prefix_space": ("roberta", {"add_prefix_space": True, "tokenizer_class": "RobertaTokenizer"}, None, True, False),
    "prefix_space_vocab_merges": ("bart", {"add_prefix_space": True, "tokenizer_class": "BartTokenizer"},
                                  None, False, False),
    "file_prefix_space": ("roberta", None, None, True, True),  # transformers ignores the file's pre-tokenizer
    "short_max_length": ("roberta", {"model_max_length": 7, "padding_side": "left"}, None, True, False),
}
NAMES = list(LAYOUTS) + ["hf_saved"]


def _train() -> Tokenizer:
    lines = [line for k in sorted(topics) for line in topics[k].splitlines() if line.strip()][:400]
    lines += ["café naïve façade — déjà vu 日本語のテキスト", "emoji 😀🎉 and 👍🏽!"] * 3
    # As in roberta-base's files: "<mask>" is the last id of vocab.json, lstrip=True among the added tokens.
    return roberta_bpe(lines, 700)


def _write(directory: Path, tok: Tokenizer, layout) -> None:
    model_type, config, special_map, has_json, file_prefix_space = layout
    directory.mkdir()
    tok.model.save(str(directory))  # vocab.json + merges.txt
    if has_json:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=file_prefix_space)
        tok.save(str(directory / "tokenizer.json"))
    (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (directory / "special_tokens_map.json").write_text(json.dumps(special_map))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("roberta_tok")
    tok = _train()
    out = {}
    for name, layout in LAYOUTS.items():
        _write(root / name, tok, layout)
        out[name] = root / name
    # What transformers 5.x's save_pretrained writes (tokenizer_config.json with added_tokens_decoder).
    transformers.AutoTokenizer.from_pretrained(str(out["roberta"])).save_pretrained(str(root / "hf_saved"))
    (root / "hf_saved" / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    out["hf_saved"] = root / "hf_saved"
    return out


@pytest.fixture(scope="module")
def loaded(dirs) -> dict[str, tuple]:
    return {name: (RobertaTokenizer.from_pretrained(d), transformers.AutoTokenizer.from_pretrained(str(d)))
            for name, d in dirs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_single_text_ids(loaded, name):
    ours, hf = loaded[name]
    assert type(hf).__name__ == "RobertaTokenizer"
    for text in TEXTS:
        assert ours.encode(text) == hf(text)["input_ids"], text
        assert ours.encode(text, add_special_tokens=False) == hf(text, add_special_tokens=False)["input_ids"], text


@pytest.mark.parametrize("name", NAMES)
def test_pair_ids(loaded, name):
    ours, hf = loaded[name]
    for a, b in PAIRS + [(t, TEXTS[0]) for t in TEXTS[:12]]:
        expected = hf(a, b)["input_ids"]
        assert ours.encode(a, b) == expected, (a, b)
        assert ours.encode(a, b, add_special_tokens=False) == hf(a, b, add_special_tokens=False)["input_ids"]
        assert ours(a, b)["input_ids"].tolist() == [expected]
    a, b = PAIRS[0]
    ids = ours.encode(a, b)  # <s> A </s></s> B </s>
    assert ids[0] == ours.cls_token_id and ids[-1] == ours.sep_token_id
    sep = ids.index(ours.sep_token_id)
    assert ids[sep + 1] == ours.sep_token_id


@pytest.mark.parametrize("name", NAMES)
def test_special_tokens_and_sizes(loaded, name):
    ours, hf = loaded[name]
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id",
                 "sep_token_id", "cls_token_id", "padding_side"):
        assert getattr(ours, attr) == getattr(hf, attr), attr
    assert ours.vocab_size == len(hf)
    assert ours.add_prefix_space == bool(hf.add_prefix_space)
    assert ours.mask_token_id == ours.vocab_size - 1
    assert (ours.bos_token_id, ours.pad_token_id, ours.eos_token_id, ours.unk_token_id) == (0, 1, 2, 3)


def test_mask_lstrip_follows_the_files(loaded):
    # Behaviour pinned by transformers 5.x: lstrip comes from tokenizer.json / special_tokens_map.json only.
    for name in ("roberta", "led", "hf_saved", "roberta_vocab_merges"):
        ours, hf = loaded[name]
        ids = ours.encode("Hello <mask>!")
        assert ids == hf("Hello <mask>!")["input_ids"]
        space = ours.encode(" ", add_special_tokens=False)[0]
        lstrip = hf.added_tokens_decoder[hf.mask_token_id].lstrip
        assert (ids[ids.index(ours.mask_token_id) - 1] == space) == (not lstrip), name
    assert loaded["roberta"][1].added_tokens_decoder[loaded["roberta"][0].mask_token_id].lstrip


def test_prefix_space_setting(loaded):
    plain, prefixed = loaded["roberta"][0], loaded["prefix_space"][0]
    assert plain.encode("Hello") != plain.encode(" Hello")
    assert prefixed.encode("Hello") == prefixed.encode(" Hello") == plain.encode(" Hello")
    assert loaded["file_prefix_space"][0].encode("Hello") == plain.encode("Hello")


@pytest.mark.parametrize("name", ["roberta", "led", "prefix_space", "short_max_length"])
@pytest.mark.parametrize("side", [None, "left", "right"])
def test_batch_padding(loaded, name, side):
    ours, hf = loaded[name]
    kwargs = {} if side is None else {"padding_side": side}
    got = ours(TEXTS, **kwargs)
    want = hf(TEXTS, padding=True, return_tensors="np", **kwargs)
    assert got["input_ids"].dtype == np.int32 and got["attention_mask"].dtype == np.int32
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    got = ours(firsts, seconds, **kwargs)
    want = hf(firsts, seconds, padding=True, return_tensors="np", **kwargs)
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    single = ours("Hello world")
    assert single["input_ids"].shape == (1, len(ours.encode("Hello world")))


@pytest.mark.parametrize("name", ["roberta", "led", "prefix_space"])
def test_truncation(loaded, name):
    ours, hf = loaded[name]
    firsts = ["Hello world and a longer first text here", "hi", "", "a b c d e f g h i j k"]
    seconds = ["x y z w", "a b c d e f g h i j k l", "short", "the second text"]
    for max_length in (2, 3, 4, 5, 7, 10, 16, 64):
        want = hf(firsts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        got = ours(firsts, truncation=True, max_length=max_length)
        np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
        np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
        if max_length >= 4:
            want = hf(firsts, seconds, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            got = ours(firsts, seconds, truncation=True, max_length=max_length)
            np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
            np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    # truncation is per call: the next call is not truncated
    assert ours(firsts[0])["input_ids"].shape[1] == len(hf(firsts[0])["input_ids"])


def test_truncation_defaults_to_model_max_length(loaded):
    ours, hf = loaded["short_max_length"]
    assert ours.model_max_length == hf.model_max_length == 7
    got = ours(TEXTS, truncation=True)
    want = hf(TEXTS, padding=True, truncation=True, return_tensors="np")
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    assert loaded["roberta"][0].model_max_length is None
    long_text = " ".join(["word"] * 50)
    assert ours(long_text)["input_ids"].shape[1] == len(hf(long_text)["input_ids"]) > 7  # no truncation asked


@pytest.mark.parametrize("name", ["roberta", "led", "prefix_space", "hf_saved"])
def test_decode(loaded, name):
    ours, hf = loaded[name]
    for text in TEXTS:
        ids = hf(text)["input_ids"]
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), text
        if not ours.add_prefix_space and not any(t in text for t in ("<s>", "</s>", "<pad>", "<unk>", "<mask>")):
            assert ours.decode(ours.encode(text)) == text  # byte-level BPE round trip
    emoji = ours.encode("😀", add_special_tokens=False)
    assert len(emoji) > 1
    assert ours.decode(emoji[:-1]) == hf.decode(emoji[:-1])  # a broken UTF-8 sequence decodes alike
    batch = ours(TEXTS)["input_ids"]
    assert ours.batch_decode(batch) == hf.batch_decode(batch, skip_special_tokens=True)
    assert ours.batch_decode(batch, skip_special_tokens=False) == hf.batch_decode(batch)
    assert ours.decode(np.int64(ours.mask_token_id), skip_special_tokens=False) == "<mask>"


def test_transformers_maps_the_class_names_to_roberta(dirs, tmp_path):
    # The names we accept are exactly those transformers 5.x builds its RobertaTokenizer for.
    src = dirs["roberta_vocab_merges"]
    for cls_name in ROBERTA_CLASSES:
        d = tmp_path / cls_name
        d.mkdir()
        for f in ("vocab.json", "merges.txt", "config.json"):
            (d / f).write_bytes((src / f).read_bytes())
        (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls_name}))
        hf = transformers.AutoTokenizer.from_pretrained(str(d))
        assert type(hf).__name__ == "RobertaTokenizer", cls_name
        assert RobertaTokenizer.from_pretrained(d).encode("Hello <mask>!") == hf("Hello <mask>!")["input_ids"]


def test_bad_inputs(loaded, dirs, tmp_path):
    tok = loaded["roberta"][0]
    cases = [
        (lambda: tok.encode(None), "text"),
        (lambda: tok.encode(b"bytes"), "text"),
        (lambda: tok.encode("a", 3), "text_pair"),
        (lambda: tok(123), "texts"),
        (lambda: tok(["a", None]), "texts"),
        (lambda: tok([]), "texts"),
        (lambda: tok(["a", "b"], ["c"]), "text_pairs"),
        (lambda: tok("a", ["b", "c"]), "text_pairs"),
        (lambda: tok(["a"], "b"), "text_pairs"),
        (lambda: tok(["a"], [1]), "text_pairs"),
        (lambda: tok(["a"], padding_side="middle"), "padding_side"),
        (lambda: tok(["a"], max_length=4), "max_length"),
        (lambda: tok(["a"], truncation=True, max_length=1), "max_length"),
        (lambda: tok(["a"], ["b"], truncation=True, max_length=3), "max_length"),
        (lambda: tok(["a"], truncation=True, max_length="8"), "max_length"),
        (lambda: tok(["a"], truncation="yes"), "truncation"),
        (lambda: tok.decode([0, tok.vocab_size]), "ids"),
        (lambda: tok.decode([-1]), "ids"),
        (lambda: tok.decode("hello"), "ids"),
        (lambda: tok.decode([[1, 2]]), "ids"),
        (lambda: tok.decode([1.5]), "ids"),
        (lambda: tok.batch_decode([[1], [10**6]]), r"sequences\[1\]"),
        (lambda: tok.batch_decode(5), "sequences"),
        (lambda: RobertaTokenizer.from_pretrained(tmp_path / "missing"), "directory"),
        (lambda: RobertaTokenizer.from_pretrained(tmp_path), "directory"),
    ]
    for call, arg in cases:
        with pytest.raises(ValueError, match=f"^{arg}"):
            call()
    other = tmp_path / "gpt2"
    other.mkdir()
    for f in ("vocab.json", "merges.txt"):
        (other / f).write_bytes((dirs["roberta"] / f).read_bytes())
    (other / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    with pytest.raises(ValueError, match="^directory: .*GPT2Tokenizer"):
        RobertaTokenizer.from_pretrained(other)
