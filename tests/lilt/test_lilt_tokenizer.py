"""lilt_jax.tokenizer against transformers' LayoutLMv3Tokenizer and LayoutXLMTokenizer on locally built files.

A tiny byte-level BPE (LiLT's English tokenizer) and a tiny Unigram (its multilingual one) are trained here with
the `tokenizers` library (no hub) and written the ways checkpoints ship them: vocab.json + merges.txt +
tokenizer_config.json + special_tokens_map.json as on SCUT-DLVCLab/lilt-roberta-en-base, tokenizer.json,
transformers 5.x's save_pretrained output, no tokenizer_config.json, and settings variants (boxes, labels,
add_prefix_space, padding side, model_max_length). Every expected value is transformers' live output.
"""

import json
from pathlib import Path
from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from tests.factory import roberta_bpe

import transformers  # the oracle every test compares against
from lilt_jax.tokenizer import LayoutXLMTokenizer, LiltTokenizer, load_tokenizer, normalize_box

WORDS = [
    ["Hello", "world"],
    ["Invoice", "No.", "12345", "Date:", "2024-01-31", "Total", "$1,234.56"],
    ["café", "naïve", "façade", "—", "déjà", "vu"],  # multi-subtoken unicode words
    ["日本語のテキスト", "😀🎉", "👍🏽!", "ｆｕｌｌ", "e\u0301"],
    ["", "a", " ", "  b", "c  d", "\t", "e\n", ""],  # empty and whitespace words
    ["<s>", "x</s>y", "<mask>", "a<pad>", "<unk>"],  # special tokens' text inside words
    ["supercalifragilisticexpialidocious"],
]
QUESTIONS = ["What is the total?", "", "  spaced   question ", "日本語 ?", "<mask> who"]
LILT_CONFIG = {  # as SCUT-DLVCLab/lilt-roberta-en-base's tokenizer_config.json (transformers 4.x save format)
    "tokenizer_class": "LayoutLMv3Tokenizer", "add_prefix_space": True, "errors": "replace", "model_max_length": 512,
    "cls_token_box": [0, 0, 0, 0], "sep_token_box": [0, 0, 0, 0], "pad_token_box": [0, 0, 0, 0],
    "pad_token_label": -100, "only_label_first_subword": True, "trim_offsets": True,
    "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>", "unk_token": "<unk>",
    "pad_token": "<pad>", "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True,
                                         "rstrip": False, "single_word": False, "normalized": True},
}
STM = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "pad_token": "<pad>",
       "cls_token": "<s>",
       "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": True}}
CUSTOM = {"cls_token_box": [1, 2, 3, 4], "sep_token_box": [1000, 1000, 1000, 1000], "pad_token_box": [5, 5, 6, 6],
          "pad_token_label": -1, "only_label_first_subword": False, "padding_side": "left", "model_max_length": 12}
# name -> (tokenizer_config.json or None, special_tokens_map.json or None, write tokenizer.json)
V3_LAYOUTS = {
    "lilt": (LILT_CONFIG, STM, False),
    "lilt_json": (LILT_CONFIG, STM, True),
    "no_config": (None, None, False),  # LayoutLMv3's defaults: add_prefix_space true
    "custom": ({"tokenizer_class": "LayoutLMv3TokenizerFast", **CUSTOM}, None, True),
    "no_prefix_space": ({"tokenizer_class": "LayoutLMv3Tokenizer", "add_prefix_space": False}, None, False),
}
XLM_CONFIG = {"tokenizer_class": "LayoutXLMTokenizer", "model_max_length": 512}
XLM_LAYOUTS = {  # name -> (tokenizer_config.json, "<mask>" among tokenizer.json's added tokens)
    "xlm": (XLM_CONFIG, True),
    "xlm_custom": ({**XLM_CONFIG, **CUSTOM}, False),
    "xlm_no_prefix_space": ({**XLM_CONFIG, "add_prefix_space": False}, True),
}
V3_NAMES = list(V3_LAYOUTS) + ["hf_saved"]
XLM_NAMES = list(XLM_LAYOUTS) + ["xlm_saved"]
NAMES = V3_NAMES + XLM_NAMES


def _lines() -> list[str]:
    lines = [line for k in sorted(topics) for line in topics[k].splitlines() if line.strip()][:300]
    return lines + ["café naïve façade — déjà vu 日本語のテキスト", "emoji 😀🎉 and 👍🏽!", "Invoice Total Date"] * 3


def _write_bpe(root: Path) -> dict[str, Path]:
    """LayoutLMv3-style directories around one byte-level BPE (`<mask>` last in vocab.json, as roberta-base)."""
    tok = roberta_bpe(_lines(), 600, post_processor=False)
    out = {}
    for name, (config, special_map, has_json) in V3_LAYOUTS.items():
        d = out[name] = root / name
        d.mkdir()
        tok.model.save(str(d))
        if has_json:
            tok.save(str(d / "tokenizer.json"))
        (d / "config.json").write_text(json.dumps({"model_type": "lilt"}))
        if config is not None:
            (d / "tokenizer_config.json").write_text(json.dumps(config))
        if special_map is not None:
            (d / "special_tokens_map.json").write_text(json.dumps(special_map))
    return out


def _write_unigram(root: Path) -> dict[str, Path]:
    """LayoutXLM-style directories around one Unigram with XLM-R's <s> <pad> </s> <unk> first, <mask> last."""
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(_lines(), trainer)
    spec = json.loads(tok.to_str())
    spec["model"]["vocab"].append(["<mask>", 0.0])
    out = {}
    for name, (config, mask_added) in XLM_LAYOUTS.items():
        t = Tokenizer.from_str(json.dumps(spec))
        if mask_added:
            t.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
        d = out[name] = root / name
        d.mkdir()
        t.save(str(d / "tokenizer.json"))
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lilt_tok")
    out = {**_write_bpe(root), **_write_unigram(root)}
    # What transformers 5.x's save_pretrained writes (tokenizer_config.json with added_tokens_decoder).
    for name, src in (("hf_saved", "lilt"), ("xlm_saved", "xlm")):
        transformers.AutoTokenizer.from_pretrained(str(out[src])).save_pretrained(str(root / name))
        out[name] = root / name
    return out


def _hf_class(name: str):
    return transformers.LayoutXLMTokenizer if name.startswith("xlm") else transformers.LayoutLMv3Tokenizer


@pytest.fixture(scope="module")
def loaded(dirs) -> dict[str, tuple]:
    """name -> (ours, transformers'); a directory declaring no class is read with LayoutLMv3Tokenizer, the class
    every LiLT checkpoint names (AutoTokenizer would pick RobertaTokenizer for model_type lilt)."""
    out = {}
    for name, d in dirs.items():
        hf = (transformers.AutoTokenizer if name != "no_config" else transformers.LayoutLMv3Tokenizer).from_pretrained(
            str(d))
        assert type(hf) is _hf_class(name), name
        out[name] = (load_tokenizer(d), hf)
        assert type(out[name][0]) is (LayoutXLMTokenizer if name.startswith("xlm") else LiltTokenizer)
    return out


def _boxes(words: list[str], seed: int = 0) -> list[list[int]]:
    return [[(7 * j + seed) % 900, (3 * j + seed) % 900, (7 * j + seed) % 900 + 50, (3 * j + seed) % 900 + 20]
            for j in range(len(words))]


def _labels(words: list[str], seed: int = 0) -> list[int]:
    return [(j + seed) % 7 for j in range(len(words))]


def _assert_same(got: dict, want, keys=("input_ids", "attention_mask", "bbox", "labels")) -> None:
    for key in keys:
        if key in want:
            assert got[key].dtype == np.int32, key
            np.testing.assert_array_equal(got[key], np.asarray(want[key]), err_msg=key)
    if "labels" in keys:
        assert ("labels" in got) == ("labels" in want)


def _hf_word_ids(want, pair: bool) -> np.ndarray:
    """transformers' word index of every document token, -1 elsewhere, [B, T]."""
    rows = [[w if w is not None and (not pair or s == 1) else -1 for w, s in zip(e.word_ids, e.sequence_ids)]
            for e in want.encodings]
    return np.array(rows)


@pytest.mark.parametrize("name", NAMES)
def test_single_examples(loaded, name):
    ours, hf = loaded[name]
    for i, words in enumerate(WORDS):
        boxes, labels = _boxes(words, i), _labels(words, i)
        _assert_same(ours(words, boxes=boxes), hf(words, boxes=boxes, return_tensors="np"))
        want = hf(words, boxes=boxes, word_labels=labels, return_tensors="np")
        got = ours(words, boxes=boxes, word_labels=labels, return_word_ids=True)
        _assert_same(got, want)
        np.testing.assert_array_equal(got["word_ids"], _hf_word_ids(want, pair=False))
        assert got["bbox"].shape == got["input_ids"].shape + (4,)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", [None, "left", "right"])
def test_batches(loaded, name, side):
    ours, hf = loaded[name]
    kwargs = {} if side is None else {"padding_side": side}
    boxes = [_boxes(w, i) for i, w in enumerate(WORDS)]
    labels = [_labels(w, i) for i, w in enumerate(WORDS)]
    want = hf(WORDS, boxes=boxes, padding=True, return_tensors="np", **kwargs)
    _assert_same(ours(WORDS, boxes=boxes, **kwargs), want)
    want = hf(WORDS, boxes=boxes, word_labels=labels, padding=True, return_tensors="np", **kwargs)
    got = ours(WORDS, boxes=boxes, word_labels=labels, return_word_ids=True, **kwargs)
    _assert_same(got, want)
    np.testing.assert_array_equal(got["word_ids"], _hf_word_ids(want, pair=False))
    # a batch of one is a batch (nested boxes), the same rows as the single example
    one = ours(WORDS[:1], boxes=boxes[:1], word_labels=labels[:1], **kwargs)
    _assert_same(one, ours(WORDS[0], boxes=boxes[0], word_labels=labels[0], **kwargs))


@pytest.mark.parametrize("name", NAMES)
def test_numpy_boxes_and_labels(loaded, name):
    ours, _ = loaded[name]
    words = WORDS[1]
    want = ours(words, boxes=_boxes(words), word_labels=_labels(words))
    for dtype in (np.int32, np.int64, np.uint16):
        got = ours(words, boxes=np.array(_boxes(words), dtype=dtype), word_labels=np.array(_labels(words)))
        _assert_same(got, want)
    batch = ours([words, words], boxes=np.array([_boxes(words)] * 2), word_labels=np.array([_labels(words)] * 2))
    _assert_same(batch, {k: np.concatenate([v, v]) for k, v in want.items()})


def _mask_question_labels(want, pad_label: int) -> np.ndarray:
    # transformers 5.x labels question tokens with the document's labels at the question words' indices (a bug,
    # IndexError for long questions); we give them pad_token_label like every other non-document token.
    labels = np.array(want["labels"])
    for row, enc in enumerate(want.encodings):
        for col, seq in enumerate(enc.sequence_ids):
            if seq == 0:
                labels[row, col] = pad_label
    return labels


@pytest.mark.parametrize("name", NAMES)
def test_question_and_words(loaded, name):
    ours, hf = loaded[name]
    pad_label = ours.layout.pad_token_label
    for i, question in enumerate(QUESTIONS):
        words = WORDS[1]
        boxes, labels = _boxes(words, i), _labels(words, i)
        want = hf(question, words, boxes=boxes, return_tensors="np")
        got = ours(question, words, boxes=boxes, return_word_ids=True)
        _assert_same(got, want)
        np.testing.assert_array_equal(got["word_ids"], _hf_word_ids(want, pair=True))
        want = hf(question, words, boxes=boxes, word_labels=labels, return_tensors="np")
        got = ours(question, words, boxes=boxes, word_labels=labels)
        _assert_same(got, want, keys=("input_ids", "bbox"))
        np.testing.assert_array_equal(got["labels"], _mask_question_labels(want, pad_label))
    # batch, both padding sides
    questions = QUESTIONS[:len(WORDS)] + ["q"] * max(0, len(WORDS) - len(QUESTIONS))
    boxes = [_boxes(w, i) for i, w in enumerate(WORDS)]
    for side in ("left", "right"):
        want = hf(questions, WORDS, boxes=boxes, padding=True, padding_side=side, return_tensors="np")
        _assert_same(ours(questions, WORDS, boxes=boxes, padding_side=side), want)


def test_question_longer_than_the_words(loaded):
    # transformers raises IndexError here (question words index the document's labels); we label the words only.
    ours, hf = loaded["lilt"]
    question, words = "how many words does this question have", ["two", "words"]
    with pytest.raises(IndexError):
        hf(question, words, boxes=_boxes(words), word_labels=[3, 4])
    got = ours(question, words, boxes=_boxes(words), word_labels=[3, 4], return_word_ids=True)
    want = hf(question, words, boxes=_boxes(words), return_tensors="np")
    _assert_same(got, want, keys=("input_ids", "bbox"))
    labelled = got["labels"][0] != -100
    assert got["labels"][0][labelled].tolist() == [3, 4]
    assert (got["word_ids"][0][labelled] == [0, 1]).all()


@pytest.mark.parametrize("name", ["lilt", "custom", "xlm", "xlm_custom"])
def test_truncation(loaded, name):
    ours, hf = loaded[name]
    words = WORDS[:4]
    boxes = [_boxes(w, i) for i, w in enumerate(words)]
    labels = [_labels(w, i) for i, w in enumerate(words)]
    questions = ["What is it?", "a much longer question with many words in it", "", "q"]
    cases = [(None, strategy) for strategy in (True, "longest_first", "only_first")]
    cases += [(questions, strategy) for strategy in (True, "only_first", "only_second")]
    for qs, strategy in cases:
        args = (words,) if qs is None else (qs, words)
        n_special = 2 if qs is None else 4
        for max_length in (1, 2, 3, 4, 5, 8, 13, 30, 200):
            kwargs = dict(boxes=boxes, word_labels=labels, truncation=strategy, max_length=max_length)
            # transformers indexes the labels with question word ids too: pad them so it cannot IndexError
            hf_kwargs = {**kwargs, "word_labels": [ls + [0] * 20 for ls in labels]} if qs else kwargs
            if max_length < n_special:  # transformers logs an error and does not truncate; we refuse
                with pytest.raises(ValueError, match="^max_length"):
                    ours(*args, **kwargs)
                continue
            try:
                want = hf(*args, padding=True, return_tensors="np", **hf_kwargs)
            except Exception as e:  # tokenizers: the side to cut is too short
                assert "Truncation error" in str(e)
                with pytest.raises(ValueError, match="^max_length"):
                    ours(*args, **kwargs)
                continue
            got = ours(*args, **kwargs)
            assert got["input_ids"].shape[1] <= max_length
            if qs is None:
                _assert_same(got, want)
            else:
                _assert_same(got, want, keys=("input_ids", "attention_mask", "bbox"))
                np.testing.assert_array_equal(got["labels"], _mask_question_labels(want, ours.layout.pad_token_label))
    # truncation is per call
    assert ours(words[1], boxes=boxes[1])["input_ids"].shape == hf(words[1], boxes=boxes[1], return_tensors="np")[
        "input_ids"].shape


@pytest.mark.parametrize("name", ["custom", "xlm_custom"])
def test_truncation_defaults_to_model_max_length(loaded, name):
    ours, hf = loaded[name]
    assert ours.model_max_length == hf.model_max_length == 12
    boxes = [_boxes(w, i) for i, w in enumerate(WORDS)]
    want = hf(WORDS, boxes=boxes, padding=True, truncation=True, return_tensors="np")
    _assert_same(ours(WORDS, boxes=boxes, truncation=True), want)
    assert ours(WORDS, boxes=boxes)["input_ids"].shape[1] > 12  # no truncation asked


@pytest.mark.parametrize("name", ["lilt", "xlm_custom"])
def test_padding_to_max_length(loaded, name):
    ours, hf = loaded[name]
    words = WORDS[:3]
    boxes = [_boxes(w, i) for i, w in enumerate(words)]
    labels = [_labels(w, i) for i, w in enumerate(words)]
    for side in ("left", "right"):
        for truncation in (False, True):
            kwargs = dict(boxes=boxes, word_labels=labels, max_length=60, truncation=truncation, padding_side=side)
            want = hf(words, padding="max_length", return_tensors="np", **kwargs)
            got = ours(words, padding="max_length", **kwargs)
            assert got["input_ids"].shape == (3, 60)
            _assert_same(got, want)
        want = hf(words, boxes=boxes, padding="max_length", max_length=9, truncation=True, padding_side=side,
                  return_tensors="np")
        _assert_same(ours(words, boxes=boxes, padding="max_length", max_length=9, truncation=True,
                          padding_side=side), want)
    with pytest.raises(ValueError, match="^max_length: example 1 has"):
        ours(words, boxes=boxes, padding="max_length", max_length=9)  # would need truncation


@pytest.mark.parametrize("name", ["lilt", "custom", "xlm"])
def test_without_special_tokens(loaded, name):
    ours, hf = loaded[name]
    boxes = [_boxes(w, i) for i, w in enumerate(WORDS)]
    labels = [_labels(w, i) for i, w in enumerate(WORDS)]
    want = hf(WORDS, boxes=boxes, word_labels=labels, add_special_tokens=False, padding=True, return_tensors="np")
    _assert_same(ours(WORDS, boxes=boxes, word_labels=labels, add_special_tokens=False), want)


@pytest.mark.parametrize("name", NAMES)
def test_settings_match(loaded, name):
    ours, hf = loaded[name]
    for attr in ("cls_token_box", "sep_token_box", "pad_token_box"):
        assert list(getattr(ours.layout, attr)) == list(getattr(hf, attr)), attr
    assert ours.layout.pad_token_label == hf.pad_token_label
    assert ours.layout.only_label_first_subword == hf.only_label_first_subword
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id", "mask_token_id",
                 "sep_token_id", "cls_token_id", "padding_side"):
        assert getattr(ours, attr) == getattr(hf, attr), attr
    assert ours.vocab_size == len(hf)
    assert ours.add_prefix_space == bool(hf.add_prefix_space)
    assert ours.model_max_length == (hf.model_max_length if hf.model_max_length < 1e15 else None)


@pytest.mark.parametrize("name", NAMES)
def test_decode(loaded, name):
    ours, hf = loaded[name]
    boxes = [_boxes(w, i) for i, w in enumerate(WORDS)]
    ids = ours(WORDS, boxes=boxes)["input_ids"]
    for skip in (True, False):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == hf.batch_decode(ids, skip_special_tokens=skip)


def test_normalize_box_matches_transformers():
    from transformers.models.layoutlmv3.image_processing_pil_layoutlmv3 import normalize_box as hf_normalize_box

    rng = np.random.default_rng(0)
    for width, height in ((612, 792), (595.28, 841.89), (1700, 2200), (1, 1), (3, 7)):
        for _ in range(200):
            x = np.sort(rng.uniform(0, width, 2))
            y = np.sort(rng.uniform(0, height, 2))
            box = [float(x[0]), float(y[0]), float(x[1]), float(y[1])]
            assert normalize_box(box, width, height) == hf_normalize_box(box, width, height)
        full = [0, 0, width, height]
        assert normalize_box(full, width, height) == hf_normalize_box(full, width, height) == [0, 0, 1000, 1000]
    assert normalize_box(np.array([10, 20, 30, 40]), np.int64(100), 200) == [100, 100, 300, 200]


def test_bad_inputs(loaded):
    tok = loaded["lilt"][0]
    b = [1, 2, 3, 4]
    cases = [
        (lambda: tok("a string", boxes=[b]), "text"),
        (lambda: tok(["a", 1], boxes=[b, b]), "text"),
        (lambda: tok([], boxes=[]), "text"),
        (lambda: tok(None, boxes=[b]), "text"),
        (lambda: tok([["a"], []], boxes=[[b], []]), r"text\[1\]"),
        (lambda: tok([["a"], "b"], boxes=[[b], b]), "text"),
        (lambda: tok(["a"]), "boxes"),
        (lambda: tok(["a", "b"], boxes=[b]), "boxes: got 1 boxes for 2 words"),
        (lambda: tok(["a"], boxes=b), r"boxes: got 4 boxes for 1 words, .*nest one level deeper"),
        (lambda: tok(["a"], boxes="abcd"), "boxes"),
        (lambda: tok(["a"], boxes=[[1, 2, 3]]), r"boxes\[0\]: expected \[x0, y0, x1, y1\] of ints in 0..1000"),
        (lambda: tok(["a"], boxes=[[1.0, 2, 3, 4]]), r"boxes\[0\]"),
        (lambda: tok(["a"], boxes=[[True, 2, 3, 4]]), r"boxes\[0\]"),
        (lambda: tok(["a"], boxes=[None]), r"boxes\[0\]"),
        (lambda: tok(["a", "b"], boxes=[b, [0, 0, 1001, 5]]), r"boxes\[1\]: coordinates must be in 0..1000"),
        (lambda: tok(["a"], boxes=[[-1, 0, 1, 5]]), r"boxes\[0\]: coordinates must be in 0..1000"),
        (lambda: tok(["a"], boxes=[[0, 0, 1, 10**30]]), r"boxes\[0\]: coordinates"),
        (lambda: tok(["a"], boxes=[[5, 0, 4, 5]]), r"boxes\[0\]: expected x0 <= x1 and y0 <= y1"),
        (lambda: tok(["a"], boxes=[[0, 5, 4, 4]]), r"boxes\[0\]: expected x0 <= x1"),
        (lambda: tok(["a", "b"], boxes=np.array([b, [0, 0, 1, 2000]])), r"boxes\[1\]: coordinates"),
        (lambda: tok(["a"], boxes=np.array([[0.0, 0, 1, 2]])), r"boxes\[0\]"),
        (lambda: tok(["a"], boxes=np.array([[0, 0, 1, 2]]), word_labels=np.array([1.5])), r"word_labels\[0\]"),
        (lambda: tok(["a"], boxes=[b], word_labels=[1, 2]), "word_labels: got 2 labels for 1 words"),
        (lambda: tok(["a"], boxes=[b], word_labels=[1.5]), r"word_labels\[0\]: expected an int label"),
        (lambda: tok(["a"], boxes=[b], word_labels=[True]), r"word_labels\[0\]"),
        (lambda: tok(["a"], boxes=[b], word_labels=[2**40]), r"word_labels\[0\]"),
        (lambda: tok(["a"], boxes=[b], word_labels=3), "word_labels"),
        (lambda: tok([["a"], ["b"]], boxes=[[b]]), "boxes: expected one entry per example"),
        (lambda: tok([["a"], ["b"]], boxes=[[b], [b, b]]), r"boxes\[1\]: got 2 boxes for 1 words"),
        (lambda: tok([["a"], ["b"]], boxes=[[b], [b]], word_labels=[[1]]), "word_labels: expected one entry"),
        (lambda: tok([["a"], ["b"]], boxes=[[b], [b]], word_labels=[[1], [1, 2]]), r"word_labels\[1\]"),
        (lambda: tok("q", "words as str", boxes=[b]), "text_pair"),
        (lambda: tok("q", [], boxes=[]), "text_pair: got no words"),
        (lambda: tok(["q1", "q2"], [["a"]], boxes=[[b]]), "text_pair: got 1 word lists for 2 questions"),
        (lambda: tok(["q1"], ["a"], boxes=[[b]]), "text_pair"),
        (lambda: tok([1], [["a"]], boxes=[[b]]), "text"),
        (lambda: tok([], [], boxes=[]), "text"),
        (lambda: tok(["q"], [["a", "b"]], boxes=[[b]]), r"boxes\[0\]: got 1 boxes for 2 words"),
        (lambda: tok(["a"], boxes=[b], padding="do_not_pad"), "padding"),
        (lambda: tok(["a"], boxes=[b], padding=True), "padding"),
        (lambda: tok(["a"], boxes=[b], padding_side="up"), "padding_side"),
        (lambda: tok(["a"], boxes=[b], max_length=5), "max_length"),
        (lambda: tok(["a"], boxes=[b], truncation="only_second", max_length=5), "truncation"),
        (lambda: tok(["a"], boxes=[b], truncation="yes"), "truncation"),
        (lambda: tok(["a"], boxes=[b], truncation=True, max_length=1), "max_length"),
        (lambda: tok("q", ["a"], boxes=[b], truncation=True, max_length=3), "max_length"),
        (lambda: tok(["a"], boxes=[b], truncation=True, max_length="8"), "max_length"),
        (lambda: tok("long question here", ["a"], boxes=[b], truncation="only_second", max_length=6), "max_length"),
        (lambda: tok(["a"], boxes=[b], add_special_tokens="yes"), "add_special_tokens"),
        (lambda: tok(["a"], boxes=[b], return_word_ids=1), "return_word_ids"),
    ]
    for call, arg in cases:
        with pytest.raises(ValueError, match=f"^{arg}"):
            call()
    no_max = loaded["no_config"][0]
    assert no_max.model_max_length is None
    with pytest.raises(ValueError, match="^max_length: expected an int"):
        no_max(["a"], boxes=[b], padding="max_length")


def test_normalize_box_errors():
    cases = [
        (lambda: normalize_box([0, 0, 1, 1], 0, 10), "width"),
        (lambda: normalize_box([0, 0, 1, 1], -5, 10), "width"),
        (lambda: normalize_box([0, 0, 1, 1], float("nan"), 10), "width"),
        (lambda: normalize_box([0, 0, 1, 1], True, 10), "width"),
        (lambda: normalize_box([0, 0, 1, 1], "100", 10), "width"),
        (lambda: normalize_box([0, 0, 1, 1], 10, float("inf")), "height"),
        (lambda: normalize_box([0, 0, 1], 10, 10), "box: expected 4 finite numbers"),
        (lambda: normalize_box("0011", 10, 10), "box"),
        (lambda: normalize_box([0, 0, float("nan"), 1], 10, 10), "box"),
        (lambda: normalize_box([0, 0, 11, 1], 10, 10), r"box: expected 0 <= x0 <= x1 <= width=10"),
        (lambda: normalize_box([0, -1, 1, 1], 10, 10), "box"),
        (lambda: normalize_box([0, 0, 1, 10.5], 10, 10), "box"),
        (lambda: normalize_box([5, 0, 4, 1], 10, 10), "box"),
    ]
    for call, arg in cases:
        with pytest.raises(ValueError, match=f"^{arg}"):
            call()


def test_loading_errors(dirs, tmp_path):
    cases = [
        (lambda: LiltTokenizer.from_pretrained(tmp_path / "missing"), "directory: .* is not a directory"),
        (lambda: LiltTokenizer.from_pretrained(tmp_path), "directory: neither tokenizer.json"),
        (lambda: LayoutXLMTokenizer.from_pretrained(tmp_path), "directory: no tokenizer.json"),
        (lambda: LiltTokenizer.from_pretrained(dirs["xlm"]), "directory: tokenizer_config.json declares "
                                                             "'LayoutXLMTokenizer'.*load it with LayoutXLMTokenizer"),
        (lambda: LayoutXLMTokenizer.from_pretrained(dirs["lilt_json"]), "directory: tokenizer_config.json declares"),
        (lambda: LayoutXLMTokenizer.from_pretrained(dirs["custom"]), "directory: tokenizer_config.json declares"),
    ]
    for field, value in (("tokenizer_class", "GPT2Tokenizer"), ("cls_token_box", [0, 0, 0]),
                         ("sep_token_box", [0, 0, 1001, 5]), ("pad_token_box", [3, 0, 2, 0]),
                         ("pad_token_label", "x"), ("only_label_first_subword", "yes")):
        d = tmp_path / field
        d.mkdir()
        for f in ("vocab.json", "merges.txt"):
            (d / f).write_bytes((dirs["lilt"] / f).read_bytes())
        (d / "tokenizer_config.json").write_text(json.dumps({**LILT_CONFIG, field: value}))
        expected = "declares 'GPT2Tokenizer'" if field == "tokenizer_class" else field
        cases.append((lambda d=d: LiltTokenizer.from_pretrained(d), f"directory: tokenizer_config.json.*{expected}"))
    spm = tmp_path / "spm"
    spm.mkdir()
    (spm / "sentencepiece.bpe.model").write_bytes(b"\x00")
    cases.append((lambda: LayoutXLMTokenizer.from_pretrained(spm), "directory: no tokenizer.json.*sentencepiece"))
    bpe_as_xlm = tmp_path / "bpe_as_xlm"
    bpe_as_xlm.mkdir()
    (bpe_as_xlm / "tokenizer.json").write_bytes((dirs["lilt_json"] / "tokenizer.json").read_bytes())
    cases.append((lambda: LayoutXLMTokenizer.from_pretrained(bpe_as_xlm), "directory: tokenizer.json holds a 'BPE'"))
    for call, pattern in cases:
        with pytest.raises(ValueError, match=f"^{pattern}"):
            call()


def test_load_tokenizer_dispatch(dirs, tmp_path):
    assert type(load_tokenizer(dirs["no_config"])) is LiltTokenizer
    assert type(load_tokenizer(dirs["lilt_json"])) is LiltTokenizer
    assert type(load_tokenizer(dirs["xlm_saved"])) is LayoutXLMTokenizer
    bare = tmp_path / "bare_unigram"
    bare.mkdir()
    (bare / "tokenizer.json").write_bytes((dirs["xlm"] / "tokenizer.json").read_bytes())
    assert type(load_tokenizer(bare)) is LayoutXLMTokenizer  # no declared class: the Unigram model decides
