"""question-answering: the span of a context that answers a question, as transformers 4.57's
QuestionAnsweringPipeline (5.x removed it).

Inputs: ``pipe(question=..., context=...)`` (a str each, a list of questions for one context, or two lists of
equal length), ``pipe({"question", "context"})``, ``pipe(question, context)`` or a list of such dicts. Each input
gives {"score", "start", "end", "answer"} (character offsets into the context), or a list of them, best first,
when top_k > 1 finds more than one; a list of inputs gives a list, except that a one-element list gives its
element's result (4.57's rule).

A tokenizer with character offsets (a `tokenizers` one: Longformer, LED, Llama) cuts a long context as 4.57's
fast-tokenizer path does: the tokenizer's own truncation ("only_second", or "only_first" when the tokenizer pads on
the left and so puts the context first) with ``max_seq_len`` and overflow stride ``doc_stride``; every window is
one model row, and the spans of all windows compete (an answer text found in two windows adds its scores).
Longformer's head puts global attention on the question tokens itself, as transformers'
LongformerForQuestionAnswering.

XLM's tokenizer has no offsets: its windows are 4.57's SQuAD features (common/pipelines/squad_features.py: the
context split on whitespace, each word tokenized alone, ``doc_stride`` the step between windows,
``max_question_len`` cuts the question, token types 0/1 as 4.57 gives the model), and answers are whole words
with 4.57's start / end / text (see that module). ``align_to_words`` does nothing there, as in 4.57.

- XLMForQuestionAnsweringSimple: 4.57's spans, P(start) * P(end) with the softmax over the window's context
  tokens and its cls token (XLM's cls is ``</s>``: the separator after the question), best first, windows not
  merged (the same words from two windows are two answers, as 4.57). An answer starts and ends on context tokens
  that are not special (``<unk>`` neither): 4.57 means the same but lets a span start or end on the separator,
  whose probability it keeps, and then fails with a KeyError on that span (most calls); here such spans are
  never candidates, so the answers are 4.57's wherever 4.57 runs and the best legal spans where it fails. The
  empty answer (handle_impossible_answer) scores P(start = 0) * P(end = 0) as 4.57, which is 0 for XLM (position
  0 is ``<s>``, never an answer token).
- XLMForQuestionAnswering (the SQuAD beam head; 4.57's pipeline loads such a checkpoint as
  XLMForQuestionAnsweringSimple with a fresh random span layer, dropping the head): the head gets the windows'
  p_mask and cls_index and returns start_n_top starts and, for each, end_n_top ends. A span (start beam, one of
  its end beams) is an answer when both ends are answer tokens as above, end >= start and it has at most
  max_answer_len tokens; its score is the product of the two beam probabilities, P(start) * P(end | start) (the
  head's "log_probs" outputs are probabilities, as transformers'). The same span from two windows keeps its best
  score (as XLNet/XLM's SQuAD post-processing keeps the first of a text). The empty answer scores
  sigmoid(cls_logits), the head's probability that the window holds no answer, the smallest over the windows. An
  input whose beams hold no legal span gives [] (or only the empty answer).
"""

from __future__ import annotations

import threading

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.batching import run_batched
from common.pipelines.scores import sigmoid
from common.pipelines.squad_features import ContextWords, squad_windows
from common.tokenization import describe

_LOCK = threading.Lock()  # for tokenizers without their own truncation lock
INPUT = 'a {"question", "context"} dict'
# What XLMForQuestionAnswering's beams give per row: [start_n_top], [start_n_top], [end_n_top * start_n_top] (flat
# index j * start_n_top + i: end beam j of start beam i), the same, and [] (the "no answer" logit).
BEAM_FIELDS = ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits")
BEAM_HEADS = ("XLMForQuestionAnswering",)  # the SQuAD heads (XLNet's, in transformers), no start/end logits
WORD_TOKENIZER_METHODS = ("tokenize", "convert_tokens_to_ids", "build_inputs_with_special_tokens")


class QuestionAnswering(Pipeline):
    task = "question-answering"
    heads = ("question_answering", "question_answering_simple")
    options = {"top_k": 1, "doc_stride": None, "max_answer_len": 15, "max_seq_len": None, "max_question_len": 64,
               "handle_impossible_answer": False, "align_to_words": True}
    output_fields = ("start_logits", "end_logits")
    token_fields = ("start_logits", "end_logits")
    input_description = INPUT

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.offsets = bool(getattr(tokenizer, "is_fast", False)) and hasattr(tokenizer, "_tokenizer")
        self.beams = model.architecture in BEAM_HEADS
        if self.offsets and self.beams:
            raise ValueError(f"task 'question-answering': {model.architecture}'s beams are read on the SQuAD "
                             f"features of XLM's own tokenizer, not on a {type(tokenizer).__name__}")
        if not self.offsets:
            check_word_tokenizer(tokenizer)
        if self.beams:
            self.output_fields, self.token_fields = BEAM_FIELDS, ()

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
        # with offsets doc_stride is the windows' overlap; in SQuAD features the step from one window to the next
        check_int("doc_stride", opts["doc_stride"], 0 if self.offsets else 1)
        if opts["doc_stride"] >= opts["max_seq_len"]:
            raise ValueError(f"doc_stride: {opts['doc_stride']} must be smaller than max_seq_len "
                             f"({opts['max_seq_len']}): windows overlap by doc_stride tokens")
        return opts

    # ------------------------------------------------------------------------------- windows
    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        question, context = item
        encoded = self.offset_rows(question, context, opts, where) if self.offsets else \
            self.word_rows(question, context, opts, where)
        limit = self.position_limit
        for row in encoded.rows:
            if limit is not None and len(row["input_ids"]) > limit:
                raise ValueError(f"{where}: a window of {len(row['input_ids'])} tokens is longer than the model's "
                                 f"{limit} positions; pass max_seq_len <= {limit}")
        return encoded

    def offset_rows(self, question: str, context: str, opts: dict, where: str) -> Encoded:
        """A tokenizer with offsets: one row per window of its truncation, with 4.57's p_mask."""
        question_first = self.tokenizer.padding_side == "right"
        windows = self.windows(question, context, question_first, opts, where)
        rows, p_masks = [], []
        for enc in windows:
            ids = np.asarray(enc.ids, dtype=np.int32)
            rows.append({"input_ids": ids, "attention_mask": np.asarray(enc.attention_mask, dtype=np.int32)})
            p_masks.append(self.p_mask(enc, ids, question_first))
        return Encoded(rows, {"windows": windows, "p_masks": p_masks, "context": context,
                              "question_first": question_first})

    def word_rows(self, question: str, context: str, opts: dict, where: str) -> Encoded:
        """A tokenizer without offsets (XLM's): one row per SQuAD window; the beam head also reads its p_mask
        (its cls index is found in the batch, see ``run``)."""
        words = ContextWords.split(context)
        windows = squad_windows(self.tokenizer, question, words, max_seq_len=opts["max_seq_len"],
                                doc_stride=opts["doc_stride"], max_question_len=opts["max_question_len"], where=where)
        rows = []
        for w in windows:
            row = {"input_ids": w.input_ids, "attention_mask": np.ones_like(w.input_ids),
                   "token_type_ids": w.token_type_ids}
            rows.append({**row, "p_mask": w.p_mask} if self.beams else row)
        return Encoded(rows, {"windows": windows, "words": words})

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

    # ------------------------------------------------------------------------------ the model
    def pad_values(self) -> dict:
        return {**super().pad_values(), "p_mask": 1}  # padding is never an answer token

    def run(self, rows, min_length: int = 0, record: bool = True) -> list[dict]:
        """The beam head also takes each row's cls index: the first cls token of its padded row (4.57's SQuAD
        features' cls_index); without it the head would read the last position, a pad in a padded batch."""
        if not self.beams:
            return super().run(rows, min_length, record)
        cls = self.tokenizer.cls_token_id

        def call(arrays):
            out = self.model(**arrays, cls_index=np.argmax(arrays["input_ids"] == cls, axis=1))
            return {field: getattr(out, field) for field in self.output_fields}

        limit = self.position_limit
        return run_batched(call, rows, batch_size=self.rows_per_call(), pad_values=self.pad_values(),
                           padding=self.padding, limit=limit, ladder=self.buckets,
                           stats=self.stats if record else None, min_length=min_length)

    # --------------------------------------------------------------------------------- spans
    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        if self.beams:
            answers, null_score = beam_answers(encoded.meta, outputs, opts)
        elif self.offsets:
            answers, null_score = self.offset_answers(encoded, outputs, opts)
        else:
            answers, null_score = word_answers(encoded.meta, outputs, opts)
        if opts["handle_impossible_answer"]:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[:opts["top_k"]]
        return answers[0] if len(answers) == 1 else answers

    def offset_answers(self, encoded: Encoded, outputs: list[dict], opts: dict) -> tuple[list[dict], float]:
        """4.57's fast-tokenizer answers: each window's best spans as characters (whole words when aligning), the
        scores of one text (case-blind) summed over windows; and the null score."""
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
        return answers, min_null_score


def check_word_tokenizer(tokenizer) -> None:
    """A tokenizer without offsets serves through SQuAD features: it must tokenize word by word, put the question
    first (pad on the right) and have a cls token."""
    name = type(tokenizer).__name__
    if not all(callable(getattr(tokenizer, m, None)) for m in WORD_TOKENIZER_METHODS):
        raise ValueError(f"task 'question-answering' needs a tokenizer with character offsets (a `tokenizers` one) "
                         f"or one that tokenizes word by word ({', '.join(WORD_TOKENIZER_METHODS)}), as XLM's; "
                         f"{name} has neither")
    if tokenizer.padding_side != "right":
        raise ValueError(f"task 'question-answering': {name} has padding_side={tokenizer.padding_side!r}; its SQuAD "
                         f"features put the question first, which needs padding_side='right' (4.57 misplaces the "
                         f"answer tokens of a context put first)")
    if getattr(tokenizer, "cls_token_id", None) is None:
        raise ValueError(f"task 'question-answering': {name} has no cls_token; the SQuAD features keep it open as "
                         f"the \"no answer\" token of every window")


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


def span_probabilities(logits, allowed) -> np.ndarray:
    """4.57's softmax of one window's start (or end) logits [T] over its allowed tokens [T] (the others at
    -10000, so exactly 0 here), float32 [T], as from the torch logits 4.57 reads."""
    x = np.where(allowed, np.asarray(logits, dtype=np.float32), np.float32(-10000.0))
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum()


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score, top_k, handle_impossible_answer,
                       max_answer_len):
    """4.57's ``select_starts_ends`` on one window: probabilities of starts and ends over the allowed tokens, the
    null score at position 0, then the best spans."""
    # [1, T] as in 4.57, whose ``allowed.nonzero()`` below is a (rows, cols) pair: position 0 always passes
    allowed = np.abs(np.asarray(p_mask)[None] - 1)
    if attention_mask is not None:
        allowed = allowed & np.asarray(attention_mask)[None]
    start = span_probabilities(np.asarray(start)[None], allowed != 0)
    end = span_probabilities(np.asarray(end)[None], allowed != 0)
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


# ------------------------------------------------------------------------------ SQuAD features' spans
def word_answers(meta: dict, outputs: list[dict], opts: dict) -> tuple[list[dict], float]:
    """XLMForQuestionAnsweringSimple on SQuAD windows: each window's top_k legal spans (``best_spans``) as words,
    windows not merged (4.57's slow path); the null score P(start = 0) * P(end = 0), the smallest over windows."""
    words: ContextWords = meta["words"]
    answers, min_null_score = [], 1000000.0
    for window, out in zip(meta["windows"], outputs):
        allowed = window.p_mask == 0
        start = span_probabilities(out["start_logits"], allowed)
        end = span_probabilities(out["end_logits"], allowed)
        min_null_score = min(min_null_score, (start[0] * end[0]).item())
        for s, e, score in zip(*best_spans(start, end, window.answer_tokens, opts["top_k"], opts["max_answer_len"])):
            answers.append(words.answer(window.word_of_token[s], window.word_of_token[e], score.item()))
    return answers, min_null_score


def best_spans(start: np.ndarray, end: np.ndarray, answer_tokens: np.ndarray, top_k: int, max_answer_len: int):
    """The top_k spans (s, e) of one window by P(start = s) * P(end = e) (float32, [T] each), both ends answer
    tokens ([T] bool), s <= e < s + max_answer_len: (starts, ends, scores), best first (ties: the earlier start,
    then the earlier end)."""
    scores = np.outer(start, end)
    s, e = np.indices(scores.shape)
    legal = answer_tokens[:, None] & answer_tokens[None, :] & (e >= s) & (e - s < max_answer_len)
    s, e, scores = s[legal], e[legal], scores[legal]
    best = np.argsort(-scores, kind="stable")[:top_k]
    return s[best], e[best], scores[best]


def beam_answers(meta: dict, outputs: list[dict], opts: dict) -> tuple[list[dict], float]:
    """XLMForQuestionAnswering on SQuAD windows: every (start beam, one of its end beams) that is a legal span,
    scored P(start) * P(end | start), one answer per span with its best score over the windows; the null score
    sigmoid(cls_logits), the smallest over windows (module docstring)."""
    words: ContextWords = meta["words"]
    best: dict[tuple[int, int], dict] = {}
    null_scores = []
    for window, out in zip(meta["windows"], outputs):
        legal, word_of_token = window.answer_tokens, window.word_of_token
        n_starts = len(out["start_top_index"])
        for flat, (e, p_end) in enumerate(zip(out["end_top_index"], out["end_top_log_probs"])):
            s, p_start = out["start_top_index"][flat % n_starts], out["start_top_log_probs"][flat % n_starts]
            if not (legal[s] and legal[e] and s <= e < s + opts["max_answer_len"]):
                continue
            answer = words.answer(word_of_token[s], word_of_token[e], (p_start * p_end).item())
            key = (answer["start"], answer["end"])
            if key not in best or answer["score"] > best[key]["score"]:
                best[key] = answer
        null_scores.append(sigmoid(np.float32(out["cls_logits"])).item())
    return list(best.values()), min(null_scores)
