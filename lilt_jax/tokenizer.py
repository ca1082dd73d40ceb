"""LiLT's document tokenizers: words + one box per word -> token ids, token boxes and token labels.

LiLT checkpoints declare transformers' `LayoutLMv3Tokenizer` (English, byte-level BPE: `LiltTokenizer`) or
`LayoutXLMTokenizer` (multilingual, SentencePiece Unigram: `LayoutXLMTokenizer`). Both take pre-tokenized words
with one [x0, y0, x1, y1] box per word on a 0..1000 page scale (see `normalize_box`) and give what
transformers 5.x's classes give:

* every word is tokenized on its own (as a pre-tokenized piece, with a prefix space when add_prefix_space, the
  checkpoints' setting and both classes' default); each sub-token gets its word's box, `<s>` the cls box, `</s>`
  the sep box, padding the pad box (tokenizer_config.json's `cls_token_box`, `sep_token_box`, `pad_token_box`;
  default [0, 0, 0, 0], LayoutXLM's sep box [1000, 1000, 1000, 1000]);
* questions: `tok(question, words, boxes=...)` gives `<s> question </s></s> words </s>`; the question is split on
  whitespace into words (`str.split()`) and its tokens get the pad box;
* word labels: the first sub-token of a word gets the word's label, the other sub-tokens (unless
  only_label_first_subword is false), special tokens and padding get pad_token_label (-100);
* truncation cuts tokens, so boxes and labels are cut alike; padding on the right unless told otherwise.

Copied transformers quirks (on purpose, the oracle is transformers 5.23):
* a word that tokenizes to nothing ("" for both, all-space words for LayoutXLM) silently vanishes with its box
  and label;
* LayoutXLM labels every sub-token that starts at the word's first character, so a word split as "▁" + "H" + ...
  labels both "▁" and "H"; its normalizer is only transformers 5.x's Strip(right) + Replace(" {2,}", "▁")
  (the checkpoints' NFKC-like precompiled map is dropped, so "ｆｕｌｌ" stays full-width).

Departures from transformers, on purpose: bad input raises ValueError naming the argument and the allowed range
(transformers accepts float boxes, 3-number boxes, coordinates past 1000 and empty word lists, and logs an error
instead of truncating when max_length cannot hold the special tokens); with question + words + word_labels,
question tokens get pad_token_label (transformers 5.x labels them with the *document* words' labels at the
question words' indices, and raises IndexError when the question has more words than the document).

Shapes: B = batch size (1 for a single example), T = longest tokenized example (or max_length with
padding="max_length"); outputs are int32 numpy arrays.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from common.files import reading
from common.roberta_tokenizer import RobertaTokenizer
from common.tokenization import (TokenizerBase, add_tokens, check_padding_side, describe, pad_rows,
                                 read_added_tokens, read_json_if_present, read_tokenizer_json)

LAYOUTLMV3_CLASSES = ("LayoutLMv3Tokenizer", "LayoutLMv3TokenizerFast")
LAYOUTXLM_CLASSES = ("LayoutXLMTokenizer", "LayoutXLMTokenizerFast")
MAX_COORDINATE = 1000  # boxes are normalized to a 0..1000 page, as LayoutLM's and LiLT's 2-D embeddings expect
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_BOX_RULE = "[x0, y0, x1, y1] of ints in 0..1000 with x0 <= x1 and y0 <= y1"
_INT32 = (-2**31, 2**31 - 1)


def normalize_box(box, width, height) -> list[int]:
    """A box in page units (pixels, points) -> [x0, y0, x1, y1] ints in 0..1000, as transformers' LayoutLMv3
    image processor computes it: `int(1000 * (x / width))`, rounding down.

    Args:
        box: 4 real numbers [x0, y0, x1, y1] with 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height.
        width, height: the page size, positive finite numbers in the box's units.
    Boxes outside the page are an error, never clamped: they mean the wrong page size or a bad OCR box.
    """
    for name, value in (("width", width), ("height", height)):
        if not _is_real(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}: expected a positive finite number (the page size), got {describe(value)}")
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4 \
            or not all(_is_real(v) and math.isfinite(v) for v in box):
        raise ValueError(f"box: expected 4 finite numbers [x0, y0, x1, y1], got {describe(box)}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
        raise ValueError(f"box: expected 0 <= x0 <= x1 <= width={width} and 0 <= y0 <= y1 <= height={height}, "
                         f"got {list(box)}")
    return [int(1000 * (x0 / width)), int(1000 * (y0 / height)), int(1000 * (x1 / width)), int(1000 * (y1 / height))]


@dataclass(frozen=True)
class LayoutSettings:
    """The layout fields of tokenizer_config.json, with transformers' LayoutLMv3Tokenizer defaults."""

    cls_token_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    sep_token_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_token_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_token_label: int = -100
    only_label_first_subword: bool = True

    @classmethod
    def from_config(cls, config: dict, sep_token_box=(0, 0, 0, 0)) -> "LayoutSettings":
        """Read (and check) the fields of a tokenizer_config.json dict; `sep_token_box` is the class default."""
        where = "directory: tokenizer_config.json"
        boxes = {name: _check_box(config.get(name, default), f"{where} {name}")
                 for name, default in (("cls_token_box", (0, 0, 0, 0)), ("sep_token_box", sep_token_box),
                                       ("pad_token_box", (0, 0, 0, 0)))}
        label = config.get("pad_token_label", -100)
        if not _is_int(label) or not _INT32[0] <= label <= _INT32[1]:
            raise ValueError(f"{where} pad_token_label: expected an int32, got {describe(label)}")
        first = config.get("only_label_first_subword", True)
        if not isinstance(first, bool):
            raise ValueError(f"{where} only_label_first_subword: expected true or false, got {describe(first)}")
        return cls(**boxes, pad_token_label=int(label), only_label_first_subword=first)


class _DocumentMixin:
    """`__call__` of the document tokenizers, over a `tokenizers.Tokenizer` with a pair template.

    The concrete class provides `_tokenizer`, `_truncation_lock`, `layout`, `padding_side`, `model_max_length`,
    `pad_token_id`, `cls_token_id`, `sep_token_id`, and `_first_subwords` (which tokens start a word).
    """

    layout: LayoutSettings

    def _first_subwords(self, enc, word: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """[T] bool: the token starts a word (its word or sequence differs from the previous token's), as
        transformers' layout tokenizers track the previous word id."""
        prev_word = np.concatenate([[-1], word[:-1]])
        prev_seq = np.concatenate([[-1], seq[:-1]])
        return (word != prev_word) | (seq != prev_seq)

    def __call__(self, text, text_pair=None, boxes=None, word_labels=None, add_special_tokens: bool = True,
                 padding: str = "longest", padding_side: str | None = None, max_length: int | None = None,
                 truncation: bool | str = False, return_word_ids: bool = False) -> dict[str, np.ndarray]:
        """Tokenize words with their boxes (and labels), a question with words, or a batch of either.

        Args:
            text: the words of one example (list of str), a batch of them (list of lists of str), or, with
                `text_pair`, a question (str) or a batch of questions (list of str).
            text_pair: the words (list of str, or a batch: list of lists) when `text` holds questions.
            boxes: one [x0, y0, x1, y1] per word (ints in 0..1000, x0 <= x1, y0 <= y1): a list of boxes or an
                int array [words, 4] per example, nested once more for a batch.
            word_labels: optional int label per word, shaped like the words.
            add_special_tokens: put `<s>` ... `</s>` (and `</s></s>` between question and words).
            padding: "longest" (pad to the longest example) or "max_length" (pad to `max_length`, default
                `model_max_length`).
            padding_side: "left" or "right" (default `self.padding_side`).
            max_length, truncation: with truncation True / "longest_first" (cut the longer of question and
                words token by token), "only_first" (the question) or "only_second" (the words), every example
                is cut to `max_length` tokens (default `model_max_length`), special tokens included.
            return_word_ids: also return "word_ids", each token's word index (-1: special, question, padding).

        Returns:
            {"input_ids": [B, T], "attention_mask": [B, T], "bbox": [B, T, 4]} plus "labels" [B, T] with
            word_labels and "word_ids" [B, T] with return_word_ids; int32, B = 1 for a single example.
        """
        questions, words, batched = _parse_text(text, text_pair)
        if boxes is None:
            raise ValueError(f"boxes: required, one {_BOX_RULE} per word")
        token_boxes = _parse_per_word(boxes, words, batched, "boxes", _example_boxes)
        labels = None if word_labels is None else _parse_per_word(word_labels, words, batched, "word_labels",
                                                                  _example_labels)
        pair = questions is not None
        side = self.padding_side if padding_side is None else check_padding_side(padding_side)
        limit, strategy = self._length_limit(padding, max_length, truncation, pair, add_special_tokens)
        if not isinstance(return_word_ids, bool):
            raise ValueError(f"return_word_ids: expected True or False, got {return_word_ids!r}")

        # As transformers: the question is split on whitespace and, like the words, encoded as pre-tokenized.
        inputs = words if not pair else [(q.split(), w) for q, w in zip(questions, words)]
        encodings = self._encode(inputs, bool(add_special_tokens), limit if strategy else None, strategy)
        length = max(len(e.ids) for e in encodings)
        if padding == "max_length":
            if length > limit:
                row = next(i for i, e in enumerate(encodings) if len(e.ids) == length)
                raise ValueError(f"max_length: example {row} has {length} tokens, more than max_length={limit}; "
                                 f"pass truncation=True to cut it")
            length = limit

        rows = [self._example_layout(e, token_boxes[i], None if labels is None else labels[i], pair)
                for i, e in enumerate(encodings)]
        out = {"input_ids": pad_rows([np.asarray(e.ids) for e in encodings], length, side, self.pad_token_id),
               "attention_mask": pad_rows([np.ones(len(e.ids)) for e in encodings], length, side, 0),
               "bbox": pad_rows([r[0] for r in rows], length, side, self.layout.pad_token_box)}
        if labels is not None:
            out["labels"] = pad_rows([r[1] for r in rows], length, side, self.layout.pad_token_label)
        if return_word_ids:
            out["word_ids"] = pad_rows([r[2] for r in rows], length, side, -1)
        return out

    def _length_limit(self, padding, max_length, truncation, pair: bool, add_special_tokens) -> tuple:
        """(length limit or None, truncation strategy or None), after checking the arguments."""
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding: expected 'longest' or 'max_length', got {padding!r}")
        if not isinstance(add_special_tokens, bool):
            raise ValueError(f"add_special_tokens: expected True or False, got {add_special_tokens!r}")
        if truncation is True:
            strategy = "longest_first"
        elif truncation is False:
            strategy = None
        elif truncation in TRUNCATION_STRATEGIES:
            strategy = truncation
        else:
            raise ValueError(f"truncation: expected True, False or one of {TRUNCATION_STRATEGIES}, got {truncation!r}")
        if strategy == "only_second" and not pair:
            raise ValueError("truncation: 'only_second' cuts the words of a question + words pair; "
                             "this input has no question (use True)")
        if max_length is not None and strategy is None and padding != "max_length":
            raise ValueError(f"max_length: got {max_length!r} without truncation or padding='max_length'; "
                             "pass truncation=True to truncate")
        if strategy is None and padding != "max_length":
            return None, None
        limit = max_length if max_length is not None else self.model_max_length
        n_special = self._tokenizer.post_processor.num_special_tokens_to_add(pair) if add_special_tokens else 0
        if isinstance(limit, bool) or not isinstance(limit, Integral) or limit < max(n_special, 1):
            raise ValueError(f"max_length: expected an int >= {max(n_special, 1)} (room for the special tokens and "
                             f"one token), got {limit!r}")
        return int(limit), strategy

    def _encode(self, inputs: list, add_special_tokens: bool, limit: int | None, strategy: str | None) -> list:
        """tokenizers Encodings of pre-tokenized inputs, truncated to `limit` tokens with `strategy` if given."""
        if limit is None:
            return self._tokenizer.encode_batch(inputs, is_pretokenized=True, add_special_tokens=add_special_tokens)
        with self._truncation_lock:  # truncation is a setting of the shared backend: set for this call only
            self._tokenizer.enable_truncation(limit, stride=0, strategy=strategy, direction="right")
            try:
                return self._tokenizer.encode_batch(inputs, is_pretokenized=True,
                                                    add_special_tokens=add_special_tokens)
            except Exception as e:  # tokenizers raises a bare Exception when the chosen side is too short
                if "Truncation error" not in str(e):
                    raise
                raise ValueError(f"max_length: {limit} tokens cannot hold the special tokens and the part "
                                 f"truncation={strategy!r} keeps ({e})") from None
            finally:
                self._tokenizer.no_truncation()

    def _example_layout(self, enc, boxes: np.ndarray, labels: np.ndarray | None, pair: bool) -> tuple:
        """(bbox [T, 4], labels [T] or None, word_ids [T]) of one unpadded encoding.

        Word tokens of the document take their word's box (question tokens the pad box); tokens outside words
        take the box of their id, as transformers: cls, else sep, else pad, else (never in practice) sep.
        """
        ids = np.asarray(enc.ids)
        word = np.array([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
        seq = np.array([-1 if s is None else s for s in enc.sequence_ids], dtype=np.int64)
        doc = (word >= 0) & (seq == (1 if pair else 0))
        lay = self.layout
        bbox = np.empty((len(ids), 4), dtype=np.int64)
        bbox[:] = lay.sep_token_box
        bbox[(word >= 0) | (ids == self.pad_token_id)] = lay.pad_token_box  # question words and padding
        bbox[(word < 0) & (ids == self.sep_token_id)] = lay.sep_token_box
        bbox[(word < 0) & (ids == self.cls_token_id)] = lay.cls_token_box
        bbox[doc] = boxes[word[doc]]
        word_ids = np.where(doc, word, -1)
        if labels is None:
            return bbox, None, word_ids
        take = doc & self._first_subwords(enc, word, seq) if lay.only_label_first_subword else doc
        out = np.full(len(ids), lay.pad_token_label, dtype=np.int64)
        out[take] = labels[word[take]]
        return bbox, out, word_ids

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """The special tokens `__call__` adds to one example: 2 (`<s> A </s>`), or 4 with a question."""
        return self._tokenizer.post_processor.num_special_tokens_to_add(bool(pair))

    def windows(self, question: str, words, boxes, *, max_length: int, stride: int) -> list[dict[str, np.ndarray]]:
        """A question + words pair cut into windows of at most `max_length` tokens, as transformers' tokenizer
        gives them with truncation="only_second", max_length, stride and return_overflowing_tokens=True: every
        window holds the whole question and the special tokens, and the words go on where the previous window's
        stop, `stride` tokens back (consecutive windows share `stride` tokens of words).

        Args:
            question: a str (split on whitespace, as `__call__` does); words, boxes: one example's, as `__call__`.
            max_length: the most tokens of a window, special tokens included; stride: the overlap, >= 0.

        Returns:
            one unpadded dict per window, the first window first: {"input_ids" [T], "attention_mask" [T],
            "bbox" [T, 4], "word_ids" [T]} int32 (word_ids: the token's index in the whole `words`, -1 for the
            question, special tokens); a pair that fits max_length is one window.
        """
        questions, word_lists, batched = _parse_text(question, words)
        if batched:
            raise ValueError(f"text: windows() cuts one example; expected a question (str), got {describe(question)}")
        token_boxes = _example_boxes(boxes, len(word_lists[0]), "boxes")
        for name, value, smallest in (("max_length", max_length, 1), ("stride", stride, 0)):
            if not _is_int(value) or value < smallest:
                raise ValueError(f"{name}: expected an int >= {smallest}, got {describe(value)}")
        pair = [(questions[0].split(), word_lists[0])]
        (whole,) = self._encode(pair, True, None, None)
        encodings = [whole]
        if len(whole.ids) > max_length:
            kept = sum(1 for s in whole.sequence_ids if s != 1)  # question + special tokens: in every window
            if max_length - kept <= stride:  # `tokenizers` panics on this: say why instead
                raise ValueError(f"stride: the question and the special tokens take {kept} of max_length="
                                 f"{max_length} tokens, leaving {max(max_length - kept, 0)} for the words of each "
                                 f"window, not more than stride={stride} (the overlap of windows)")
            encodings = self._encode_overflowing(pair[0], int(max_length), int(stride))
        rows = []
        for enc in encodings:
            bbox, _, word_ids = self._example_layout(enc, token_boxes, None, True)
            rows.append({"input_ids": np.asarray(enc.ids, np.int32),
                         "attention_mask": np.asarray(enc.attention_mask, np.int32),
                         "bbox": bbox.astype(np.int32), "word_ids": word_ids.astype(np.int32)})
        return rows

    def _encode_overflowing(self, pair: tuple, max_length: int, stride: int) -> list:
        """The encodings of `pair` (pre-tokenized question words, words) truncated "only_second" to max_length
        tokens with its overflow windows, each overlapping the previous one by `stride` tokens of words."""
        with self._truncation_lock:  # truncation is a setting of the shared backend: set for this call only
            self._tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second", direction="right")
            try:
                first = self._tokenizer.encode(*pair, is_pretokenized=True, add_special_tokens=True)
            finally:
                self._tokenizer.no_truncation()
        return [first] + list(first.overflowing)


class LiltTokenizer(_DocumentMixin, RobertaTokenizer):
    """LiLT's English tokenizer: transformers' `LayoutLMv3Tokenizer` (byte-level BPE) with boxes and labels.

    A `RobertaTokenizer` (same files, ids, special tokens, `encode`, `decode`) whose `__call__` takes words and
    boxes (see `_DocumentMixin.__call__`). `layout` holds the special-token boxes and label settings.
    """

    def __init__(self, tokenizer: Tokenizer, special_tokens: dict[str, str], padding_side: str,
                 add_prefix_space: bool, model_max_length: int | None = None, layout: LayoutSettings | None = None):
        super().__init__(tokenizer, special_tokens, padding_side, add_prefix_space, model_max_length)
        self.layout = layout if layout is not None else LayoutSettings()
        if self.pad_token_id is None:
            raise ValueError("directory: tokenizer_config.json sets pad_token to null; padding needs it")

    accepted_classes = LAYOUTLMV3_CLASSES
    default_add_prefix_space = True  # LayoutLMv3's default (RoBERTa's is False)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LiltTokenizer":
        """Read a LiLT checkpoint directory as RobertaTokenizer does (tokenizer.json, else vocab.json +
        merges.txt; tokenizer_config.json, special_tokens_map.json), with LayoutLMv3's defaults: add_prefix_space
        true and the layout fields of tokenizer_config.json."""
        declared = read_json_if_present(Path(directory) / "tokenizer_config.json").get("tokenizer_class") \
            if Path(directory).is_dir() else None
        if declared in LAYOUTXLM_CLASSES:
            raise ValueError(f"directory: tokenizer_config.json declares {declared!r}, expected one of "
                             f"{LAYOUTLMV3_CLASSES}; load it with LayoutXLMTokenizer")
        tok = super().from_pretrained(directory)
        tok.layout = LayoutSettings.from_config(read_json_if_present(Path(directory) / "tokenizer_config.json"))
        return tok



class LayoutXLMTokenizer(_DocumentMixin, TokenizerBase):
    """LiLT's multilingual tokenizer: transformers 5.x's `LayoutXLMTokenizer` (SentencePiece Unigram, read from
    tokenizer.json) with boxes and labels; `__call__` as `LiltTokenizer`'s (see `_DocumentMixin.__call__`).

    Attributes: the special token ids (`cls_token_id`, ...), `vocab_size`, `padding_side`, `add_prefix_space`,
    `model_max_length`, `special_tokens` and `layout`, as on `LiltTokenizer`.
    """

    def __init__(self, tokenizer: Tokenizer, special_tokens: dict[str, str], padding_side: str,
                 add_prefix_space: bool, model_max_length: int | None = None, layout: LayoutSettings | None = None):
        self._tokenizer = tokenizer
        self._truncation_lock = threading.Lock()
        self.padding_side = check_padding_side(padding_side)
        self.add_prefix_space = bool(add_prefix_space)
        self.model_max_length = model_max_length
        self.layout = layout if layout is not None else LayoutSettings(sep_token_box=(1000, 1000, 1000, 1000))
        self._set_special_tokens(tokenizer, special_tokens)
        for name in ("cls_token", "sep_token", "pad_token"):
            if getattr(self, f"{name}_id") is None:
                raise ValueError(f"directory: tokenizer_config.json sets {name} to null; LayoutXLM needs it")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "LayoutXLMTokenizer":
        """Read tokenizer.json (a Unigram model), tokenizer_config.json and special_tokens_map.json and build
        the backend as transformers 5.x's LayoutXLMTokenizer rebuilds it (only the vocabulary comes from the
        file; unk id 3, normalizer Strip(right) + Replace(" {2,}", "▁"), Metaspace, `<s> A </s></s> B </s>`)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"directory: {str(directory)!r} is not a directory")
        if not (directory / "tokenizer.json").is_file():
            spm = " (only sentencepiece.bpe.model: convert it once with transformers + sentencepiece, " \
                  "AutoTokenizer.from_pretrained(d).save_pretrained(d))" \
                if (directory / "sentencepiece.bpe.model").is_file() else ""
            raise ValueError(f"directory: no tokenizer.json in {str(directory)!r}{spm}")
        config = read_json_if_present(directory / "tokenizer_config.json")
        declared = config.pop("tokenizer_class", None)
        if declared is not None and declared not in LAYOUTXLM_CLASSES:
            raise ValueError(f"directory: tokenizer_config.json declares {declared!r}, expected one of "
                             f"{LAYOUTXLM_CLASSES}")
        spec = read_tokenizer_json(directory / "tokenizer.json")
        vocab = spec.get("model", {}).get("vocab")
        if spec.get("model", {}).get("type") != "Unigram" or not isinstance(vocab, list) or len(vocab) < 4:
            raise ValueError(f"directory: tokenizer.json holds a {spec.get('model', {}).get('type')!r} model, "
                             "LayoutXLM needs 'Unigram' with at least <s> <pad> </s> <unk>")
        layout = LayoutSettings.from_config(config, sep_token_box=(1000, 1000, 1000, 1000))
        added, named, extra = read_added_tokens(directory, config, spec, _XLM_DEFAULT_TOKENS,
                                                lstrip_names=("mask_token",))

        add_prefix_space = bool(config.get("add_prefix_space", True))
        # transformers hard-codes unk id 3 (<unk> of the fairseq order <s> <pad> </s> <unk>), whatever the file says.
        with reading(directory / "tokenizer.json", "tokenizer"):  # vocab entries that are not [piece, score]
            tok = Tokenizer(models.Unigram([(str(p), float(s)) for p, s in vocab], unk_id=3, byte_fallback=False))
        tok.normalizer = normalizers.Sequence([normalizers.Strip(left=False, right=True),
                                               normalizers.Replace(Regex(" {2,}"), "▁")])
        scheme = "always" if add_prefix_space else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        add_tokens(tok, added, list(named.values()), extra)
        tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
        special_tokens = {k: (str(v) if v is not None else None) for k, v in named.items()}
        cls_tok, sep = special_tokens["cls_token"], special_tokens["sep_token"]
        if cls_tok is None or sep is None:
            raise ValueError("directory: tokenizer_config.json sets cls_token or sep_token to null; "
                             "LayoutXLM needs both")
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls_tok}:0 $A:0 {sep}:0", pair=f"{cls_tok}:0 $A:0 {sep}:0 {sep}:0 $B:0 {sep}:0",
            special_tokens=[(cls_tok, tok.token_to_id(cls_tok)), (sep, tok.token_to_id(sep))])
        padding_side = config.get("padding_side") or str((spec.get("padding") or {}).get("direction", "right")).lower()
        max_len = config.get("model_max_length")
        max_len = int(max_len) if isinstance(max_len, (int, float)) and 0 < max_len < 1e15 else None
        return cls(tok, special_tokens, padding_side, add_prefix_space, max_len, layout)

    def _first_subwords(self, enc, word: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """[T] bool: the token starts a word and its offset in the word is 0 (transformers >= 5.24's LayoutXLM
        rule: a lone "▁" piece starts the word, so the piece after it, also at offset 0, is not labelled)."""
        at_word_start = np.array([start == 0 for start, _ in enc.offsets], dtype=bool)
        return super()._first_subwords(enc, word, seq) & at_word_start


def load_tokenizer(directory: str | os.PathLike) -> LiltTokenizer | LayoutXLMTokenizer:
    """The tokenizer a LiLT checkpoint declares: LayoutXLMTokenizer for `LayoutXLMTokenizer[Fast]` (or, with no
    declared class, a Unigram tokenizer.json), else LiltTokenizer."""
    directory = Path(directory)
    declared = read_json_if_present(directory / "tokenizer_config.json").get("tokenizer_class") \
        if directory.is_dir() else None
    if declared is None and (directory / "tokenizer.json").is_file():
        model = read_tokenizer_json(directory / "tokenizer.json").get("model", {})
        declared = LAYOUTXLM_CLASSES[0] if model.get("type") == "Unigram" else None
    return (LayoutXLMTokenizer if declared in LAYOUTXLM_CLASSES else LiltTokenizer).from_pretrained(directory)


# ----------------------------------------------------------------------------------------------------------------
# Loading helpers


_XLM_DEFAULT_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                       "pad_token": "<pad>", "cls_token": "<s>",
                       # transformers' LayoutXLMTokenizer: "<mask>" behaves like a word (takes the space before it)
                       "mask_token": AddedToken("<mask>", lstrip=True, rstrip=False, special=True)}


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _parse_text(text, text_pair) -> tuple[list[str] | None, list[list[str]], bool]:
    """(questions or None, words of each example, whether the input is a batch); one example is a batch of 1."""
    if text_pair is None:
        if isinstance(text, (list, tuple)) and text and all(isinstance(t, (list, tuple)) for t in text):
            return None, [_check_words(t, f"text[{i}]") for i, t in enumerate(text)], True
        if isinstance(text, str):
            raise ValueError("text: expected words (a list of str) or a batch of them (a list of lists of str), "
                             "got a str; a question goes with its words: tok(question, words, boxes=...)")
        return None, [_check_words(text, "text")], False
    if isinstance(text, str):
        return [text], [_check_words(text_pair, "text_pair")], False
    if not isinstance(text, (list, tuple)) or not text or not all(isinstance(q, str) for q in text):
        raise ValueError(f"text: with text_pair, expected a question (str) or a non-empty list of questions, "
                         f"got {describe(text)}")
    if not isinstance(text_pair, (list, tuple)) or not all(isinstance(w, (list, tuple)) for w in text_pair):
        raise ValueError(f"text_pair: expected a list of word lists (text is a list of questions), "
                         f"got {describe(text_pair)}")
    if len(text_pair) != len(text):
        raise ValueError(f"text_pair: got {len(text_pair)} word lists for {len(text)} questions, expected as many")
    return list(text), [_check_words(w, f"text_pair[{i}]") for i, w in enumerate(text_pair)], True


def _check_words(words, where: str) -> list[str]:
    if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{where}: expected words, a list of str, got {describe(words)}")
    if not words:
        raise ValueError(f"{where}: got no words, expected at least one")
    return list(words)


def _parse_per_word(value, words: list[list[str]], batched: bool, name: str, check_example) -> list[np.ndarray]:
    """One checked array per example of a per-word argument (boxes, word_labels), nested like the words."""
    if not batched:
        return [check_example(value, len(words[0]), name)]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != len(words):
        got = f"{len(value)} entries" if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) \
            else describe(value)
        raise ValueError(f"{name}: expected one entry per example ({len(words)}), got {got}")
    return [check_example(v, len(w), f"{name}[{i}]") for i, (v, w) in enumerate(zip(value, words))]


def _example_boxes(value, n_words: int, where: str) -> np.ndarray:
    """[n_words, 4] int64 boxes of one example, each checked by `_check_box`."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{where}: expected one {_BOX_RULE} per word, got {describe(value)}")
    if len(value) != n_words:
        nested = " (boxes nest one level deeper than words: [[x0, y0, x1, y1], ...])" \
            if len(value) == 4 and all(_is_int(v) for v in value) else ""
        raise ValueError(f"{where}: got {len(value)} boxes for {n_words} words, expected one box per word{nested}")
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == 4 \
            and np.issubdtype(value.dtype, np.integer):
        arr = value.astype(np.int64)
        bad = (arr < 0) | (arr > MAX_COORDINATE)
        bad = bad.any(1) | (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
        if bad.any():  # let the per-box check word the error
            j = int(np.argmax(bad))
            _check_box(value[j], f"{where}[{j}]")
        return arr
    return np.array([_check_box(b, f"{where}[{j}]") for j, b in enumerate(value)], dtype=np.int64).reshape(-1, 4)


def _check_box(box, where: str) -> tuple[int, int, int, int]:
    """A [x0, y0, x1, y1] of ints in 0..1000 with x0 <= x1 and y0 <= y1, else ValueError naming `where`."""
    if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4 \
            or not all(_is_int(v) for v in box):
        raise ValueError(f"{where}: expected {_BOX_RULE}, got {describe(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    if not all(0 <= v <= MAX_COORDINATE for v in (x0, y0, x1, y1)):
        raise ValueError(f"{where}: coordinates must be in 0..1000 (normalize_box scales page coordinates), "
                         f"got {[x0, y0, x1, y1]}")
    if x1 < x0 or y1 < y0:
        raise ValueError(f"{where}: expected x0 <= x1 and y0 <= y1, got {[x0, y0, x1, y1]}")
    return x0, y0, x1, y1


def _example_labels(value, n_words: int, where: str) -> np.ndarray:
    """[n_words] int64 labels of one example (ints in the int32 range)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{where}: expected one int label per word, got {describe(value)}")
    if len(value) != n_words:
        raise ValueError(f"{where}: got {len(value)} labels for {n_words} words, expected one label per word")
    for j, v in enumerate(value):
        if not _is_int(v) or not _INT32[0] <= v <= _INT32[1]:
            raise ValueError(f"{where}[{j}]: expected an int label in [{_INT32[0]}, {_INT32[1]}], got {describe(v)}")
    return np.array([int(v) for v in value], dtype=np.int64)


def _is_int(value) -> bool:
    # bool is an int to Python, but a True coordinate or label is a caller bug.
    return isinstance(value, (Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, (Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
