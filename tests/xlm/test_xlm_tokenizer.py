"""xlm_jax.tokenizer.XLMTokenizer against transformers' XLMTokenizer on locally built files.

Vocabularies are learned here with `build_xlm_vocab` (lowercased and cased, six languages), plus the toy
vocabulary of transformers' own test, a transformers 5.x save_pretrained output, a 4.x-style directory
(special_tokens_map.json + added_tokens.json, left padding / truncation, clean-up) and a merges.txt with every
quirk transformers reads (count column, no final newline, repeated pair, blank line, merges whose pieces are
missing from a capped vocab.json). Every expected value is transformers' live output, except the toy case's
ids (from the reference) and `langs` (transformers has none; built from lang2id and transformers' lengths).

transformers 5.x ignores `lang` in `tokenize` / `__call__` (always English rules); the oracle for another
language calls its `_tokenize(text, lang=...)` through the normal pipeline (see `hf_lang`).
"""

import contextlib
import functools
import json
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import transformers  # the oracle every test compares against
from common.tokenization import docs_corpus
from xlm_jax.tokenizer import SPECIAL_TOKENS, XLMTokenizer, build_xlm_vocab

MULTI = {
    "en": ["Don't you think it's a \"great\" idea? I'm sure they'll agree -- e.g. Mr. Smith & Dr. Jones.",
           "Visit https://example.com/path?q=1&x=y#frag or mail john.doe@example.org (costs $1,000.50, 3.14%).",
           "Numbers: 12, 345.67, -8, 1e-5, 10:30, 2024-01-31; well-known self-driving cars.",
           "  multiple   spaces\tand\ttabs\nand\n\nnewlines  ",
           "Café naïve façade — déjà vu, Ångström, São Paulo, Zürich, ÉCOLE, İstanbul, Straße.",
           "Full-width：ｆｕｌｌ，１２３％！（ok）？「quote」《book》【tag】〈x〉～…━。next．end ；",
           "Control\x00chars\x07here\u200b zero\u200ewidth\ufeff bom \x1b[0m and soft\xadhyphen.",
           "curly ’quotes’ “double” «guillemets» ‚low‘ and emoji 😀🎉 or CJK 日本語 mixed.",
           "Pipes | brackets [a] {b} <c> at @ hash # tilde ~ caret ^ back\\slash",
           ""],
    "fr": ["L'homme qu'on a vu hier n'était pas là, n'est-ce pas ?",
           "Aujourd'hui, j'ai mangé des crêpes à Paris : c'était très bon !",
           "« Où est la bibliothèque ? » demanda-t-il à l'étudiante.",
           "M. Dupont et Mme Martin ont payé 12,50 € pour l'entrée."],
    "de": ["Ich möchte über die Straße gehen; die Größe ist ärgerlich!",
           "Der Fußgänger überquert die Brücke um 10.30 Uhr, z. B. am Montag.",
           "„Das ist schön“, sagte Frau Müller zu Herrn Weiß."],
    "ro": ["Ştiinţa şi ţara în România – bine, însă şi ţăranii ştiu.",
           "Știința și țara în România: mâine, încă o dată, Ăla și Îmi.",
           "Dl. Popescu a plătit 5,00 lei pentru pâine."],
    "el": ["Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
           "Καλημέρα! Πώς είσαι; Είμαι καλά, ευχαριστώ.",
           "Ο Σωκράτης είπε: «Ἓν οἶδα ὅτι οὐδὲν οἶδα»."],
    "ru": ["Съешь же ещё этих мягких французских булок, да выпей чаю.",
           "Москва — столица России; население ~12,6 млн человек.",
           "«Привет», — сказал он. Ёлка и т. д."],
}
LANG2ID = {lang: i for i, lang in enumerate(sorted(MULTI))}
SPECIAL_TEXTS = ["x<s></s><special1>y <pad> z<special10>", "a</s>b", "<unk>", " <s> ", "<s><s>word</s>",
                 "lower<special9>newer", "<S> </S> <special 1>", "low <special1> er  <special2>  lo w",
                 "x<special3>y <special3> z<special3> <special3>w <s><special3></s>", "lo wlo w <special2>",
                 "a <special3> b <spe cial <special9>"]
TEXTS = [t for texts in MULTI.values() for t in texts] + SPECIAL_TEXTS
PAIRS = [("Don't stop.", "L'homme est là."), ("", ""), ("one", ""), ("", "two words"),
         ("A much longer first sentence with many, many words in it.", "Short."),
         ("Tiny.", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο."),
         ("Ştiinţa şi ţara.", "<s> special </s> inside")]
TOY_VOCAB = ["l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "w</w>", "r</w>", "t</w>", "lo", "low", "er</w>",
             "low</w>", "lowest</w>", "newer</w>", "wider</w>", "<unk>"]


def _corpus() -> list[str]:
    """English docs text (a fixed ~80 k characters) + the multilingual sentences, tagged with their language."""
    docs = docs_corpus(stdlib_docstrings=False)
    english = [t[:4000] for t in docs[::4]]
    return [(t, "en") for t in english] + [(t, lang) for lang, texts in MULTI.items() for t in texts for _ in range(3)]


def _write_quirky_merges(src: Path, dst: Path) -> None:
    """src's files with a merges.txt as old fastBPE dumps look (counts, no final newline) plus a repeated pair
    and a blank line, and a vocab.json capped like XLM-17/100's (merged pieces missing)."""
    dst.mkdir()
    merges = (src / "merges.txt").read_text(encoding="utf-8").splitlines()
    lines = [f"{m} {1000 - i}" for i, m in enumerate(merges)]
    lines.insert(5, lines[40].rsplit(" ", 1)[0])  # pair 40 also at rank 5: its last rank (41) wins
    lines.insert(10, "")
    (dst / "merges.txt").write_text("\n".join(lines), encoding="utf-8")  # no final newline: last merge dropped
    vocab = json.loads((src / "vocab.json").read_text(encoding="utf-8"))
    vocab = {k: v for k, v in vocab.items() if v % 7 != 3 or v < len(SPECIAL_TOKENS)}
    (dst / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (dst / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "XLMTokenizer"}))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xlm_tok")
    corpus = _corpus()
    out = {"lower": build_xlm_vocab(corpus, 1200, root / "lower", lang2id=LANG2ID),
           "cased": build_xlm_vocab(corpus, 1200, root / "cased", lang2id=LANG2ID,
                                    do_lowercase_and_remove_accent=False)}
    toy = root / "toy"
    toy.mkdir()
    (toy / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(TOY_VOCAB)}))
    (toy / "merges.txt").write_text("\n".join(["l o 123", "lo w 1456", "e r</w> 1789", ""]))
    out["toy"] = toy
    transformers.XLMTokenizer.from_pretrained(str(out["lower"])).save_pretrained(str(root / "hf_saved"))
    out["hf_saved"] = root / "hf_saved"
    # 4.x-style: specials but <unk> missing from vocab.json (appended), added tokens, settings in the config.
    legacy = root / "legacy"
    legacy.mkdir()
    vocab = json.loads((out["cased"] / "vocab.json").read_text(encoding="utf-8"))
    vocab = {k: v - len(SPECIAL_TOKENS) for k, v in vocab.items() if v >= len(SPECIAL_TOKENS)}
    vocab["<unk>"] = len(vocab)  # transformers maps unknown pieces to vocab.json's <unk> (None without one)
    (legacy / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (legacy / "merges.txt").write_text((out["cased"] / "merges.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (legacy / "tokenizer_config.json").write_text(json.dumps({
        "do_lowercase_and_remove_accent": False, "id2lang": {str(i): lang for lang, i in LANG2ID.items()},
        "model_max_length": 12, "padding_side": "left", "truncation_side": "left",
        "clean_up_tokenization_spaces": True}))
    (legacy / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "</s>",
        "mask_token": "<special1>", "additional_special_tokens": ["<special0>", "<special1>", "<extra>"]}))
    (legacy / "added_tokens.json").write_text(json.dumps({"<new>": len(vocab), "<extra>": len(vocab) + 1}))
    out["legacy"] = legacy
    # added_tokens_decoder with strip / single_word flags (transformers' Trie split honours them).
    flags = root / "flags"
    flags.mkdir()
    for f in ("vocab.json", "merges.txt"):
        (flags / f).write_bytes((toy / f).read_bytes())
    decoder = {str(len(TOY_VOCAB) + i): {"content": t, "lstrip": False, "rstrip": False, "single_word": False,
                                         "normalized": False, "special": True}
               for i, t in enumerate(["<s>", "</s>", "<pad>", "<special1>", "<special2>", "<special3>"])}
    decoder[str(len(TOY_VOCAB) + 3)]["lstrip"] = True
    decoder[str(len(TOY_VOCAB) + 4)]["rstrip"] = True
    decoder[str(len(TOY_VOCAB) + 5)].update(single_word=True, lstrip=True)
    for i, content in ((40, "lo w"), (41, "<spe")):  # "<spe" begins "<special..": the longest match wins
        decoder[str(i)] = {"content": content, "lstrip": False, "rstrip": False, "single_word": False,
                           "normalized": True, "special": False}
    (flags / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder,
                                                             "extra_special_tokens": ["<special2>", "<special3>"]}))
    out["flags"] = flags
    _write_quirky_merges(out["lower"], root / "quirks")
    out["quirks"] = root / "quirks"
    return out


@pytest.fixture(scope="module")
def pair(dirs):
    """name -> (ours, transformers'), loaded once."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = (XLMTokenizer.from_pretrained(dirs[name]),
                           transformers.XLMTokenizer.from_pretrained(str(dirs[name])))
        return cache[name]
    return get


@contextlib.contextmanager
def hf_lang(hf, lang: str = "en", bypass_tokenizer: bool = False):
    """transformers' pipeline with `_tokenize(..., lang=lang)` (its tokenize / __call__ drop the lang keyword)."""
    hf._tokenize = functools.partial(type(hf)._tokenize, hf, lang=lang, bypass_tokenizer=bypass_tokenizer)
    try:
        yield hf
    finally:
        del hf._tokenize


def hf_batch(hf, texts, pairs=None, **kwargs) -> dict[str, np.ndarray]:
    return dict(hf(texts, pairs, return_tensors="np", **kwargs))


def assert_same(ours: dict, theirs: dict) -> None:
    for key in ("input_ids", "attention_mask"):
        assert ours[key].dtype == np.int32
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


def test_toy_vocab_reference(pair):
    tok, hf = pair("toy")
    assert tok.tokenize("lower") == ["low", "er</w>"] == hf.tokenize("lower")
    assert tok.convert_tokens_to_ids(tok.tokenize("lower") + ["<unk>"]) == [14, 15, 20]
    assert tok.encode("lower newest") == hf.encode("lower newest")
    assert tok.encode("lower", "newer") == hf.encode("lower", "newer")


@pytest.mark.parametrize("name", ["lower", "cased", "quirks", "hf_saved", "legacy"])
def test_corpus_ids_match_transformers(pair, name):
    tok, hf = pair(name)
    texts = [t for t, _ in _corpus()[::2]] + TEXTS
    for text in texts:
        assert tok.tokenize(text) == hf.tokenize(text), text[:60]
        assert tok.encode(text) == hf.encode(text), text[:60]


@pytest.mark.parametrize("name", ["lower", "cased"])
def test_languages_match_transformers(pair, name):
    tok, hf = pair(name)
    for lang, texts in MULTI.items():
        with hf_lang(hf, lang):
            for text in texts + MULTI["en"][:3]:
                assert tok.encode(text, lang=lang) == hf.encode(text), (lang, text)
            assert_same(tok(texts, lang=lang), hf_batch(hf, texts, padding=True))


def test_lang_changes_moses_rules(pair):
    tok, hf = pair("cased")
    text = "Mr. Ştefan and Dr. Ţuca"
    # Moses keeps "Mr." whole only with the English non-breaking prefixes; "ro" also drops the cedillas.
    assert tok.tokenize(text, lang="ro") != tok.tokenize(text, lang="en") == tok.tokenize(text)
    # transformers 5.x drops `lang` before `_tokenize`: it tokenizes as English whatever lang says.
    assert hf.tokenize(text, lang="ro") == hf.tokenize(text)


def test_bypass_tokenizer(pair):
    tok, hf = pair("lower")
    texts = ["l' homme don 't stop", "Already  TOKENIZED , text .", ""]
    with hf_lang(hf, "en", bypass_tokenizer=True):
        for text in texts:
            assert tok.encode(text, bypass_tokenizer=True) == hf.encode(text)


@pytest.mark.parametrize("name", ["lower", "cased"])
def test_pairs_match_transformers(pair, name):
    tok, hf = pair(name)
    for a, b in PAIRS:
        assert tok.encode(a, b) == hf.encode(a, b), (a, b)
        assert tok.encode(a, b, add_special_tokens=False) == hf.encode(a, b, add_special_tokens=False)
    assert_same(tok([a for a, _ in PAIRS], [b for _, b in PAIRS]),
                hf_batch(hf, [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True))
    single = tok("one", "")  # an empty pair is still a pair: <s> one </s> </s>
    np.testing.assert_array_equal(single["input_ids"][0], hf("one", "")["input_ids"])


BATCH_CASES = [
    dict(),
    dict(add_special_tokens=False),
    dict(padding_side="left"),
    dict(truncation=True, max_length=9),
    dict(truncation=True, max_length=3),
    dict(truncation="only_first", max_length=12),
    dict(padding="max_length", max_length=90),
    dict(padding="max_length", truncation=True, max_length=8, padding_side="left"),
    dict(truncation=True, max_length=4, add_special_tokens=False),
]


@pytest.mark.parametrize("kwargs", BATCH_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_batches_match_transformers(pair, kwargs):
    tok, hf = pair("lower")
    texts = MULTI["en"][:6] + SPECIAL_TEXTS[:2]
    hf_kwargs = {k: v for k, v in kwargs.items()}
    hf_kwargs["padding"] = kwargs.get("padding", True)
    assert_same(tok(texts, **kwargs), hf_batch(hf, texts, **hf_kwargs))
    assert_same(tok(texts[0], **kwargs), hf_batch(hf, texts[:1], **hf_kwargs))


PAIR_CASES = [dict(truncation=True, max_length=10), dict(truncation="longest_first", max_length=7),
              dict(truncation="only_second", max_length=26), dict(truncation="only_first", max_length=50),
              dict(truncation=True, max_length=11, padding="max_length", padding_side="left")]


@pytest.mark.parametrize("kwargs", PAIR_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_pair_truncation_matches_transformers(pair, kwargs):
    tok, hf = pair("cased")
    texts = ["A much longer first sentence with many, many words in it.", "Short.", "Two words", "x"]
    pairs = ["Short pair.", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.", "Two more words here.",
             "y"]
    hf_kwargs = dict(kwargs, padding=kwargs.get("padding", True))
    assert_same(tok(texts, pairs, **kwargs), hf_batch(hf, texts, pairs, **hf_kwargs))


def test_config_settings_match_transformers(pair):
    tok, hf = pair("legacy")  # left padding and truncation, model_max_length 12, clean-up on decode
    assert (tok.padding_side, tok.truncation_side, tok.model_max_length) == ("left", "left", 12)
    texts = MULTI["fr"][:3] + ["Court."]
    assert_same(tok(texts, truncation=True), hf_batch(hf, texts, padding=True, truncation=True))
    assert_same(tok(texts, texts[::-1], truncation=True),
                hf_batch(hf, texts, texts[::-1], padding=True, truncation=True))
    assert_same(tok(texts, padding="max_length", truncation=True),
                hf_batch(hf, texts, padding="max_length", truncation=True))


@pytest.mark.parametrize("name", ["lower", "cased", "toy", "hf_saved", "legacy", "quirks", "flags"])
def test_special_tokens_and_vocab_match_transformers(pair, name):
    tok, hf = pair(name)
    for attr in ("bos", "eos", "sep", "cls", "pad", "unk", "mask"):
        assert getattr(tok, f"{attr}_token_id") == getattr(hf, f"{attr}_token_id"), attr
    assert tok.all_special_ids == hf.all_special_ids
    assert tok.vocab_size == max(hf.get_vocab().values()) + 1
    assert tok.do_lowercase_and_remove_accent == hf.do_lowercase_and_remove_accent
    # legacy has only id2lang: transformers then has no lang2id, we derive it.
    assert tok.lang2id == (LANG2ID if name == "legacy" else hf.lang2id)
    if name in ("lower", "legacy"):
        assert tok.id2lang == {i: lang for lang, i in LANG2ID.items()}
    pieces = hf.convert_ids_to_tokens(list(range(tok.vocab_size + 2)))
    assert tok.convert_tokens_to_ids(pieces) == hf.convert_tokens_to_ids(pieces)
    for text in SPECIAL_TEXTS + ["<new> and <extra>", "x<extra>y"]:
        assert tok.tokenize(text) == hf.tokenize(text), text
        assert tok.encode(text) == hf.encode(text), text


def test_released_vocab_layout(dirs, pair):
    tok, _ = pair("lower")
    assert (tok.bos_token_id, tok.sep_token_id, tok.cls_token_id, tok.pad_token_id, tok.unk_token_id,
            tok.mask_token_id, tok.eos_token_id) == (0, 1, 1, 2, 3, 5, None)
    vocab = json.loads((dirs["lower"] / "vocab.json").read_text(encoding="utf-8"))
    assert [vocab[t] for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    merges = (dirs["lower"] / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in (m.split(" ") for m in merges))
    assert tok.vocab_size == len(vocab) <= 1200


@pytest.mark.parametrize("name", ["lower", "cased", "legacy", "toy", "flags"])
def test_decode_matches_transformers(pair, name):
    tok, hf = pair(name)
    sequences = [hf.encode(t) for t in TEXTS] + [hf.encode(a, b) for a, b in PAIRS]
    sequences.append(list(range(tok.vocab_size)))  # every id, holes of a capped vocab included
    for ids in sequences:
        for skip in (False, True):
            assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
    assert tok.batch_decode(sequences) == hf.batch_decode(sequences, skip_special_tokens=True)
    padded = tok(TEXTS[:4])["input_ids"]
    assert tok.batch_decode(padded, skip_special_tokens=False) == hf.batch_decode(padded.tolist())
    assert tok.decode(np.array(sequences[0])) == tok.decode(sequences[0])


def test_langs_output(pair):
    tok, hf = pair("lower")
    texts, pairs = ["Bonjour le monde.", "Salut."], ["Hello world, how are you?", "Hi."]
    out = tok(texts, pairs, lang="fr", pair_lang="en", return_langs=True)
    fr, en = LANG2ID["fr"], LANG2ID["en"]
    with hf_lang(hf, "fr"):
        first = [len(hf.encode(t)) for t in texts]  # <s> A </s>
    with hf_lang(hf, "en"):
        second = [len(hf.encode(p, add_special_tokens=False)) + 1 for p in pairs]  # B </s>
    length = out["input_ids"].shape[1]
    for row in range(2):
        expected = [fr] * first[row] + [en] * second[row]
        expected += [fr] * (length - len(expected))  # padding: the text's language
        np.testing.assert_array_equal(out["langs"][row], expected)
    assert out["langs"].dtype == np.int32
    per_text = tok(["Hallo Welt.", "Привет, мир."], lang=["de", "ru"], return_langs=True)
    np.testing.assert_array_equal(per_text["langs"][:, 0], [LANG2ID["de"], LANG2ID["ru"]])
    with hf_lang(hf, "ru"):
        np.testing.assert_array_equal(per_text["input_ids"][1][per_text["attention_mask"][1] == 1],
                                      hf.encode("Привет, мир."))


def test_bpe_cache_and_pickling_do_not_change_results(dirs, pair):
    tok, _ = pair("lower")
    uncached = XLMTokenizer.from_pretrained(dirs["lower"])
    uncached._bpe = uncached._bpe_word
    copied = pickle.loads(pickle.dumps(tok))  # e.g. sent to data-loader worker processes
    for text in TEXTS:
        assert tok.encode(text) == uncached.encode(text) == tok.encode(text) == copied.encode(text, lang="en")
    assert copied.encode(MULTI["ro"][0], lang="ro") == tok.encode(MULTI["ro"][0], lang="ro")


def test_strip_flags_reach_moses(pair):
    tok, hf = pair("flags")  # <special1> takes the spaces before it: French Moses then sees 'x."' not 'x."  '
    for lang in ("fr", "de"):
        with hf_lang(hf, lang):
            for text in ['x."  <special1> y', 'x…«  <special1><special2>  "z']:
                assert tok.tokenize(text, lang=lang) == hf.tokenize(text), (lang, text)
    # ... which tokenizes differently from the same text before <special2> (no lstrip).
    assert tok.tokenize('x."  <special1>', lang="fr")[:-1] != tok.tokenize('x."  <special2>', lang="fr")[:-1]


def _fake_segmenters(monkeypatch):
    """Stand-ins for rjieba / pythainlp / Mykytea (not dependencies) shared by both tokenizers via sys.modules."""
    monkeypatch.setitem(sys.modules, "rjieba", types.SimpleNamespace(cut=lambda text: list(text)))
    pairs_of_chars = lambda text: [text[i:i + 2] for i in range(0, len(text), 2)]  # noqa: E731, keeps spaces
    monkeypatch.setitem(sys.modules, "pythainlp", types.SimpleNamespace(word_tokenize=pairs_of_chars))

    class Kytea:
        def __init__(self, options):
            assert options.endswith("/local/share/kytea/model.bin")

        def getWS(self, text):
            return iter(text.replace("。", " 。 ").split())
    monkeypatch.setitem(sys.modules, "Mykytea", types.SimpleNamespace(Mykytea=Kytea))


@pytest.mark.parametrize("name", ["toy", "flags"])
def test_segmented_languages_match_transformers(dirs, monkeypatch, name):
    _fake_segmenters(monkeypatch)
    tok, hf = XLMTokenizer.from_pretrained(dirs[name]), transformers.XLMTokenizer.from_pretrained(str(dirs[name]))
    # The fake Thai segmenter keeps spaces, so the strip flags of "flags" show (Moses ignores whitespace).
    texts = {"zh": "北京欢迎你，１２３！low", "th": "สวัสดีครับ lower  world a <special1> b <special2>  c ",
             "ja": "東京へ行きます。ＬＯＷ er <special1>"}
    for lang, text in texts.items():
        with hf_lang(hf, lang):
            assert tok.tokenize(text, lang=lang) == hf.tokenize(text), lang


@pytest.mark.parametrize("lang,package", [("zh", "rjieba"), ("th", "pythainlp"), ("ja", "Mykytea")])
def test_segmented_language_without_package(pair, monkeypatch, lang, package):
    tok, _ = pair("toy")
    monkeypatch.setitem(sys.modules, "pythainlp.tokenize" if lang == "th" else package, None)
    monkeypatch.delitem(sys.modules, "pythainlp", raising=False)
    with pytest.raises(ImportError, match=f"lang='{lang}'.*{package}"):
        tok.tokenize("text", lang=lang)


def test_bad_input_errors(pair, dirs, tmp_path):
    tok, _ = pair("lower")
    toy, _ = pair("toy")
    with pytest.raises(ValueError, match=r"lang: 'xx' is not a language of this tokenizer, .*'de', 'el', 'en'"):
        tok("text", lang="xx")
    with pytest.raises(ValueError, match=r"pair_lang\[1\]: 'it' is not"):
        tok(["a", "b"], ["c", "d"], pair_lang=["fr", "it"])
    with pytest.raises(ValueError, match=r"lang: got 1 languages for 2 texts"):
        tok(["a", "b"], lang=["fr"])
    with pytest.raises(ValueError, match=r"lang: expected a language code \(str\), got int"):
        tok.tokenize("a", lang=3)
    with pytest.raises(ValueError, match=r"lang: return_langs=True needs the language"):
        tok("a", return_langs=True)
    with pytest.raises(ValueError, match=r"return_langs: this tokenizer has no lang2id"):
        toy("a", lang="en", return_langs=True)
    with pytest.raises(ValueError, match=r"ids: token id 99999 is out of range \[0, "):
        tok.decode([0, 99999])
    with pytest.raises(ValueError, match=r"ids: token id -1 is out of range"):
        tok.convert_ids_to_tokens([-1])
    with pytest.raises(ValueError, match=r"ids: expected a sequence of integer token ids"):
        tok.decode([1.5])
    with pytest.raises(ValueError, match=r"sequences: expected a batch of id sequences"):
        tok.batch_decode("abc")
    with pytest.raises(ValueError, match=r"texts: expected a str or a non-empty list of str, got list containing int"):
        tok(["a", 3])
    with pytest.raises(ValueError, match=r"texts: expected a str or a non-empty list of str"):
        tok([])
    with pytest.raises(ValueError, match=r"text: expected a str, got bytes"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match=r"text_pair: expected a str, got list"):
        tok.encode("a", ["b"])
    with pytest.raises(ValueError, match=r"text_pairs: got 1 texts for 2 texts"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match=r"text_pairs: expected a list of str \(texts is a list\)"):
        tok(["a", "b"], "c")
    with pytest.raises(ValueError, match=r"max_length: expected an int >= 3 \(room for the special tokens"):
        tok("a", "b", truncation=True, max_length=2)
    with pytest.raises(ValueError, match=r"max_length: expected an int >= 2"):
        tok("a", truncation=True, max_length=1)
    with pytest.raises(ValueError, match=r"max_length: got 5 without truncation or padding='max_length'"):
        tok("a", max_length=5)
    with pytest.raises(ValueError, match=r"max_length: expected an int >= 2 .*got None"):
        toy("a", truncation=True)  # no model_max_length to fall back on
    with pytest.raises(ValueError, match=r"max_length: sequence 0 has \d+ tokens, more than max_length=4"):
        tok(["a long enough sentence here"], padding="max_length", max_length=4)
    with pytest.raises(ValueError, match=r"max_length: 5 tokens cannot hold .* text_pairs tokens cut"):
        tok("many words in this first text", "b", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match=r"truncation: 'only_second' cuts text_pairs, and there are none"):
        tok("a", truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match=r"truncation: expected True, False or one of"):
        tok("a", truncation="longest", max_length=5)
    with pytest.raises(ValueError, match=r"padding: expected 'longest' or 'max_length'"):
        tok("a", padding=True)
    with pytest.raises(ValueError, match=r"padding_side: expected 'left' or 'right'"):
        tok("a", padding_side="middle")
    with pytest.raises(ValueError, match=r"add_special_tokens: expected True or False"):
        tok("a", add_special_tokens=1)
    with pytest.raises(ValueError, match=r"return_langs: expected True or False"):
        tok("a", return_langs="yes")


def test_loading_errors(dirs, tmp_path):
    with pytest.raises(ValueError, match=r"directory: .* is not a directory"):
        XLMTokenizer.from_pretrained(tmp_path / "absent")
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "vocab.json").write_text("{}")
    with pytest.raises(ValueError, match=r"directory: no merges.txt in .*XLM needs vocab.json and merges.txt"):
        XLMTokenizer.from_pretrained(partial)

    def variant(name, config=None, vocab=None):
        d = tmp_path / name
        d.mkdir()
        for f in ("vocab.json", "merges.txt"):
            (d / f).write_bytes((dirs["toy"] / f).read_bytes())
        if vocab is not None:
            (d / "vocab.json").write_text(json.dumps(vocab))
        if config is not None:
            (d / "tokenizer_config.json").write_text(json.dumps(config))
        return d
    with pytest.raises(ValueError, match=r"directory: tokenizer_config.json declares 'BertTokenizer', expected one "
                                         r"of \('XLMTokenizer',\)"):
        XLMTokenizer.from_pretrained(variant("bert", {"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(ValueError, match=r"directory: vocab.json .* is not a \{piece: id >= 0\} object"):
        XLMTokenizer.from_pretrained(variant("badvocab", vocab=["l", "o"]))
    with pytest.raises(ValueError, match=r"id2lang .* is not the inverse of lang2id"):
        XLMTokenizer.from_pretrained(variant("langs", {"lang2id": {"en": 0}, "id2lang": {"0": "fr"}}))
    with pytest.raises(ValueError, match=r"do_lowercase_and_remove_accent: expected true or false"):
        XLMTokenizer.from_pretrained(variant("lower", {"do_lowercase_and_remove_accent": "yes"}))
    with pytest.raises(ValueError, match=r"special_tokens: pad_token is null; XLM needs it"):
        XLMTokenizer.from_pretrained(variant("nopad", {"pad_token": None}))
    with pytest.raises(ValueError, match=r"vocab_size: expected an int > 14"):
        build_xlm_vocab(["text"], 10, tmp_path / "small")
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a str or a \(text, lang\) tuple of str"):
        build_xlm_vocab(["text", ("text", 3)], 100, tmp_path / "bad")


def test_build_xlm_vocab_gives_the_same_files_in_every_process(tmp_path):
    """The trainer numbers the alphabet in hash-map order, which changes between processes; the ids written must
    depend on the corpus alone."""
    import subprocess
    import sys

    script = ("import sys; from pydoc_data.topics import topics; from xlm_jax.tokenizer import build_xlm_vocab; "
              "build_xlm_vocab([l for k in sorted(topics) for l in topics[k].splitlines() if l.strip()][:300], 320, "
              "sys.argv[1])")
    files = []
    for run in range(3):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / str(run))], check=True)
        out = tmp_path / str(run)
        files.append(((out / "vocab.json").read_bytes(), (out / "merges.txt").read_bytes()))
    assert files[0] == files[1] == files[2]
