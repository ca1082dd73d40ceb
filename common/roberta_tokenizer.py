"""RoBERTa / Longformer / BART / LED tokenizer on the `tokenizers` library, giving transformers 5.x's ids.

transformers 5.x maps `RobertaTokenizer[Fast]`, `LongformerTokenizer[Fast]`, `BartTokenizer[Fast]` and
`LEDTokenizer[Fast]` (and AutoTokenizer's model types roberta, longformer, bart, led) to one class,
`RobertaTokenizer`, a `TokenizersBackend`. It never uses a checkpoint's `tokenizer.json` pipeline as-is: it
takes only the vocabulary and merges (from `tokenizer.json`, else from `vocab.json` + `merges.txt`) and
rebuilds the rest, and so do we:

* model: `BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
  fuse_unk=False)` (no unk token: byte-level BPE covers every byte);
* no normalizer; pre-tokenizer `ByteLevel(add_prefix_space)` and decoder `ByteLevel()`, where
  add_prefix_space comes from tokenizer_config.json (default False), whatever the file's pre-tokenizer says;
* post-processor `RobertaProcessing((sep, sep_id), (cls, cls_id), trim_offsets, add_prefix_space)`:
  `<s> A </s>` and `<s> A </s></s> B </s>` (as in transformers, an empty text_pair given with a single
  text is no pair at all, while an empty pair inside a batch gives `<s> A </s></s></s>`);
* added tokens as transformers registers them: `added_tokens_decoder` of tokenizer_config.json when present,
  otherwise special_tokens_map.json (overriding the config's named tokens) plus tokenizer.json's
  `added_tokens`; then the named special tokens (defaults `<s> </s> <unk> <pad> <mask>`) not yet present.
  A named token listed among the added tokens keeps that entry's flags, so `<mask>` has lstrip=True (it
  swallows the space before it: "Hello <mask>!" has no space token) exactly when tokenizer.json or
  special_tokens_map.json says so. With only vocab.json + merges.txt and no such entry, transformers 5.x
  registers `<mask>` with lstrip=False (4.x forced lstrip=True); we follow 5.x.

Departures from transformers, on purpose: bad input raises ValueError naming the argument (transformers
decodes an id past the vocabulary to "" and, when max_length cannot hold the special tokens, logs an error
and returns the sequence untruncated).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from common.files import reading
from common.tokenization import (TokenizerBase, add_tokens, check_padding_side, describe, read_added_tokens,
                                 read_json_if_present, read_tokenizer_json, read_vocab_json)

# Every class name transformers 5.x resolves to its RobertaTokenizer (checked in tests against AutoTokenizer).
ROBERTA_CLASSES = tuple(f"{name}Tokenizer{fast}" for name in ("Roberta", "Longformer", "Bart", "LED")
                        for fast in ("", "Fast"))
_DEFAULT_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                   "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}



class RobertaTokenizer(TokenizerBase):
    """Byte-level BPE tokenizer of RoBERTa, Longformer, BART and LED, with transformers 5.x's ids.

    Attributes:
        bos_token_id, eos_token_id, pad_token_id, unk_token_id, mask_token_id, sep_token_id, cls_token_id:
            ids of the named special tokens (`<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`, `</s>`, `<s>` by default).
        vocab_size: number of ids the tokenizer can produce (largest id + 1, added tokens included).
        padding_side: default side for batch padding, "right" unless tokenizer_config.json says otherwise.
        add_prefix_space: whether a space is put before the text (and before each piece between special
            tokens), as tokenizer_config.json says (default False: " Hello" and "Hello" differ).
        model_max_length: tokenizer_config.json's model_max_length (None when absent); the default
            `max_length` of `__call__(..., truncation=True)`.
        special_tokens: {"bos_token": "<s>", ...}, the text of each named special token.
    """

    # tokenizer_config.json's tokenizer_class values this class reads, and its add_prefix_space when unset
    # (a subclass for another transformers class sets its own).
    accepted_classes: tuple[str, ...] = ROBERTA_CLASSES
    default_add_prefix_space: bool = False

    def __init__(self, tokenizer: Tokenizer, special_tokens: dict[str, str], padding_side: str,
                 add_prefix_space: bool, model_max_length: int | None = None):
        self._tokenizer = tokenizer
        self._truncation_lock = threading.Lock()  # truncation is set on the shared backend for one call
        self.padding_side = check_padding_side(padding_side)
        self.add_prefix_space = bool(add_prefix_space)
        self.model_max_length = model_max_length
        self._set_special_tokens(tokenizer, special_tokens)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "RobertaTokenizer":
        """Read a checkpoint directory: `tokenizer.json` if present, else `vocab.json` + `merges.txt`, plus
        `tokenizer_config.json` and `special_tokens_map.json` when there."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"directory: {str(directory)!r} is not a directory")
        has_json = (directory / "tokenizer.json").is_file()
        if not has_json and not ((directory / "vocab.json").is_file() and (directory / "merges.txt").is_file()):
            raise ValueError(f"directory: neither tokenizer.json nor vocab.json + merges.txt in {str(directory)!r}")
        config = read_json_if_present(directory / "tokenizer_config.json")
        declared = config.pop("tokenizer_class", None)
        if declared is not None and declared not in cls.accepted_classes:
            raise ValueError(f"directory: tokenizer_config.json declares {declared!r}, "
                             f"expected one of {cls.accepted_classes}")

        spec = read_tokenizer_json(directory / "tokenizer.json") if has_json else {}
        if has_json:
            model = spec.get("model", {})
            if model.get("type", "BPE") != "BPE" or not isinstance(model.get("vocab"), dict):
                raise ValueError(f"directory: tokenizer.json holds a {model.get('type')!r} model, RoBERTa needs 'BPE'")
            vocab = model["vocab"]
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
            merges_source = directory / "tokenizer.json"
        else:
            vocab = read_vocab_json(directory / "vocab.json")
            merges_source = directory / "merges.txt"
            with reading(merges_source, "BPE merges"):  # e.g. "Merges text file invalid at line 3"
                merges = models.BPE.read_file(str(directory / "vocab.json"), str(merges_source))[1]

        added, named, extra = read_added_tokens(directory, config, spec, _DEFAULT_TOKENS)
        add_prefix_space = bool(config.get("add_prefix_space", cls.default_add_prefix_space))
        with reading(merges_source, "BPE merges"):  # a merge of pieces the vocabulary lacks
            tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                       end_of_word_suffix="", fuse_unk=False))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        tok.decoder = decoders.ByteLevel()
        add_tokens(tok, added, list(named.values()), extra)
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
        special_tokens = {k: (str(v) if v is not None else None) for k, v in named.items()}
        for name in ("sep_token", "cls_token"):
            if special_tokens[name] is None:
                raise ValueError(f"directory: tokenizer_config.json sets {name} to null; RoBERTa needs it")
        sep, cls_tok = special_tokens["sep_token"], special_tokens["cls_token"]
        tok.post_processor = processors.RobertaProcessing(
            (sep, tok.token_to_id(sep)), (cls_tok, tok.token_to_id(cls_tok)),
            trim_offsets=bool(config.get("trim_offsets", True)), add_prefix_space=add_prefix_space)

        padding = spec.get("padding") or {}
        padding_side = config.get("padding_side") or str(padding.get("direction", "right")).lower()
        max_len = config.get("model_max_length")
        max_len = int(max_len) if isinstance(max_len, (int, float)) and 0 < max_len < 1e15 else None
        return cls(tok, special_tokens, padding_side, add_prefix_space, max_len)

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of a text (`<s> A </s>`) or a pair (`<s> A </s></s> B </s>`), shape [seq]."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {describe(text)}")
        if text_pair is not None and not isinstance(text_pair, str):
            raise ValueError(f"text_pair: expected a str or None, got {describe(text_pair)}")
        # transformers treats an empty single text_pair as no pair (`if text_pair`): "<s> A </s>".
        return self._tokenizer.encode(text, text_pair or None, add_special_tokens=bool(add_special_tokens)).ids

    def __call__(self, texts: str | list[str], text_pairs: str | list[str] | None = None,
                 add_special_tokens: bool = True, padding_side: str | None = None,
                 max_length: int | None = None, truncation: bool = False) -> dict[str, np.ndarray]:
        """Tokenize a text or a batch (optionally paired with `text_pairs`), padded to the longest sequence.

        Returns {"input_ids": int32 [batch, seq], "attention_mask": int32 [batch, seq]} (batch = 1 for a str),
        padded with pad_token_id on `padding_side` (default `self.padding_side`). With `truncation=True`, each
        sequence, special tokens included, is cut to `max_length` (default `self.model_max_length`; none when
        both are None) from the right, pairs by transformers' "longest_first" rule. `max_length` without
        `truncation=True` is an error (transformers would silently not truncate, or truncate with a warning).
        """
        single = isinstance(texts, str)
        if single:
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"texts: expected a str or a list of str, got {describe(texts)}")
        if not texts:
            raise ValueError("texts: got an empty list, expected at least one text")
        if single and isinstance(text_pairs, str):
            # As transformers: an empty pair of a single text counts as none; in a batch it is a pair.
            text_pairs = [text_pairs] if text_pairs else None
        if text_pairs is not None:
            if not isinstance(text_pairs, (list, tuple)) or not all(isinstance(t, str) for t in text_pairs):
                expected = "a str (texts is a str)" if single else "a list of str (texts is a list)"
                raise ValueError(f"text_pairs: expected {expected}, got {describe(text_pairs)}")
            if len(text_pairs) != len(texts):
                raise ValueError(f"text_pairs: got {len(text_pairs)} texts for {len(texts)} texts, expected as many")
        side = self.padding_side if padding_side is None else check_padding_side(padding_side)
        if not isinstance(truncation, bool):
            raise ValueError(f"truncation: expected True or False, got {truncation!r}")
        if max_length is not None and not truncation:
            raise ValueError(f"max_length: got {max_length!r} with truncation=False; pass truncation=True to truncate")
        limit = (max_length if max_length is not None else self.model_max_length) if truncation else None
        if limit is not None:
            n_special = (self._tokenizer.post_processor.num_special_tokens_to_add(text_pairs is not None)
                         if add_special_tokens else 0)
            if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < max(n_special, 1):
                raise ValueError(f"max_length: expected an int >= {max(n_special, 1)} (room for the special tokens"
                                 f" and one token), got {limit!r}")

        inputs = list(texts) if text_pairs is None else list(zip(texts, text_pairs))
        if limit is None:
            encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=bool(add_special_tokens))
        else:
            with self._truncation_lock:
                self._tokenizer.enable_truncation(int(limit), stride=0, strategy="longest_first", direction="right")
                try:
                    encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=bool(add_special_tokens))
                finally:
                    self._tokenizer.no_truncation()

        return self._pad(encodings, side)
