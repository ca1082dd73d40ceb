"""Tokenizer helpers shared by the families: training a small byte-level BPE on a local corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from common.files import (DamagedFileError, json_type_name, read_json,
                          read_json_if_present)  # noqa: F401 - the tokenizers import read_json_if_present from here

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Llama 3's splitting regex: contractions, letters, 1-3 digit groups, punctuation runs, newlines, spaces.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def docs_corpus(stdlib_docstrings: bool = True) -> list[str]:
    """English text every CPython install has: the pydoc topic help texts (~0.5 M chars) and, by default,
    the docstrings of the standard library's modules, classes and functions (~1.4 M chars), in a fixed order.
    """
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    if stdlib_docstrings:
        texts += stdlib_docstring_texts()
    return texts


def stdlib_docstring_texts(min_chars: int = 80) -> list[str]:
    """Docstrings (longer than min_chars) parsed with ``ast`` from the standard library's .py files."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo"}
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    texts = []
    for path in sorted(root.rglob("*.py")):
        if skip & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a few files are templates or in other encodings
        texts += [d for node in ast.walk(tree) if isinstance(node, kinds)
                  and (d := ast.get_docstring(node)) and len(d) > min_chars]
    return texts


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int, directory: str | Path,
                         bos: str = "<|begin_of_text|>", eos: str = "<|end_of_text|>") -> Path:
    """Train a Llama-3-style byte-level BPE and write tokenizer.json + tokenizer_config.json to ``directory``.

    The result loads with ``llama_jax.tokenizer.LlamaTokenizer`` and transformers' ``AutoTokenizer`` alike.
    bos gets id ``vocab_size - 2`` region's start: special tokens are added after the learned merges.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 300:
        raise ValueError(f"vocab_size = {vocab_size} is invalid: expected >= 300 (256 bytes + merges + specials)")
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([bos, eos])
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "model_max_length": 1_000_000, "padding_side": "left"}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


ADDED_TOKEN_FIELDS = ("content", "single_word", "lstrip", "rstrip", "normalized", "special")


def read_tokenizer_json(path: Path) -> dict:
    """tokenizer.json as a dict: a JSON object whose "model" is an object and whose "added_tokens" (when there)
    are objects with an integer "id" and a string "content"; else DamagedFileError naming the file and field."""
    spec = read_json(path, "tokenizer")
    if not isinstance(spec.get("model", {}), dict):
        raise DamagedFileError(f"{path} (tokenizer): field 'model' is {json_type_name(spec['model'])}, "
                               "expected an object")
    added = spec.get("added_tokens", [])
    if not isinstance(added, list):
        raise DamagedFileError(f"{path} (tokenizer): field 'added_tokens' is {json_type_name(added)}, "
                               "expected an array")
    bad = next((i for i, t in enumerate(added) if not (isinstance(t, dict) and isinstance(t.get("content"), str)
                                                        and type(t.get("id")) is int)), None)
    if bad is not None:
        raise DamagedFileError(f"{path} (tokenizer): added_tokens[{bad}] is not an object with an integer "
                               "\"id\" and a string \"content\"")
    return spec


def read_vocab_json(path: Path) -> dict[str, int]:
    """vocab.json: {piece: id >= 0}; else DamagedFileError naming the file and the first bad entry."""
    vocab = read_json(path, "tokenizer vocabulary")
    bad = next((k for k, v in vocab.items() if type(v) is not int or v < 0), None)
    if bad is not None:
        raise DamagedFileError(f"{path} (tokenizer vocabulary): entry {bad!r} is {vocab[bad]!r:.40}, expected an "
                               "id >= 0")
    return vocab


def as_added_token(value, special: bool | None = None):
    """tokenizer_config.json stores tokens as strings or AddedToken dicts (with or without "__type")."""
    from tokenizers import AddedToken

    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k in ADDED_TOKEN_FIELDS}
        if special is not None:
            fields["special"] = special
        return AddedToken(**fields)
    return value


def read_added_tokens(directory: Path, config: dict, spec: dict, defaults: dict,
                      lstrip_names: tuple[str, ...] = ()) -> tuple[list, dict, list]:
    """Added and named special tokens as transformers' ``_from_pretrained`` reads them: (added tokens,
    {name: named special token or None}, extra special tokens).

    tokenizer_config.json's ``added_tokens_decoder`` when present (popped from ``config``), else
    special_tokens_map.json (overriding ``config``'s named tokens) plus tokenizer.json's ``added_tokens``
    (``spec``). A named token listed among the added ones keeps that entry's flags. ``defaults``: name -> token
    for names the files leave unset; a name in ``lstrip_names`` given as a plain string becomes a special token
    that takes the space before it (LayoutXLM's ``<mask>``)."""
    from tokenizers import AddedToken

    if "added_tokens_decoder" in config:
        decoder = config.pop("added_tokens_decoder")
        added = [as_added_token(decoder[k]) for k in sorted(decoder, key=int)]
    else:
        for key, value in read_json_if_present(directory / "special_tokens_map.json").items():
            if key in defaults:
                config[key] = as_added_token(value, special=True)
            elif key in ("extra_special_tokens", "additional_special_tokens") and isinstance(value, list):
                config[key] = [as_added_token(t, special=True) for t in value]
        added = [as_added_token(t) for t in sorted(spec.get("added_tokens", []), key=lambda t: t["id"])]
    by_content = {t.content: t for t in added}
    named = {}
    for name, default in defaults.items():
        token = config.get(name, default)
        if name in lstrip_names and isinstance(token, str):
            token = AddedToken(token, lstrip=True, rstrip=False, special=True)
        token = as_added_token(token)
        named[name] = by_content.get(str(token), token) if token is not None else None
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    extra = [as_added_token(t) for t in extra] if isinstance(extra, list) else []
    return added, named, extra


def token_key(token) -> tuple:
    """An AddedToken's identity (text and flags), for de-duplication."""
    return tuple(getattr(token, f) for f in ADDED_TOKEN_FIELDS)


def add_tokens(tok, added: list, named: list, extra: list) -> None:
    """Register added, named special and extra special tokens as transformers' TokenizersBackend does.

    Same order and flags: listed added tokens not yet in the backend (nor earlier in the list) first, then
    named and extra special tokens whose text is not there yet; a listed token that is also a named one is
    made special.
    """
    from tokenizers import AddedToken

    present = list(tok.get_added_tokens_decoder().values())
    keys = {token_key(t) for t in present}
    pending = []
    for t in added:
        if isinstance(t, AddedToken) and token_key(t) not in keys:
            keys.add(token_key(t))
            pending.append(t)
    contents = {t.content for t in present} | {t.content for t in pending}
    for token in named + extra:
        if token is not None and str(token) not in contents:
            contents.add(str(token))
            pending.append(AddedToken(token, special=True) if isinstance(token, str) else token)
    named_contents = {str(t) for t in named if t is not None}
    for token in pending:
        if not token.special and token.content in named_contents:
            token.special = True
    if pending:
        tok.add_tokens(pending)


class TokenizerBase:
    """What every zoo tokenizer shares over a ``tokenizers.Tokenizer`` (``self._tokenizer``): padding a batch
    of encodings, decoding, and id checks. Subclasses set ``vocab_size``, ``pad_token_id``, ``eos_token_id``."""

    _tokenizer: "Tokenizer"
    is_fast = True  # built on the `tokenizers` library: offsets, word ids (transformers' "fast" tokenizers)
    vocab_size: int
    pad_token_id: int | None
    eos_token_id: int | None

    def _set_special_tokens(self, tokenizer: "Tokenizer", special_tokens: dict[str, str | None]) -> None:
        """``special_tokens`` ({"bos_token": "<s>", ...}, None for unset ones), their ids as ``bos_token_id``,
        ``eos_token_id``, ``pad_token_id``, ``unk_token_id``, ``mask_token_id``, ``sep_token_id``,
        ``cls_token_id``, and ``vocab_size`` (largest id + 1, added tokens included)."""
        self.special_tokens = special_tokens
        ids = {name: tokenizer.token_to_id(tok) for name, tok in special_tokens.items() if tok is not None}
        for name in ("bos", "eos", "pad", "unk", "mask", "sep", "cls"):
            setattr(self, f"{name}_token_id", ids.get(f"{name}_token"))
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1

    def encoding(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True):
        """The ``tokenizers.Encoding`` of one text (or pair): ids, offsets into the text (a pair's into its own
        text), special_tokens_mask, word_ids, sequence_ids; no truncation, no padding."""
        return self._tokenizer.encode(text, text_pair, add_special_tokens=bool(add_special_tokens))

    @property
    def mask_token(self) -> str | None:
        return self.special_tokens.get("mask_token")

    def get_vocab(self) -> dict[str, int]:
        """Every piece and its id, added tokens included (transformers' ``get_vocab``)."""
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def _pad(self, encodings, side: str) -> dict:
        """{"input_ids", "attention_mask"}: int32 [batch, longest], padded with pad (else eos, else 0) on ``side``."""
        length = max(len(e.ids) for e in encodings)
        pad_id = next((i for i in (self.pad_token_id, self.eos_token_id) if i is not None), 0)
        input_ids = np.full((len(encodings), length), pad_id, dtype=np.int32)
        attention_mask = np.zeros((len(encodings), length), dtype=np.int32)
        for row, enc in enumerate(encodings):
            cols = slice(length - len(enc.ids), length) if side == "left" else slice(0, len(enc.ids))
            input_ids[row, cols] = enc.ids
            attention_mask[row, cols] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of one id sequence (int, list or 1-D array, shape [seq])."""
        return self._tokenizer.decode(self._check_ids(ids, "ids"), skip_special_tokens=bool(skip_special_tokens))

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        """Texts of a batch of id sequences (list of sequences or 2-D array [batch, seq])."""
        if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__iter__"):
            raise ValueError(f"sequences: expected a batch of id sequences, got {describe(sequences)}")
        checked = [self._check_ids(seq, f"sequences[{i}]") for i, seq in enumerate(sequences)]
        return self._tokenizer.decode_batch(checked, skip_special_tokens=bool(skip_special_tokens))

    def _check_ids(self, ids, name: str) -> list[int]:
        # tokenizers silently skips unknown ids; an id past the vocabulary is a caller bug, so say so.
        if isinstance(ids, (str, bytes)):
            raise ValueError(f"{name}: expected integer token ids, got {describe(ids)}")
        arr = np.asarray(ids)
        if arr.ndim > 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name}: expected a sequence of integer token ids, got {describe(ids)}")
        flat = arr.reshape(-1).astype(np.int64)
        bad = flat[(flat < 0) | (flat >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"{name}: token id {int(bad[0])} is out of range [0, {self.vocab_size})")
        return flat.tolist()


def pad_rows(rows, length: int, side: str, fill) -> np.ndarray:
    """int32 [B, length, ...] from rows [len_i, ...] (lists or arrays), padded on ``side`` with ``fill`` (a
    scalar, or one value of the rows' trailing shape, e.g. a pad box)."""
    out = np.empty((len(rows), length) + np.shape(fill), dtype=np.int32)
    out[:] = fill
    for i, row in enumerate(rows):
        cols = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        out[i, cols] = row
    return out


def check_padding_side(padding_side) -> str:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side: expected 'left' or 'right', got {padding_side!r}")
    return padding_side


def describe(value) -> str:
    """A short description of a bad argument for error messages."""
    if isinstance(value, (list, tuple)) and value:
        odd = next((v for v in value if not isinstance(v, str)), value[0])
        return f"{type(value).__name__} containing {type(odd).__name__} {odd!r}"[:80]
    return f"{type(value).__name__} {value!r}"[:80]
