"""question-answering: the span of a context that answers a question, as transformers 4.57's
QuestionAnsweringPipeline (5.x removed it).

Inputs: ``pipe(question=..., context=...)`` (a str each, a list of questions for one context, or two lists of
equal length), ``pipe({"question", "context"})``, ``pipe(question, context)`` or a list of such dicts. Each input
gives {"score", "start", "end", "answer"} (character offsets into the context), or a list of them, best first,
when top_k > 1 finds more than one; a list of inputs gives a list, except that a one-element list gives its
element's result (4.57's rule).

A context longer than one window is cut as 4.57's fast-tokenizer path does: the tokenizer's own truncation
("only_second", or "only_first" when the tokenizer pads on the left and so puts the context first) with
``max_seq_len`` and overflow stride ``doc_stride``; every window is one model row, and the spans of all windows
compete (an answer text found in two windows adds its scores). Longformer's head puts global attention on the
question tokens itself, as transformers' LongformerForQuestionAnswering.

Not supported: tokenizers without offsets (XLM's, which 4.57 runs through the SQuAD feature converter of its slow
tokenizers, a path that fails on most inputs in 4.57 itself), and XLMForQuestionAnswering's beam-search head,
which 4.57's pipeline cannot read either.
"""

from __future__ import annotations

import threading

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.tokenization import describe

_LOCK = threading.Lock()  # for tokenizers without their own truncation lock
INPUT = 'a {"question", "context"} dict'


class QuestionAnswering(Pipeline):
    task = "question-answering"
    heads = ("question_answering", "question_answering_simple")
    options = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None, "max_question_len": 64,
               "handle_impossible_answer": False, "align_to_words": True}
    output_fields = ("start_logits", "end_logits")
    token_fields = ("start_logits", "end_logits")
    input_description = INPUT

    def __init__(self, model, tokenizer, **kwargs):
        if model.architecture == "XLMForQuestionAnswering":
            raise ValueError("task 'question-answering' cannot run on a XLMForQuestionAnswering: its beam-search "
                             "head gives no start/end logits (transformers' pipeline loads such a checkpoint as "
                             "XLMForQuestionAnsweringSimple); use an XLMForQuestionAnsweringSimple checkpoint")
        if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "_tokenizer"):
            raise ValueError(f"task 'question-answering' needs a tokenizer with character offsets (a `tokenizers` "
                             f"one); {type(tokenizer).__name__} has none (transformers 4.57 sends such tokenizers "
                             f"through its SQuAD converter, which fails on most contexts)")
        super().__init__(model, tokenizer, **kwargs)

    # ------------------------------------------------------------------------------------ inputs
    def __call__(self, *args, question=None, context=None, **options):
        """``pipe(question=..., context=...)``, ``pipe(question, context)``, ``pipe(dict)``, ``pipe([dicts])``."""
        if args and (question is not None or context is not None):
            raise ValueError("inputs: give them as one argument or as question=/context=, not both")
        if len(args) == 2 and all(isinstance(a, str) for a in args):
            args = ({"question": args[0], "context": args[1]},)
        if len(args) > 1:
            raise ValueError(f"inputs: expected one argument ({INPUT} or a list of them) or a question and a "
                             f"context, got {len(args)} arguments")
        inputs = args[0] if args else self.from_keywords(question, context)
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]  # 4.57 answers a one-element list as its element
        return super().__call__(inputs, **options)

    @staticmethod
    def from_keywords(question, context):
        if question is None or context is None:
            missing = "question" if question is None else "context"
            raise ValueError(f"inputs: {missing} is missing; give question= and context= (or {INPUT})")
        if isinstance(question, str) and isinstance(context, str):
            return {"question": question, "context": context}
        if isinstance(question, list) and isinstance(context, str):
            return [{"question": q, "context": context} for q in question]
        if isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise ValueError(f"inputs: {len(question)} questions for {len(context)} contexts, expected as many")
            return [{"question": q, "context": c} for q, c in zip(question, context)]
        raise ValueError(f"inputs: expected question= a str or list of str and context= a str (or a list as long "
                         f"as the questions), got {describe(question)} and {describe(context)}")

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, dict)

    def check(self, item, where: str):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected {INPUT}, got {describe(item)}")
        if set(item) != {"question", "context"}:
            raise ValueError(f"{where}: expected {INPUT}, got keys {sorted(item)}")
        for key in ("question", "context"):
            if not isinstance(item[key], str):
                raise ValueError(f"{where}['{key}']: expected a str, got {describe(item[key])}")
            if not item[key]:  # as 4.57: only the empty string (blank text still tokenizes)
                raise ValueError(f"{where}['{key}']: the {key} is empty")
        return item["question"], item["context"]

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("top_k", "max_answer_len", "max_question_len"):
            check_int(name, opts[name], 1)
        for name in ("handle_impossible_answer", "align_to_words"):
            if not isinstance(opts[name], (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {opts[name]!r}")
        if opts["max_seq_len"] is None:  # 4.57: the tokenizer's limit, at most 384
            opts["max_seq_len"] = min(getattr(self.tokenizer, "model_max_length", None) or 384, 384)
        check_int("max_seq_len", opts["max_seq_len"], 2)
        if opts["doc_stride"] is None:
            opts["doc_stride"] = min(opts["max_seq_len"] // 2, 128)
        check_int("doc_stride", opts["doc_stride"], 0)
        if opts["doc_stride"] >= opts["max_seq_len"]:
            raise ValueError(f"doc_stride: {opts['doc_stride']} must be smaller than max_seq_len "
                             f"({opts['max_seq_len']}): windows overlap by doc_stride tokens")
        return opts

    # ------------------------------------------------------------------------------- windows
    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        question, context = item
        question_first = self.tokenizer.padding_side == "right"
        windows = self.windows(question, context, question_first, opts, where)
        limit = self.model.spec.max_positions(self.config) if self.model.spec.max_positions else None
        rows, p_masks = [], []
        for enc in windows:
            ids = np.asarray(enc.ids, dtype=np.int32)
            if limit is not None and len(ids) > limit:
                raise ValueError(f"{where}: a window of {len(ids)} tokens is longer than the model's {limit} "
                                 f"positions; pass max_seq_len <= {limit}")
            rows.append({"input_ids": ids, "attention_mask": np.asarray(enc.attention_mask, dtype=np.int32)})
            p_masks.append(self.p_mask(enc, ids, question_first))
        return Encoded(rows, {"windows": windows, "p_masks": p_masks, "context": context,
                              "question_first": question_first})

    def windows(self, question: str, context: str, question_first: bool, opts: dict, where: str) -> list:
        """The tokenizer's encodings of the pair, one per window (the first, then its overflow), as transformers'
        fast tokenizers give them with return_overflowing_tokens."""
        backend = self.tokenizer._tokenizer
        pair = (question, context) if question_first else (context, question)
        self.check_room(question, context, opts, where)
        lock = getattr(self.tokenizer, "_truncation_lock", _LOCK)
        with lock:
            backend.enable_truncation(opts["max_seq_len"], stride=opts["doc_stride"],
                                      strategy="only_second" if question_first else "only_first", direction="right")
            try:
                enc = backend.encode(*pair, add_special_tokens=True)
            finally:
                backend.no_truncation()
        return [enc] + list(enc.overflowing)

    def check_room(self, question: str, context: str, opts: dict, where: str) -> None:
        """A context that needs windows must leave more than doc_stride tokens per window beside the question and
        the special tokens (else `tokenizers` panics, as it does under 4.57)."""
        backend = self.tokenizer._tokenizer
        kept, cut = (len(backend.encode(text, add_special_tokens=False).ids) for text in (question, context))
        special = backend.post_processor.num_special_tokens_to_add(True) if backend.post_processor else 0
        if kept + cut + special <= opts["max_seq_len"]:
            return  # one window, nothing cut
        room = opts["max_seq_len"] - special - kept
        if room <= opts["doc_stride"]:
            raise ValueError(f"{where}: the question takes {kept} tokens and the special tokens {special}, leaving "
                             f"{max(room, 0)} of max_seq_len={opts['max_seq_len']} for each window of context, not "
                             f"more than doc_stride={opts['doc_stride']}; raise max_seq_len or lower doc_stride")

    def p_mask(self, enc, ids: np.ndarray, question_first: bool) -> np.ndarray:
        """1 where a token cannot be in the answer: every non-context token (only when the question comes first,
        as 4.57), except the cls token, which models use for "no answer"."""
        if question_first:
            mask = np.array([s != 1 for s in enc.sequence_ids], dtype=np.int64)
        else:
            mask = np.zeros(len(ids), dtype=np.int64)
        cls = getattr(self.tokenizer, "cls_token_id", None)
        if cls is not None:
            mask[ids == cls] = 0
        return mask

    # --------------------------------------------------------------------------------- spans
    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        meta = encoded.meta
        context = meta["context"]
        min_null_score = 1000000.0  # large and positive
        answers: list[dict] = []
        pre_top_k = opts["top_k"] * 2 + 10 if opts["align_to_words"] else opts["top_k"]  # some merge into one
        sequence_index = 1 if meta["question_first"] else 0
        pad = self.tokenizer.pad_token_id
        for row, enc, p_mask, out in zip(encoded.rows, meta["windows"], meta["p_masks"], outputs):
            starts, ends, scores, min_null_score = select_starts_ends(
                out["start_logits"], out["end_logits"], p_mask, row["attention_mask"], min_null_score, pre_top_k,
                opts["handle_impossible_answer"], opts["max_answer_len"])
            # 4.57 shifts indices by the pad tokens of a left-padding tokenizer's (unpadded) row
            offset = int((row["input_ids"] == pad).sum()) if self.tokenizer.padding_side == "left" and pad is not None \
                else 0
            for s, e, score in zip(starts, ends, scores):
                start, end = char_span(enc, int(s) - offset, int(e) - offset, sequence_index, opts["align_to_words"])
                text = context[start:end]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": start, "end": end, "answer": text})
        if opts["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:opts["top_k"]]
        return answers[0] if len(answers) == 1 else answers


def check_int(name: str, value, smallest: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < smallest:
        raise ValueError(f"{name}: expected an int >= {smallest}, got {value!r}")


def char_span(enc, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Token span -> character span in the context: whole words when aligning (4.57 ``get_indices``: a token
    that belongs to no word, such as a special token, falls back to its own offsets)."""
    if align_to_words:
        try:
            start_word, end_word = enc.token_to_word(s), enc.token_to_word(e)
            return (enc.word_to_chars(start_word, sequence_index=sequence_index)[0],
                    enc.word_to_chars(end_word, sequence_index=sequence_index)[1])
        except Exception:
            pass
    return enc.offsets[s][0], enc.offsets[e][1]


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score, top_k, handle_impossible_answer,
                       max_answer_len):
    """4.57's ``select_starts_ends`` on one window: probabilities of starts and ends over the allowed tokens
    (float32, as the torch logits 4.57 reads), the null score at position 0, then the best spans."""
    start = np.asarray(start, dtype=np.float32)[None]
    end = np.asarray(end, dtype=np.float32)[None]
    # [1, T] as in 4.57, whose ``allowed.nonzero()`` below is a (rows, cols) pair: position 0 always passes
    allowed = np.abs(np.asarray(p_mask)[None] - 1)
    if attention_mask is not None:
        allowed = allowed & np.asarray(attention_mask)[None]
    disallowed = allowed == 0.0
    start = np.where(disallowed, -10000.0, start)
    end = np.where(disallowed, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # the cls position is the null answer, never a span
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, allowed)
    return starts, ends, scores, min_null_score


def decode_spans(start, end, top_k: int, max_answer_len: int, allowed):
    """4.57's ``decode_spans``: the top_k (start, end) pairs by P(start) * P(end) with start <= end < start +
    max_answer_len, kept when both ends are allowed tokens (numpy's selection, so ties break as 4.57's)."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    if top_k == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < top_k:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, top_k)[0:top_k]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired = np.isin(starts, allowed.nonzero()) & np.isin(ends, allowed.nonzero())
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]
