"""llama_jax.tokenizer.LlamaTokenizer against transformers' AutoTokenizer on locally built tokenizer files.

Tiny BPE models are trained here with the `tokenizers` library (no hub), written as Llama-2-style
(SentencePiece BPE, byte fallback, legacy normalizer) and Llama-3-style (byte-level BPE) repos in several
tokenizer_config.json variants, and every result is compared with transformers' live output.
"""

import copy
import json
from pydoc_data.topics import topics

import numpy as np
import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

import transformers  # the oracle every test compares against
from llama_jax.tokenizer import LlamaTokenizer

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
]
SPM_SPECIALS = ["<unk>", "<s>", "</s>"]

TEXTS = [
    "Hello this is a test",
    "",
    " ",
    "   ",
    " hello",
    "  hello",
    "hello ",
    "  leading and trailing  ",
    "multiple   spaces\tand\ttabs",
    "line one\nline two\n\nline four\n",
    "\n",
    "hello</s>world",
    "<s>hello",
    "a <s> b </s> c",
    "<unk> is literal text here",
    "café naïve façade — déjà vu",
    "日本語のテキスト",
    "emoji 😀🎉 and 👍🏽!",
    "zero\u200bwidth",
    "Numbers 1234567 and 3.14159",
    "don't you're I'm they'll",
    "def f(x):\n    return x ** 2  # comment",
    "▁already▁metaspace",
    "<|begin_of_text|>hi<|eot_id|> there",
    "[INST] hi <pad> there [/INST]",
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
]


def _corpus() -> list[str]:
    lines = [line.strip() for text in topics.values() for line in text.splitlines() if line.strip()]
    # A few accented lines so that some non-ASCII letters are in the vocabulary and others fall back to bytes.
    return lines[:400] + ["café déjà vu naïve façade"] * 5


def _added(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


@pytest.fixture(scope="module")
def spm_model():
    """Vocab and merges of a tiny SentencePiece-style BPE: specials 0-2, byte tokens 3-258, then pieces."""
    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer_tok.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=600, limit_alphabet=70,
                                                                  show_progress=False))
    trained = json.loads(trainer_tok.to_str())["model"]
    vocab = {t: i for i, t in enumerate(SPM_SPECIALS + [f"<0x{b:02X}>" for b in range(256)])}
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    return vocab, [tuple(m) for m in trained["merges"]]


@pytest.fixture(scope="module")
def byte_level_model():
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in LLAMA3_SPECIALS])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A:0",
                                      pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tok.to_str()


def _write_spm(directory, spm_model, config, special_map=None, post_processor=True, extra_added=()):
    vocab, merges = spm_model
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    # The legacy pipeline of real Llama-2 tokenizer.json files, which transformers 5.x rebuilds.
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPM_SPECIALS])
    tok.add_tokens(list(extra_added))
    if post_processor:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (directory / "special_tokens_map.json").write_text(json.dumps(special_map))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                                       "vocab_size": len(vocab)}))


def _write_byte_level(directory, byte_level_model, config):
    ids = {t["content"]: t["id"] for t in json.loads(byte_level_model)["added_tokens"]}
    config["added_tokens_decoder"] = {str(ids[t]): _added(t) for t in LLAMA3_SPECIALS}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.json").write_text(byte_level_model)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                                       "vocab_size": len(ids)}))


def _token_dict(content):
    return {"__type": "AddedToken", **{k: v for k, v in _added(content).items() if k != "special"}}


LLAMA2_CONFIG = {  # as in meta-llama/Llama-2-7b-hf (AddedToken dicts, no added_tokens_decoder)
    "add_bos_token": True, "add_eos_token": False, "bos_token": _token_dict("<s>"),
    "clean_up_tokenization_spaces": False, "eos_token": _token_dict("</s>"), "legacy": False,
    "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer", "unk_token": _token_dict("<unk>"),
}
LLAMA2_DECODER_CONFIG = {  # a newer save: added_tokens_decoder, strings, no padding_side, no legacy
    "added_tokens_decoder": {str(i): _added(t) for i, t in enumerate(SPM_SPECIALS)},
    "add_bos_token": True, "add_eos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
    "clean_up_tokenization_spaces": False, "model_max_length": 2048, "tokenizer_class": "LlamaTokenizerFast",
}
LLAMA3_CONFIG = {  # as in meta-llama/Meta-Llama-3-8B
    "added_tokens_decoder": None,  # filled in with the trained model's ids
    "bos_token": "<|begin_of_text|>", "clean_up_tokenization_spaces": True, "eos_token": "<|end_of_text|>",
    "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 1000000000000000019884624838656,
    "tokenizer_class": "PreTrainedTokenizerFast",
}

# name -> (style, config, extra writer options, expected kind)
VARIANTS = {
    "llama2": ("spm", LLAMA2_CONFIG, {"special_map": {"bos_token": _token_dict("<s>"), "eos_token": _token_dict("</s>"),
                                                      "unk_token": _token_dict("<unk>")}}, "sentencepiece"),
    "llama2_decoder_cfg": ("spm", LLAMA2_DECODER_CONFIG, {}, "sentencepiece"),
    "llama2_legacy": ("spm", {**LLAMA2_CONFIG, "legacy": True}, {}, "sentencepiece"),
    "llama2_no_prefix_space": ("spm", {**LLAMA2_CONFIG, "add_prefix_space": False}, {}, "sentencepiece"),
    "llama2_pad_no_template": ("spm", {**LLAMA2_DECODER_CONFIG, "pad_token": "<pad>", "padding_side": "left",
                                       "additional_special_tokens": ["<extra_0>"]},
                               {"post_processor": False, "extra_added": ["[INST]"]}, "sentencepiece"),
    "llama2_minimal_config": ("spm", {"tokenizer_class": "LlamaTokenizer"}, {}, "sentencepiece"),
    "llama2_special_map": ("spm", {"tokenizer_class": "LlamaTokenizer", "pad_token": None},
                           {"special_map": {"pad_token": _token_dict("<unk>"), "eos_token": "</s>"}}, "sentencepiece"),
    "llama2_named_added": ("spm", {**LLAMA2_CONFIG, "pad_token": "<pad>"}, {"extra_added": ["<pad>", "[INST]"]},
                           "sentencepiece"),
    "llama2_declared_fast": ("spm", {**LLAMA2_CONFIG, "tokenizer_class": "PreTrainedTokenizerFast"}, {}, "as_is"),
    "llama2_no_class": ("spm", {k: v for k, v in LLAMA2_CONFIG.items() if k != "tokenizer_class"}, {}, "as_is"),
    "llama2_no_config": ("spm", None, {}, "as_is"),
    "llama3": ("byte_level", LLAMA3_CONFIG, {}, "byte_level"),
    "llama3_instruct_llama_class": ("byte_level", {**LLAMA3_CONFIG, "eos_token": "<|eot_id|>",
                                                   "tokenizer_class": "LlamaTokenizer", "padding_side": "right"},
                                    {}, "byte_level"),
}


@pytest.fixture(scope="module")
def load(tmp_path_factory, spm_model, byte_level_model):
    """load(variant) -> (ours, transformers', variant, directory); each variant is written and loaded once."""
    cache = {}

    def _load(name):
        if name not in cache:
            style, config, options, _ = VARIANTS[name]
            directory = tmp_path_factory.mktemp(name)
            if style == "spm":
                _write_spm(directory, spm_model, copy.deepcopy(config), **options)
            else:
                _write_byte_level(directory, byte_level_model, copy.deepcopy(config))
            ours = LlamaTokenizer.from_pretrained(directory)
            theirs = transformers.AutoTokenizer.from_pretrained(str(directory))
            cache[name] = (ours, theirs, name, directory)
        return cache[name]

    return _load


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request, load):
    return load(request.param)


def _with_pad(theirs):
    """transformers refuses to pad without a pad token; ours falls back to eos, then id 0: give theirs the same."""
    if theirs.pad_token is not None:
        return theirs
    theirs = copy.deepcopy(theirs)
    theirs.pad_token = theirs.eos_token if theirs.eos_token is not None else theirs.convert_ids_to_tokens(0)
    return theirs


def test_kind_detection(pair):
    ours, _, name, _ = pair
    assert ours.kind == VARIANTS[name][3]


def test_special_ids_and_vocab_size(pair):
    ours, theirs, *_ = pair
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (
        theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id)
    assert ours.vocab_size == len(theirs)


def test_backend_pipeline_matches(pair):
    ours, theirs, *_ = pair
    mine, hf = json.loads(ours._tokenizer.to_str()), json.loads(theirs.backend_tokenizer.to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "model", "added_tokens"):
        assert mine[key] == hf[key], key


@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_encode_matches(pair, add_special_tokens):
    ours, theirs, *_ = pair
    for text in TEXTS:
        expected = theirs.encode(text, add_special_tokens=add_special_tokens)
        assert ours.encode(text, add_special_tokens=add_special_tokens) == expected, repr(text)


def test_rebuild_differs_from_raw_file(load):
    """Texts where the file's own legacy pipeline and transformers 5.x disagree are really exercised."""
    ours, theirs, _, directory = load("llama2")
    raw = Tokenizer.from_file(str(directory / "tokenizer.json"))
    differing = [t for t in ("hello</s>world", " hello") if raw.encode(t).ids != theirs.encode(t)]
    assert differing == ["hello</s>world", " hello"]
    assert [ours.encode(t) for t in differing] == [theirs.encode(t) for t in differing]


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("add_special_tokens", [True, False])
def test_batch_padding_matches(pair, padding_side, add_special_tokens):
    ours, theirs, *_ = pair
    theirs = _with_pad(theirs)
    got = ours(TEXTS, add_special_tokens=add_special_tokens, padding_side=padding_side)
    want = theirs(TEXTS, add_special_tokens=add_special_tokens, padding=True, padding_side=padding_side,
                  return_tensors="np")
    for key in ("input_ids", "attention_mask"):
        assert got[key].dtype == np.int32 and got[key].shape == want[key].shape
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_default_padding_side(pair):
    ours, theirs, name, _ = pair
    config = VARIANTS[name][1] or {}
    if ours.kind == "sentencepiece" or "padding_side" in config:
        assert ours.padding_side == theirs.padding_side
    else:  # transformers' generic backend pads right by default; Llama generation wants left.
        assert ours.padding_side == "left"
    got = ours(["a", "a longer text here"])
    want = _with_pad(theirs)(["a", "a longer text here"], padding=True, padding_side=ours.padding_side,
                             return_tensors="np")
    np.testing.assert_array_equal(got["input_ids"], want["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])


def test_single_string_call(pair):
    ours, theirs, *_ = pair
    out = ours("hello world")
    assert out["input_ids"].shape == (1, len(theirs.encode("hello world")))
    assert out["input_ids"][0].tolist() == theirs.encode("hello world")
    assert out["attention_mask"].tolist() == [[1] * out["input_ids"].shape[1]]


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_decode_matches(pair, skip_special_tokens):
    ours, theirs, *_ = pair
    sequences = [theirs.encode(t) for t in TEXTS]
    for ids in sequences:
        assert ours.decode(ids, skip_special_tokens=skip_special_tokens) == theirs.decode(
            ids, skip_special_tokens=skip_special_tokens), ids
    assert ours.batch_decode(sequences, skip_special_tokens=skip_special_tokens) == theirs.batch_decode(
        sequences, skip_special_tokens=skip_special_tokens)
    every_id = list(range(ours.vocab_size))
    assert ours.decode(every_id, skip_special_tokens=skip_special_tokens) == theirs.decode(
        every_id, skip_special_tokens=skip_special_tokens)


def test_decode_accepts_arrays(pair):
    ours, theirs, *_ = pair
    batch = ours(TEXTS[:4], padding_side="right")
    decoded = ours.batch_decode(batch["input_ids"])
    assert decoded == theirs.batch_decode(batch["input_ids"].tolist(), skip_special_tokens=True)
    assert ours.decode(np.asarray(theirs.encode("hello world"), dtype=np.int64)) == theirs.decode(
        theirs.encode("hello world"), skip_special_tokens=True)
    assert ours.decode(5) == theirs.decode([5], skip_special_tokens=True)


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if v[0] == "byte_level"])
def test_byte_level_round_trip(load, name):
    ours = load(name)[0]
    for text in TEXTS:
        assert ours.decode(ours.encode(text), skip_special_tokens=False) == "<|begin_of_text|>" + text


# ---------------------------------------------------------------------------------------------- bad inputs

@pytest.fixture(scope="module")
def llama2(load):
    return load("llama2")[0]


@pytest.mark.parametrize("texts", [123, None, [1, 2], ["ok", 3], ("ok", b"bytes"), {"a": 1}])
def test_call_rejects_non_text(llama2, texts):
    with pytest.raises(ValueError, match="texts"):
        llama2(texts)


def test_call_rejects_empty_list(llama2):
    with pytest.raises(ValueError, match="texts.*empty"):
        llama2([])


@pytest.mark.parametrize("side", ["middle", "LEFT", 0])
def test_call_rejects_padding_side(llama2, side):
    with pytest.raises(ValueError, match="padding_side"):
        llama2(["a", "b c"], padding_side=side)


def test_encode_rejects_non_str(llama2):
    with pytest.raises(ValueError, match="text"):
        llama2.encode(["a list"])


@pytest.mark.parametrize("bad_id", [-1, "vocab_size", 10**9])
def test_decode_rejects_out_of_range(llama2, bad_id):
    bad_id = llama2.vocab_size if bad_id == "vocab_size" else bad_id
    with pytest.raises(ValueError, match=rf"ids: token id {bad_id} is out of range \[0, {llama2.vocab_size}\)"):
        llama2.decode([1, bad_id])
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        llama2.batch_decode([[1, 2], [bad_id]])


@pytest.mark.parametrize("ids", [[1.5, 2.0], "hello", [[[1]]]])
def test_decode_rejects_non_integer_ids(llama2, ids):
    with pytest.raises(ValueError, match="ids"):
        llama2.decode(ids)


def test_batch_decode_rejects_non_batch(llama2):
    with pytest.raises(ValueError, match="sequences"):
        llama2.batch_decode("hello")


def test_from_pretrained_requires_tokenizer_json(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        LlamaTokenizer.from_pretrained(tmp_path)


def test_from_pretrained_rejects_non_bpe(tmp_path):
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="directory.*WordLevel"):
        LlamaTokenizer.from_pretrained(tmp_path)
