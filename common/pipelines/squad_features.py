"""Question answering with a tokenizer that has no character offsets (XLM's): the SQuAD features transformers 4.57's
question-answering pipeline builds for such tokenizers (``squad_convert_examples_to_features``), and the answer
text of a span of their tokens.

Words, not characters, link tokens to the context. The context is split on whitespace (4.57's: space, tab, CR,
LF, U+202F) and each word is tokenized on its own, so every context token belongs to exactly one word. The
question is tokenized whole and cut to ``max_question_len`` tokens. Window k is ``<s> question </s> context
tokens [k * doc_stride, k * doc_stride + room) </s>`` with room = max_seq_len - question tokens - the 3 special
tokens: doc_stride is the step from one window to the next (with a tokenizer that has offsets it is the
overlap), and windows are made until one reaches the end of the context.

An answer is whole words (``ContextWords.answer``), as 4.57 reports it: start is the first character of its first
word; end is the character before the word that follows its last word, or the context's last character when the
answer ends with the context's last word (4.57 counts the whitespace after a word as part of it and reports its
last character, so a final word's end is one short of its length); the text is the words joined by single spaces.
"""

from __future__ import annotations

import dataclasses

import numpy as np

WHITESPACE = frozenset(" \t\r\n\u202f")  # 4.57's SQuAD word separators (not str.isspace: no NBSP, no U+3000)
NO_WORD = -1  # word_of_token of a token outside the context (question, special tokens)


@dataclasses.dataclass(frozen=True)
class ContextWords:
    """The whitespace words of a context. starts[w]: index of the first character of word w; ends[w]: 4.57's end
    of it, the last character before word w + 1 (the context's last character for the last word)."""

    words: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    @classmethod
    def split(cls, context: str) -> "ContextWords":
        words, starts = [], []
        after_blank = True
        for i, char in enumerate(context):
            if char in WHITESPACE:
                after_blank = True
                continue
            if after_blank:
                words.append(char)
                starts.append(i)
            else:
                words[-1] += char
            after_blank = False
        ends = [s - 1 for s in starts[1:]] + [len(context) - 1] if words else []
        return cls(tuple(words), tuple(starts), tuple(ends))

    def answer(self, first: int, last: int, score: float) -> dict:
        """{"score", "start", "end", "answer"} of the words first..last (inclusive)."""
        return {"score": score, "start": self.starts[first], "end": self.ends[last],
                "answer": " ".join(self.words[first:last + 1])}


@dataclasses.dataclass(frozen=True)
class SquadWindow:
    """One window (one model row), all arrays [T] for its T tokens.

    input_ids, token_type_ids (0 for ``<s> question </s>``, 1 after: 4.57 gives the model token types);
    p_mask: 1 where a token cannot be in an answer: the question, every special token (the tokenizer's
    all_special_ids, ``<unk>`` included), except the cls token (cls_index, its first occurrence: for XLM, whose
    cls token is ``</s>``, the separator after the question), which the SQuAD heads read for "no answer";
    word_of_token: the context word of each context token, NO_WORD elsewhere."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    p_mask: np.ndarray
    word_of_token: np.ndarray
    cls_index: int

    @property
    def answer_tokens(self) -> np.ndarray:
        """[T] bool: the tokens an answer may start or end on (context tokens p_mask leaves open)."""
        return (self.word_of_token != NO_WORD) & (self.p_mask == 0)


def squad_windows(tokenizer, question: str, words: ContextWords, *, max_seq_len: int, doc_stride: int,
                  max_question_len: int, where: str) -> list[SquadWindow]:
    """The windows of a question over a context's words (module docstring); ValueError naming ``where`` when the
    context has no tokens or the windows cannot hold every context token."""
    query = question_ids(tokenizer, question, max_question_len)
    doc_ids, token_words = [], []
    for w, word in enumerate(words.words):
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        doc_ids += ids
        token_words += [w] * len(ids)
    if not doc_ids:
        raise ValueError(f"{where}['context']: the context has no tokens (its words tokenize to nothing)")
    head = len(tokenizer.build_inputs_with_special_tokens(query))  # <s> question </s>: where the context starts
    special = len(tokenizer.build_inputs_with_special_tokens([], []))
    room = max_seq_len - len(query) - special
    check_room(room, len(doc_ids), len(query), special, max_seq_len, doc_stride, where)
    windows = []
    for begin in range(0, len(doc_ids), doc_stride):
        piece = slice(begin, begin + room)
        windows.append(window(tokenizer, query, doc_ids[piece], token_words[piece], head))
        if begin + room >= len(doc_ids):
            break
    return windows


def question_ids(tokenizer, question: str, max_question_len: int) -> list[int]:
    """The question's token ids, cut to max_question_len on the tokenizer's truncation side."""
    encoded = tokenizer(question, add_special_tokens=False, truncation=True, max_length=max_question_len)
    return [int(i) for i in encoded["input_ids"][0]]


def check_room(room: int, n_context: int, n_question: int, special: int, max_seq_len: int, doc_stride: int,
               where: str) -> None:
    """Each window must hold a context token, and, when the context needs several windows, at least doc_stride of
    them: else the tokens between two windows would never be read (4.57 skips them silently)."""
    if room < 1:
        raise ValueError(f"{where}: the question takes {n_question} tokens and the special tokens {special}, "
                         f"leaving no room of max_seq_len={max_seq_len} for the context; raise max_seq_len or lower "
                         f"max_question_len")
    if n_context > room and room < doc_stride:
        raise ValueError(f"{where}: the question takes {n_question} tokens and the special tokens {special}, "
                         f"leaving {room} of max_seq_len={max_seq_len} for each window of context, fewer than the "
                         f"doc_stride={doc_stride} tokens from one window to the next (tokens between windows would "
                         f"be skipped); raise max_seq_len or lower doc_stride")


def window(tokenizer, query: list[int], context: list[int], token_words: list[int], head: int) -> SquadWindow:
    ids = np.asarray(tokenizer.build_inputs_with_special_tokens(query, context), dtype=np.int32)
    token_type_ids = (np.arange(len(ids)) >= head).astype(np.int32)
    p_mask = np.ones(len(ids), dtype=np.int32)
    p_mask[head:] = 0
    p_mask[np.isin(ids, tokenizer.all_special_ids)] = 1
    cls_index = int(np.flatnonzero(ids == tokenizer.cls_token_id)[0])
    p_mask[cls_index] = 0
    word_of_token = np.full(len(ids), NO_WORD, dtype=np.int64)
    word_of_token[head:head + len(context)] = token_words
    return SquadWindow(ids, token_type_ids, p_mask, word_of_token, cls_index)
