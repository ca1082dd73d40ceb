"""XLM's tokenizer: Moses pre-tokenisation (sacremoses) + BPE whose word-final pieces end in "</w>".

The oracle is transformers 5.23's `XLMTokenizer` (a Python tokenizer; no fast version exists). Same steps:

* the text is first split on the added / special tokens (`<s>`, `</s>`, `<pad>`, `<unk>`, `<special0..9>`, and
  any `added_tokens_decoder` entry, honouring their lstrip / rstrip / single_word flags), which are kept whole;
* every other piece goes through the Moses pipeline for `lang`: transformers' full-width punctuation table,
  `MosesPunctNormalizer(lang)`, removal of Unicode category C* characters, Romanian diacritic removal for "ro",
  `MosesTokenizer(lang).tokenize(escape=False)`; zh / th / ja use rjieba / pythainlp / KyTea as transformers does
  (they are not dependencies: without them these languages raise ImportError naming the package);
* with do_lowercase_and_remove_accent (the default): lowercase, NFD, drop combining marks (category Mn);
* BPE per word with transformers' algorithm (merge every occurrence of the lowest-ranked pair, left to right;
  the last symbol carries "</w>"); merges.txt is read as transformers reads it (only the first two fields of a
  line count, the text after the last newline is dropped, a repeated pair keeps its last rank);
* pieces -> ids through the added tokens, then vocab.json, else `<unk>`; `<s> A </s>` and `<s> A </s> B </s>`
  (an empty text_pair still makes a pair); no token_type_ids, as in transformers 5.x.

The BPE runs in Python, not in `tokenizers`' Rust BPE: the Rust model gave the same pieces on a realistic corpus
once merges with out-of-vocabulary pieces got placeholder ids, but it applies a newly formed pair of lower rank
before the remaining pairs of the current rank (merges ["ab a", "a b"]: "ababx" -> aba b x</w> in Rust, ab ab
x</w> in transformers), and it was hardly faster: 0.12 s vs 0.15 s for the 100 k words of CPython's pydoc topics,
whose Moses step alone takes 0.58 s. The Python BPE keeps a bounded per-instance cache of words.

Departures from transformers, on purpose:
* `lang` (and `bypass_tokenizer`) are applied: transformers 5.x drops the keyword arguments of `tokenize` /
  `__call__` before `_tokenize`, so it always tokenizes with the English Moses rules (`lang=None` here = "en");
  a lang missing from lang2id raises ValueError listing the known ones (transformers logs an error);
* bad input raises ValueError naming the argument: ids past the vocabulary (transformers decodes them to
  `<unk>`), max_length that cannot hold the special tokens or that the chosen side cannot absorb (transformers
  returns a sequence longer than max_length), max_length without truncation or padding="max_length";
* `decode` skips special tokens unless told otherwise (the zoo's convention; transformers' default is False);
* `vocab_size` is the largest id + 1, added tokens included (transformers' is len(vocab.json)), `id2lang` has
  int keys (transformers keeps tokenizer_config.json's string keys) and lang2id is derived from id2lang when
  only that is given, and an unknown piece maps to the `<unk>` id even when `<unk>` is an added token rather
  than a vocab.json entry (transformers gives None then).
"""

from __future__ import annotations

import collections
import functools
import heapq
import importlib
import json
import os
import re
import sys
import unicodedata
from numbers import Integral
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import AddedToken

from common.extras import require
from common.files import read_json, read_text
from common.tokenization import (TokenizerBase, as_added_token, check_padding_side, describe, pad_rows,
                                 read_added_tokens, read_json_if_present)

XLM_CLASSES = ("XLMTokenizer",)
END_OF_WORD = "</w>"
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
SEGMENTER_PACKAGES = {"zh": "rjieba", "th": "pythainlp", "ja": "Mykytea (KyTea)"}
# The special tokens in the order of the released XLM vocabularies (ids 0..13; mask = <special1> = 5).
SPECIAL_TOKENS = ("<s>", "</s>", "<pad>", "<unk>") + tuple(f"<special{i}>" for i in range(10))
_DEFAULT_TOKENS = {"bos_token": "<s>", "eos_token": None, "unk_token": "<unk>", "sep_token": "</s>",
                   "pad_token": "<pad>", "cls_token": "</s>", "mask_token": "<special1>"}  # transformers' order
_DEFAULT_EXTRA = [f"<special{i}>" for i in range(10)]

# transformers' port of Moses' replace-unicode-punctuation.perl. The two rules that also eat the following spaces
# run first; the rest map single characters to ASCII that no other rule reads, so one translate() is equivalent.
_PUNCT_REGEXES = ((re.compile(r"。\s*"), ". "), (re.compile(r"．\s*"), ". "))
_PUNCT_TABLE = str.maketrans({
    "，": ",", "、": ",", "”": '"', "“": '"', "∶": ":", "：": ":", "？": "?", "《": '"', "》": '"', "）": ")",
    "！": "!", "（": "(", "；": ";", "」": '"', "「": '"', "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<",
    "〉": ">", "【": "[", "】": "]", "％": "%", **{chr(0xFF10 + d): str(d) for d in range(10)}})
# Sennrich's WMT16 Romanian normalisation + diacritic removal (cedilla and comma forms of s / t, ă, â, î).
_ROMANIAN_TABLE = str.maketrans("\u015e\u015f\u0162\u0163\u0218\u0219\u021a\u021b"
                                "\u0102\u0103\u00c2\u00e2\u00ce\u00ee", "SsTtSsTtAaAaIi")


def replace_unicode_punct(text: str) -> str:
    """Full-width punctuation and digits -> ASCII, as transformers' XLM `replace_unicode_punct`."""
    for pattern, repl in _PUNCT_REGEXES:
        text = pattern.sub(repl, text)
    return text.translate(_PUNCT_TABLE)


def remove_non_printing_char(text: str) -> str:
    """Drop every character of Unicode category C* (controls, format characters, unassigned, ...)."""
    return "".join(c for c in text if not unicodedata.category(c).startswith("C"))


def lowercase_and_remove_accent(words: list[str]) -> list[str]:
    """XLM's lowercase_and_remove_accent.py over words, as transformers runs it: join with spaces, lowercase,
    NFD, drop combining marks (Mn), lowercase again, split on " " (so a word may come back empty or split)."""
    text = unicodedata.normalize("NFD", " ".join(words).lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn").lower().split(" ")


class MosesPreTokenizer:
    """Text -> words (before BPE), as transformers' `XLMTokenizer._tokenize` makes them; Moses objects are
    cached per language."""

    def __init__(self, do_lowercase_and_remove_accent: bool = True):
        require("sacremoses", "xlm", "XLMTokenizer")  # fail at construction, not at the first text
        self.do_lowercase_and_remove_accent = bool(do_lowercase_and_remove_accent)
        self._normalizers: dict[str, object] = {}
        self._tokenizers: dict[str, object] = {}
        self._kytea = None

    def __getstate__(self) -> dict:  # the Moses objects and the KyTea handle are rebuilt on demand
        return {"do_lowercase_and_remove_accent": self.do_lowercase_and_remove_accent}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __call__(self, text: str, lang: str = "en", bypass_tokenizer: bool = False) -> list[str]:
        """Words of `text` in language `lang`; with bypass_tokenizer, `text.split()` (no Moses, no lowercasing:
        for text tokenized and lowercased beforehand, as XLM's own preprocessing scripts do)."""
        if bypass_tokenizer:
            return text.split()
        if lang not in SEGMENTER_PACKAGES:
            text = self.normalize(text, lang)
            if lang == "ro":  # the xlm-mlm-enro-1024 preprocessing (transformers applies it to every "ro" text)
                text = text.translate(_ROMANIAN_TABLE)
            words = _moses(self._tokenizers, "MosesTokenizer", lang).tokenize(text, return_str=False, escape=False)
        elif lang == "zh":
            words = self.normalize(" ".join(_segmenter("zh").cut(text)), lang).split()
        elif lang == "th":
            words = _segmenter("th")(self.normalize(text, lang))
        else:
            if self._kytea is None:
                model = f"-model {os.path.expanduser('~')}/local/share/kytea/model.bin"  # transformers' path
                self._kytea = _segmenter("ja").Mykytea(model)
            words = list(self._kytea.getWS(self.normalize(text, lang)))
        return lowercase_and_remove_accent(words) if self.do_lowercase_and_remove_accent else words

    def normalize(self, text: str, lang: str) -> str:
        """transformers' `moses_pipeline`: punctuation table, MosesPunctNormalizer(lang), drop category C*."""
        normalizer = _moses(self._normalizers, "MosesPunctNormalizer", lang)
        return remove_non_printing_char(normalizer.normalize(replace_unicode_punct(text)))


def _moses(cache: dict, name: str, lang: str):
    """sacremoses' `name` class for `lang`, made once per language and kept in `cache`."""
    if lang not in cache:
        cache[lang] = getattr(require("sacremoses", "xlm", "XLMTokenizer"), name)(lang=lang)
    return cache[lang]


def _segmenter(lang: str):
    """The word segmenter transformers uses for zh (rjieba module), th (pythainlp's word_tokenize) or ja
    (Mykytea module), looked up as transformers does (an already imported module is taken from sys.modules)."""
    try:
        if lang == "th":
            if "pythainlp" in sys.modules:
                return sys.modules["pythainlp"].word_tokenize
            from pythainlp.tokenize import word_tokenize
            return word_tokenize
        return importlib.import_module("rjieba" if lang == "zh" else "Mykytea")
    except (AttributeError, ImportError) as e:
        raise ImportError(f"lang={lang!r}: XLM segments this language with {SEGMENTER_PACKAGES[lang]}, which is not "
                          f"installed ({e}); install it, or tokenize beforehand and pass bypass_tokenizer=True") from e


class XLMTokenizer(TokenizerBase):
    """transformers' XLMTokenizer: Moses words -> "</w>" BPE pieces -> ids (see the module docstring).

    Attributes:
        bos_token_id, sep_token_id, cls_token_id, pad_token_id, unk_token_id, mask_token_id, eos_token_id: ids of
            `<s>`, `</s>`, `</s>`, `<pad>`, `<unk>`, `<special1>` and None by default (0, 1, 1, 2, 3, 5 in the
            released vocabularies).
        special_tokens: {"bos_token": "<s>", ...}, the text of each named special token (None when unset).
        all_special_ids: ids of the named and extra (`<special0..9>`) special tokens; `decode` skips these.
        vocab_size: largest id + 1, added tokens included (the model's embedding must have at least this many rows).
        lang2id, id2lang: {"en": 0, ...} and {0: "en", ...} from tokenizer_config.json, or None (monolingual).
        do_lowercase_and_remove_accent: lowercase and strip accents after Moses (True for the released models
            but XLM-17 / XLM-100).
        padding_side, truncation_side: "right" unless tokenizer_config.json says otherwise. Keep right padding
            for XLM: its model derives the mask from `lengths` assuming right padding when no mask is given.
        model_max_length: tokenizer_config.json's, or None; the default max_length of truncation.
    """

    def __init__(self, vocab: dict[str, int], merges: Iterable[tuple[str, ...]], *,
                 lang2id: dict[str, int] | None = None, do_lowercase_and_remove_accent: bool = True,
                 special_tokens: dict[str, str | None] | None = None, extra_special_tokens: list[str] | None = None,
                 added_tokens: dict[int, AddedToken] | None = None, padding_side: str = "right",
                 truncation_side: str = "right", model_max_length: int | None = None,
                 clean_up_tokenization_spaces: bool = False, split_special_tokens: bool = False,
                 bpe_cache_size: int = 1 << 16):
        """vocab: piece -> id; merges: pairs in rank order (entries that are not pairs hold a rank but never
        match, as blank lines of merges.txt do in transformers); special_tokens overrides the XLM defaults by
        name; added_tokens: id -> AddedToken as tokenizer_config.json's added_tokens_decoder."""
        self.encoder = dict(vocab)
        # As transformers: dict(zip(merges, range)), so a repeated pair keeps its last rank.
        self.bpe_ranks = {tuple(m): i for i, m in enumerate(merges) if len(m) == 2}
        self.lang2id = dict(lang2id) if lang2id else None
        self.id2lang = {i: lang for lang, i in self.lang2id.items()} if self.lang2id else None
        self.padding_side = check_padding_side(padding_side)
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side: expected 'left' or 'right', got {truncation_side!r}")
        self.truncation_side = truncation_side
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.split_special_tokens = bool(split_special_tokens)
        self.pre_tokenizer = MosesPreTokenizer(do_lowercase_and_remove_accent)
        self.bpe_cache_size = bpe_cache_size
        self._bpe = functools.lru_cache(maxsize=bpe_cache_size)(self._bpe_word)  # per instance, bounded
        self._set_added_tokens(special_tokens or {}, extra_special_tokens, added_tokens or {})

    def __getstate__(self) -> dict:  # the BPE cache holds a bound method: rebuilt, empty, after unpickling
        return {k: v for k, v in self.__dict__.items() if k != "_bpe"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bpe = functools.lru_cache(maxsize=self.bpe_cache_size)(self._bpe_word)

    @property
    def do_lowercase_and_remove_accent(self) -> bool:
        return self.pre_tokenizer.do_lowercase_and_remove_accent

    def _set_added_tokens(self, special_tokens: dict, extra: list | None, added: dict[int, AddedToken]) -> None:
        """Register the special tokens as transformers' PythonBackend.__init__ does: the named ones (in the order
        bos, eos, unk, sep, pad, cls, mask) then the extra ones, each taking its vocab.json id when it has one,
        else the next id after the vocabulary and the tokens already added."""
        unknown = set(special_tokens) - set(_DEFAULT_TOKENS)
        if unknown:
            raise ValueError(f"special_tokens: unknown names {sorted(unknown)}, "
                             f"expected some of {list(_DEFAULT_TOKENS)}")
        named = {name: (None if special_tokens.get(name, default) is None else str(special_tokens.get(name, default)))
                 for name, default in _DEFAULT_TOKENS.items()}
        for name in ("bos_token", "sep_token", "pad_token", "unk_token"):
            if named[name] is None:
                raise ValueError(f"special_tokens: {name} is null; XLM needs it")
        extra = [str(t) for t in (_DEFAULT_EXTRA if extra is None else extra)]
        self.special_tokens = named
        self.added_tokens_decoder = dict(added)
        added_ids = {t.content: i for i, t in self.added_tokens_decoder.items()}
        all_special = list(dict.fromkeys([t for t in named.values() if t is not None] + extra))
        next_id = len({**self.encoder, **added_ids})
        for token in all_special:
            if token in added_ids or not token:
                continue
            if token in self.encoder:
                index = self.encoder[token]
            else:
                index, next_id = next_id, next_id + 1
            self.added_tokens_decoder[index] = AddedToken(token, lstrip=False, rstrip=False, normalized=False,
                                                          special=True)
            added_ids[token] = index
        self._token_ids = {**self.encoder, **added_ids}  # transformers looks added tokens up first
        self._id_tokens = {**{i: t for t, i in self.encoder.items()},
                           **{i: t.content for i, t in self.added_tokens_decoder.items()}}
        self._added_by_content = {self.added_tokens_decoder[i].content: self.added_tokens_decoder[i]
                                  for i in sorted(self.added_tokens_decoder)}
        # Split on added tokens: at each position the longest one (transformers' Trie), never inside a piece.
        contents = sorted(self._added_by_content, key=len, reverse=True)
        self._added_split = re.compile("(" + "|".join(map(re.escape, contents)) + ")") if contents else None
        for name in ("bos", "eos", "unk", "sep", "pad", "cls", "mask"):
            token = named[f"{name}_token"]
            setattr(self, f"{name}_token_id", None if token is None else self._token_ids[token])
        self.all_special_tokens = all_special
        self.all_special_ids = [self._token_ids[t] for t in all_special]
        self.vocab_size = max(self._id_tokens) + 1

    # ------------------------------------------------------------------------------------------------------------
    # Loading

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "XLMTokenizer":
        """Read vocab.json + merges.txt and, when present, tokenizer_config.json (lang2id / id2lang,
        do_lowercase_and_remove_accent, special tokens, added_tokens_decoder, model_max_length, padding_side,
        truncation_side), special_tokens_map.json and added_tokens.json, as transformers' from_pretrained does."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"directory: {str(directory)!r} is not a directory")
        missing = [name for name in ("vocab.json", "merges.txt") if not (directory / name).is_file()]
        if missing:
            raise ValueError(f"directory: no {' and no '.join(missing)} in {str(directory)!r}; "
                             "XLM needs vocab.json and merges.txt")
        config = read_json_if_present(directory / "tokenizer_config.json")
        declared = config.pop("tokenizer_class", None)
        if declared is not None and declared not in XLM_CLASSES:
            raise ValueError(f"directory: tokenizer_config.json declares {declared!r}, expected one of {XLM_CLASSES}")
        vocab = read_json(directory / "vocab.json", "tokenizer vocabulary", expect=None)  # its shape checked below
        if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in vocab.values()):
            raise ValueError(f"directory: vocab.json in {str(directory)!r} is not a {{piece: id >= 0}} object")
        # as transformers: what follows the last newline is dropped
        lines = read_text(directory / "merges.txt", "BPE merges").split("\n")[:-1]
        merges = [tuple(line.split()[:2]) for line in lines]  # a third column (the pair count) is ignored

        # transformers renames additional_special_tokens before it reads special_tokens_map.json.
        if not config.get("extra_special_tokens") and "additional_special_tokens" in config:
            config["extra_special_tokens"] = config.pop("additional_special_tokens")
        decoder = config.get("added_tokens_decoder")
        _, named, _ = read_added_tokens(directory, config, {}, _DEFAULT_TOKENS)
        named = {k: (None if v is None else str(v)) for k, v in named.items()}
        extra = next((config[k] for k in ("extra_special_tokens", "additional_special_tokens") if config.get(k)),
                     [] if "extra_special_tokens" in config else None)
        extra = None if extra is None else [str(as_added_token(t)) for t in extra]
        if isinstance(decoder, dict):
            added = {int(i): as_added_token(t) if isinstance(t, dict) else AddedToken(str(t), special=True)
                     for i, t in decoder.items()}
        else:  # legacy added_tokens.json: {token: id}, special when it names a special token
            special = {t for t in named.values() if t is not None} | set(_DEFAULT_EXTRA if extra is None else extra)
            added = {int(i): AddedToken(t, lstrip=False, rstrip=False, normalized=t not in special,
                                        special=t in special)
                     for t, i in read_json_if_present(directory / "added_tokens.json").items()}

        lang2id = _read_langs(config)
        lower = config.get("do_lowercase_and_remove_accent", True)
        if not isinstance(lower, bool):
            raise ValueError(f"directory: tokenizer_config.json do_lowercase_and_remove_accent: expected true or "
                             f"false, got {describe(lower)}")
        max_len = config.get("model_max_length")
        max_len = int(max_len) if isinstance(max_len, (int, float)) and 0 < max_len < 1e15 else None
        return cls(vocab, merges, lang2id=lang2id, do_lowercase_and_remove_accent=lower, special_tokens=named,
                   extra_special_tokens=extra, added_tokens=added,
                   padding_side=config.get("padding_side") or "right",
                   truncation_side=config.get("truncation_side") or "right", model_max_length=max_len,
                   clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
                   split_special_tokens=config.get("split_special_tokens", False))

    # ------------------------------------------------------------------------------------------------------------
    # Text -> pieces -> ids

    def _bpe_word(self, word: str) -> str:
        """transformers' XLMTokenizer.bpe: the word's pieces joined by spaces (the caller splits on " ")."""
        symbols = tuple(word[:-1]) + (word[-1] + END_OF_WORD,)
        if len(symbols) == 1:
            return word + END_OF_WORD
        ranks = self.bpe_ranks
        while True:
            pairs = set(zip(symbols, symbols[1:]))
            bigram = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
            if bigram not in ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(symbols):  # every occurrence, left to right, never overlapping
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = tuple(merged)
            if len(symbols) == 1:
                break
        joined = " ".join(symbols)
        return "\n</w>" if joined == "\n  </w>" else joined  # transformers' special case (whitespace words only)

    def _segments(self, text: str) -> list[tuple[str, bool]]:
        """(piece of text, is an added token): transformers' split on added tokens with their strip flags."""
        if self._added_split is None or self.split_special_tokens:
            return [(text, False)]
        parts = [p for p in self._added_split.split(text) if p]
        for i, part in enumerate(parts):
            token = self._added_by_content.get(part)
            if token is None:
                continue
            left = parts[i - 1] if i > 0 else None
            right = parts[i + 1] if i < len(parts) - 1 else None
            if token.rstrip and right:
                parts[i + 1] = right.lstrip()
            if token.lstrip and left:
                parts[i - 1] = left.rstrip()
            if token.single_word:  # a token glued to a word is no token (the word absorbs it)
                if left and left[-1] != " ":
                    parts[i - 1] += part
                    parts[i] = ""
                elif right and right[0] != " ":
                    parts[i + 1] = part + parts[i + 1]
                    parts[i] = ""
        return [(p, p in self._added_by_content) for p in parts if p]

    def tokenize(self, text: str, lang: str | None = None, bypass_tokenizer: bool = False) -> list[str]:
        """BPE pieces of `text` (word-final pieces end in "</w>"; added tokens kept whole). lang: a code of
        lang2id (any Moses language code when the tokenizer has none); None = "en", transformers' default."""
        _check_text(text, "text")
        return self._pieces(text, self._check_lang(lang, "lang"), bool(bypass_tokenizer))

    def _pieces(self, text: str, lang: str, bypass_tokenizer: bool) -> list[str]:
        pieces = []
        for segment, is_added in self._segments(text):
            if is_added:
                pieces.append(segment)
                continue
            for word in self.pre_tokenizer(segment, lang, bypass_tokenizer):
                if word:
                    pieces.extend(self._bpe(word).split(" "))
        return pieces

    is_fast = False  # Moses + BPE in Python, as transformers' (slow) XLMTokenizer: no offsets

    def get_vocab(self) -> dict[str, int]:
        """Every piece and its id: vocab.json's, then the added tokens' (transformers' ``get_vocab``)."""
        return dict(self._token_ids)

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        """Id of a piece (or of each piece): added tokens first, then vocab.json, else the `<unk>` id."""
        if isinstance(tokens, str):
            return self._token_ids.get(tokens, self.unk_token_id)
        return [self._token_ids.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False) -> list[str]:
        """Pieces of an id sequence (ids without a piece, holes of vocab.json, give `<unk>` as in transformers)."""
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        unk = self.special_tokens["unk_token"]
        return [self._id_tokens.get(i, unk) for i in self._check_ids(ids, "ids") if i not in skip]

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True,
               lang: str | None = None, pair_lang: str | None = None, bypass_tokenizer: bool = False) -> list[int]:
        """Ids of a text (`<s> A </s>`) or a pair (`<s> A </s> B </s>`), length [seq]; pair_lang defaults to lang."""
        _check_text(text, "text")
        if text_pair is not None:
            _check_text(text_pair, "text_pair")
        lang = self._check_lang(lang, "lang")
        pair_lang = lang if pair_lang is None else self._check_lang(pair_lang, "pair_lang")
        a = self.convert_tokens_to_ids(self._pieces(text, lang, bool(bypass_tokenizer)))
        b = None if text_pair is None else self.convert_tokens_to_ids(
            self._pieces(text_pair, pair_lang, bool(bypass_tokenizer)))
        return self._join(a, b) if add_special_tokens else a + (b or [])

    def _join(self, a: list[int], b: list[int] | None) -> list[int]:
        head = [self.bos_token_id] + a + [self.sep_token_id]
        return head if b is None else head + b + [self.sep_token_id]

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None
                                         ) -> list[int]:
        """transformers' name for the special tokens around ids: `<s> A </s>` or `<s> A </s> B </s>` (the
        question-answering pipeline builds its windows from per-word token ids with it)."""
        return self._join(list(token_ids_0), None if token_ids_1 is None else list(token_ids_1))

    def __call__(self, texts: str | list[str], text_pairs: str | list[str] | None = None, *,
                 lang: str | list[str] | None = None, pair_lang: str | list[str] | None = None,
                 add_special_tokens: bool = True, padding: str = "longest", padding_side: str | None = None,
                 truncation: bool | str = False, max_length: int | None = None, return_langs: bool = False,
                 bypass_tokenizer: bool = False) -> dict[str, np.ndarray]:
        """Tokenize a text or a batch (optionally paired with `text_pairs`) into padded int32 arrays.

        Args:
            texts: a str or a non-empty list of str; text_pairs: a str (texts is a str) or a list as long.
            lang: language of the texts: one code, or one per text (default "en" rules); pair_lang: of the
                pairs (default: lang).
            padding: "longest" (to the longest sequence) or "max_length" (to max_length / model_max_length).
            padding_side: "left" or "right" (default self.padding_side, "right" unless the config says).
            truncation: True / "longest_first" (cut the longer of text and pair, token by token, as
                transformers), "only_first", "only_second" or False; every sequence, special tokens included, is
                cut to max_length (default model_max_length) on self.truncation_side.
            return_langs: also return "langs", lang2id of each token's language (`<s> A </s>` get the text's,
                `B </s>` the pair's; padding the text's), the model's `langs` input. Needs lang2id and lang.
            bypass_tokenizer: the texts are already Moses-tokenized (and lowercased): split on whitespace only.

        Returns:
            {"input_ids": [B, T], "attention_mask": [B, T]} (+ "langs": [B, T]), int32, B = 1 for a str input,
            T = the longest sequence (or max_length with padding="max_length").
        """
        single = isinstance(texts, str)
        texts = [texts] if single else texts
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts: expected a str or a non-empty list of str, got {describe(texts)}")
        if text_pairs is not None:
            text_pairs = [text_pairs] if single and isinstance(text_pairs, str) else text_pairs
            if not isinstance(text_pairs, (list, tuple)) or not all(isinstance(t, str) for t in text_pairs):
                expected = "a str (texts is a str)" if single else "a list of str (texts is a list)"
                raise ValueError(f"text_pairs: expected {expected}, got {describe(text_pairs)}")
            if len(text_pairs) != len(texts):
                raise ValueError(f"text_pairs: got {len(text_pairs)} texts for {len(texts)} texts, expected as many")
        if not isinstance(return_langs, bool):
            raise ValueError(f"return_langs: expected True or False, got {return_langs!r}")
        if return_langs and not self.lang2id:
            raise ValueError("return_langs: this tokenizer has no lang2id (a monolingual XLM takes no langs)")
        langs_a = self._per_text(lang, len(texts), "lang", required=return_langs)
        langs_b = langs_a if pair_lang is None else self._per_text(pair_lang, len(texts), "pair_lang")
        side = self.padding_side if padding_side is None else check_padding_side(padding_side)
        pair = text_pairs is not None
        limit, strategy = self._length_limit(padding, max_length, truncation, pair, add_special_tokens)

        rows, lang_rows = [], []
        for i, text in enumerate(texts):
            a = self.convert_tokens_to_ids(self._pieces(text, langs_a[i], bool(bypass_tokenizer)))
            b = self.convert_tokens_to_ids(self._pieces(text_pairs[i], langs_b[i], bool(bypass_tokenizer))) \
                if pair else None
            if strategy is not None:
                n_special = (3 if pair else 2) if add_special_tokens else 0
                a, b = self._truncate(a, b, len(a) + len(b or []) + n_special - limit, strategy, limit)
            rows.append(self._join(a, b) if add_special_tokens else a + (b or []))
            if return_langs:
                n_first = len(a) + 2 if add_special_tokens else len(a)
                lang_rows.append([self.lang2id[langs_a[i]]] * n_first +
                                 [self.lang2id[langs_b[i]]] * (len(rows[-1]) - n_first))

        length = max(len(r) for r in rows)
        if padding == "max_length":
            if length > limit:
                row = next(i for i, r in enumerate(rows) if len(r) == length)
                raise ValueError(f"max_length: sequence {row} has {length} tokens, more than max_length={limit}; "
                                 "pass truncation=True to cut it")
            length = limit
        out = {"input_ids": pad_rows(rows, length, side, self.pad_token_id),
               "attention_mask": pad_rows([[1] * len(r) for r in rows], length, side, 0)}
        if return_langs:
            langs = pad_rows(lang_rows, length, side, -1)  # padding takes the text's language
            out["langs"] = np.where(langs < 0, np.asarray([self.lang2id[la] for la in langs_a], np.int32)[:, None],
                                     langs)
        return out

    def _check_lang(self, lang, name: str) -> str:
        if lang is None:
            return "en"
        if not isinstance(lang, str) or not lang:
            raise ValueError(f"{name}: expected a language code (str), got {describe(lang)}")
        if self.lang2id and lang not in self.lang2id:
            raise ValueError(f"{name}: {lang!r} is not a language of this tokenizer, expected one of "
                             f"{sorted(self.lang2id)}")
        return lang

    def _per_text(self, lang, n: int, name: str, required: bool = False) -> list[str]:
        if lang is None and required:
            raise ValueError(f"{name}: return_langs=True needs the language, one of {sorted(self.lang2id)}")
        if isinstance(lang, (list, tuple)):
            if len(lang) != n:
                raise ValueError(f"{name}: got {len(lang)} languages for {n} texts, expected one or as many")
            return [self._check_lang(la, f"{name}[{i}]") for i, la in enumerate(lang)]
        return [self._check_lang(lang, name)] * n

    def _length_limit(self, padding, max_length, truncation, pair: bool, add_special_tokens) -> tuple:
        """(length limit or None, truncation strategy or None), after checking the arguments."""
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding: expected 'longest' or 'max_length', got {padding!r}")
        if not isinstance(add_special_tokens, bool):
            raise ValueError(f"add_special_tokens: expected True or False, got {add_special_tokens!r}")
        if truncation is True or truncation is False:
            strategy = "longest_first" if truncation else None
        elif isinstance(truncation, str) and truncation in TRUNCATION_STRATEGIES:
            strategy = truncation
        else:
            raise ValueError(f"truncation: expected True, False or one of {TRUNCATION_STRATEGIES}, got {truncation!r}")
        if strategy == "only_second" and not pair:
            raise ValueError("truncation: 'only_second' cuts text_pairs, and there are none (use True)")
        if max_length is not None and strategy is None and padding != "max_length":
            raise ValueError(f"max_length: got {max_length!r} without truncation or padding='max_length'; "
                             "pass truncation=True to truncate")
        if strategy is None and padding != "max_length":
            return None, None
        limit = max_length if max_length is not None else self.model_max_length
        n_special = (3 if pair else 2) if add_special_tokens else 0
        if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < max(n_special, 1):
            raise ValueError(f"max_length: expected an int >= {max(n_special, 1)} (room for the special tokens and "
                             f"one token), got {limit!r}")
        return int(limit), strategy

    def _truncate(self, a: list[int], b: list[int] | None, n: int, strategy: str, limit: int) -> tuple:
        """transformers' truncate_sequences: remove n tokens from the text (only_first, or longest_first
        without a pair), the pair (only_second), or both (longest_first: the longer first, then alternately,
        the extra odd token from the pair)."""
        if n <= 0:
            return a, b

        def cut(ids: list[int], k: int) -> list[int]:
            if k <= 0:
                return ids
            return ids[:len(ids) - k] if self.truncation_side == "right" else ids[k:]

        if strategy == "longest_first" and b is not None:
            first = min(abs(len(b) - len(a)), n)
            second = n - first
            if len(a) > len(b):
                return cut(a, first + second // 2), cut(b, second - second // 2)
            return cut(a, second // 2), cut(b, first + second - second // 2)
        target, which = (b, "text_pairs") if strategy == "only_second" else (a, "texts")
        if n > len(target):
            raise ValueError(f"max_length: {limit} tokens cannot hold this sequence even with all of its {which} "
                             f"tokens cut (truncation={strategy!r})")
        return (a, cut(b, n)) if strategy == "only_second" else (cut(a, n), b)

    # ------------------------------------------------------------------------------------------------------------
    # Ids -> text

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of one id sequence (int, list or 1-D array, shape [seq]): pieces joined, "</w>" -> " ", stripped."""
        text = "".join(self.convert_ids_to_tokens(ids, skip_special_tokens)).replace(END_OF_WORD, " ").strip()
        return _clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        """Texts of a batch of id sequences (list of sequences or 2-D array [batch, seq])."""
        if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__iter__"):
            raise ValueError(f"sequences: expected a batch of id sequences, got {describe(sequences)}")
        checked = [self._check_ids(seq, f"sequences[{i}]") for i, seq in enumerate(sequences)]
        return [self.decode(seq, skip_special_tokens) for seq in checked]


def _check_text(text, name: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a str, got {describe(text)}")


def _read_langs(config: dict) -> dict[str, int] | None:
    """lang2id from tokenizer_config.json (from id2lang when only that is given); both must agree."""
    lang2id, id2lang = config.get("lang2id"), config.get("id2lang")
    where = "directory: tokenizer_config.json"
    if lang2id is not None and (not isinstance(lang2id, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in lang2id.items())):
        raise ValueError(f"{where} lang2id: expected {{language: int id}}, got {describe(lang2id)}")
    if id2lang is not None:
        try:
            id2lang = {int(k): v for k, v in id2lang.items()}
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{where} id2lang: expected {{id: language}}, got {describe(id2lang)}") from None
        if lang2id is None:
            lang2id = {v: k for k, v in id2lang.items()}
        elif id2lang != {v: k for k, v in lang2id.items()}:
            raise ValueError(f"{where}: id2lang {id2lang} is not the inverse of lang2id {lang2id}")
    return lang2id or None


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization (only when tokenizer_config.json sets clean_up_tokenization_spaces)."""
    for old, new in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                     (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(old, new)
    return text


# ----------------------------------------------------------------------------------------------------------------
# Writing a tokenizer directory


def build_xlm_vocab(texts: Iterable[str | tuple[str, str]], vocab_size: int, directory: str | os.PathLike,
                    lang2id: dict[str, int] | None = None, do_lowercase_and_remove_accent: bool = True,
                    model_max_length: int = 512) -> Path:
    """Learn an XLM BPE vocabulary from text and write vocab.json, merges.txt and tokenizer_config.json.

    texts: str (pre-tokenized with the English Moses rules) or (text, lang) pairs. The words are made exactly as
    XLMTokenizer makes them, then ``learn_merges`` learns "</w>"-suffixed pieces (the same files in every process). The vocabulary starts
    with the released models' special tokens (`<s>`=0, `</s>`=1, `<pad>`=2, `<unk>`=3, `<special0..9>`=4..13),
    then the characters seen, then merges; vocab_size is an upper bound once every character has an id. The
    directory loads with XLMTokenizer.from_pretrained and transformers' XLMTokenizer.from_pretrained alike.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, Integral) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size: expected an int > {len(SPECIAL_TOKENS)} (the special tokens), got "
                         f"{vocab_size!r}")
    if lang2id is not None and (not isinstance(lang2id, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in lang2id.items())):
        raise ValueError(f"lang2id: expected {{language: int id}}, got {describe(lang2id)}")
    pre = MosesPreTokenizer(do_lowercase_and_remove_accent)
    lines = []
    for i, item in enumerate(texts):
        text, lang = (item, "en") if isinstance(item, str) else (item if isinstance(item, tuple) else (None, None))
        if not isinstance(text, str) or not isinstance(lang, str):
            raise ValueError(f"texts[{i}]: expected a str or a (text, lang) tuple of str, got {describe(item)}")
        lines.append(" ".join(w for w in pre(text, lang) if w))
    counts = collections.Counter(word for line in lines for word in line.split())
    alphabet = sorted({symbol for word in counts for symbol in word_symbols(word)})
    merges = learn_merges(counts, int(vocab_size) - len(SPECIAL_TOKENS) - len(alphabet))

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    # The special tokens, the alphabet sorted, then each merge's product in rank order: ids that depend on the
    # corpus alone. The ids are names only; tokenizing follows merges.txt's ranks.
    products = [p for p in dict.fromkeys(a + b for a, b in merges) if p not in SPECIAL_TOKENS and p not in alphabet]
    vocab = {piece: i for i, piece in enumerate(list(SPECIAL_TOKENS) + alphabet + products)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    # One "a b" line per merge, newline-terminated (transformers drops what follows the last newline).
    (out / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    config = {"tokenizer_class": "XLMTokenizer", "do_lowercase_and_remove_accent": bool(do_lowercase_and_remove_accent),
              "model_max_length": int(model_max_length)}
    if lang2id:
        config.update(lang2id=dict(lang2id), id2lang={str(i): lang for lang, i in lang2id.items()})
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def word_symbols(word: str) -> list[str]:
    """A word's starting symbols: its characters, the last one carrying the end-of-word mark."""
    return list(word[:-1]) + [word[-1] + END_OF_WORD]


def learn_merges(counts: dict[str, int], num_merges: int) -> list[tuple[str, str]]:
    """Sennrich's BPE over words with their counts: ``num_merges`` times (or until no pair is left), merge the
    most frequent adjacent pair of symbols, ties broken by the pair's text so that every run
    gives the same merges. Pair counts are kept up to date word by word (only the words holding the merged pair
    change), and the best pair comes from a heap whose stale entries are skipped."""
    words = [word_symbols(w) for w in counts]
    freq = [counts[w] for w in counts]
    pairs: collections.Counter = collections.Counter()
    where: dict[tuple[str, str], set[int]] = collections.defaultdict(set)
    for i, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(merges) < num_merges:
        n, pair = heapq.heappop(heap)
        if -n != pairs.get(pair, 0) or n == 0:
            continue  # stale: the pair's count changed since this entry was pushed
        merges.append(pair)
        joined = pair[0] + pair[1]
        changed: set = set()
        for i in sorted(where.pop(pair)):
            old = words[i]
            new, k = [], 0
            while k < len(old):
                if k + 1 < len(old) and (old[k], old[k + 1]) == pair:
                    new.append(joined)
                    k += 2
                else:
                    new.append(old[k])
                    k += 1
            for p in zip(old, old[1:]):
                pairs[p] -= freq[i]
                changed.add(p)
            for p in zip(new, new[1:]):
                pairs[p] += freq[i]
                where[p].add(i)
                changed.add(p)
            words[i] = new
        pairs.pop(pair, None)
        for p in changed:
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return merges
