"""LiLT's document tasks over given words and boxes (transformers has no pipeline that runs LiLT on them).

Input: {"words": [str, ...], "boxes": [[x0, y0, x1, y1], ...]} with one box per word on LayoutLM's 0..1000
page scale, or boxes in page units (pixels, points) with "page_size": [width, height]; a list of such dicts gives
a list of results.

"document-token-classification": one entry per word, shaped like transformers' token-classification entries
(aggregation "none") with the word's box instead of character offsets:
{"entity", "score", "index" (the word's index), "word", "box" (as given)}; the label is the argmax of the
token-classification logits at the word's first sub-token and the score its softmax probability (the word label
LiLT checkpoints are trained on). ``ignore_labels`` drops entries by label (default: none dropped).

"document-question-answering": {"question": str, "words", "boxes"[, "page_size"]} -> the spans of the words that
answer the question, shaped like transformers 5.x's DocumentQuestionAnsweringPipeline (extractive path): a list,
best first, of at most top_k {"score", "answer" (the answer words joined by spaces), "start", "end" (word indices),
"boxes" (the answer words' boxes as given)}; a list even for top_k=1, as transformers 5.x gives it. The spans are
4.57's select_starts_ends / decode_spans (common.pipelines.question_answering) over the document tokens;
``handle_impossible_answer`` adds the null answer {"score", "answer": "", "start": 0, "end": 0, "boxes": []}. A
(question, words) pair longer than ``max_seq_len`` tokens (default: the tokenizer's and the model's limit) is cut
as transformers 5.x cuts it: windows of max_seq_len tokens, each with the whole question, the words truncated
"only_second" and overlapping by ``doc_stride`` tokens (default min(max_seq_len // 2, 256)); every window is one
model row, the spans of all windows compete (word indices of the whole document; a span seen in two overlapping
windows can come twice, as in transformers), and the null score is the lowest of the windows'. A question of more
than ``max_question_len`` tokens (default 64) is an error, not silently cut.

``WordsAndBoxes`` (the document check and encoding) also serves "text-classification" and "feature-extraction"
on LiLT heads, whose inputs are then these documents.
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.question_answering import check_int, select_starts_ends
from common.pipelines.scores import softmax
from common.tokenization import describe


DOCUMENT_INPUT = 'a {"words", "boxes"} dict'


class WordsAndBoxes:
    """Documents as inputs, for a Pipeline over a model that reads boxes (LiLT): the {"words", "boxes"[,
    "page_size"]} check, the boxes scaled to 0..1000, and the tokenization with one box per token. Mixed into the
    document tasks and into text-classification and feature-extraction, which serve every head of their kind."""

    document_keys: tuple[str, ...] = ("words", "boxes", "page_size")

    @property
    def reads_boxes(self) -> bool:
        return "bbox" in self.model.spec.family.inputs

    def check_document(self, item, where: str) -> dict:
        """The item with its boxes checked and scaled: {**item, "scaled_boxes": [[x0, y0, x1, y1] in 0..1000]}."""
        if isinstance(item, str):  # no layout to read: transformers' LayoutLMv3 tokenizer refuses plain text too
            raise ValueError(f"{where}: {self.model.architecture} reads words + boxes; expected "
                             f"{self.input_description}, got a str (to run a text without its layout, give every "
                             f'word the empty box: {{"words": text.split(), "boxes": [[0, 0, 0, 0]] * n}})')
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected {self.input_description}, got {describe(item)}")
        unknown = sorted(set(item) - set(self.document_keys))
        if unknown or "words" not in item or "boxes" not in item:
            raise ValueError(f"{where}: expected keys {list(self.document_keys)} (page_size optional), got "
                             f"{sorted(item)}")
        words, boxes = item["words"], item["boxes"]
        if not isinstance(words, (list, tuple)) or not words:
            raise ValueError(f"{where}['words']: expected a non-empty list of str, got {describe(words)}")
        for i, word in enumerate(words):
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"{where}['words'][{i}]: expected a word (a str that is not blank), got "
                                 f"{describe(word)}")
        if not isinstance(boxes, (list, tuple, np.ndarray)) or len(boxes) != len(words):
            raise ValueError(f"{where}['boxes']: expected one box per word ({len(words)}), got "
                             f"{len(boxes) if hasattr(boxes, '__len__') else describe(boxes)}")
        return {**item, "scaled_boxes": self._scaled_boxes(boxes, item.get("page_size"), where)}

    def _scaled_boxes(self, boxes, page_size, where: str) -> list[list[int]]:
        from lilt_jax.tokenizer import normalize_box

        if page_size is not None and (not isinstance(page_size, (list, tuple)) or len(page_size) != 2):
            raise ValueError(f"{where}['page_size']: expected [width, height], got {describe(page_size)}")
        scaled = []
        for i, box in enumerate(boxes):
            try:
                if page_size is not None:
                    scaled.append(normalize_box(box, *page_size))
                    continue
                if isinstance(box, (str, bytes)) or not hasattr(box, "__len__") or len(box) != 4 or not all(
                        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 1000
                        for v in box):
                    raise ValueError(f"expected 4 ints in 0..1000 [x0, y0, x1, y1] (or pass page_size to scale "
                                     f"page units), got {describe(box)}")
                scaled.append([int(v) for v in box])
            except ValueError as e:
                raise ValueError(f"{where}['boxes'][{i}]: {str(e).removeprefix('box: ')}") from None
        return scaled

    def token_capacity(self) -> int:
        """The most tokens one row can hold: LiLT numbers positions as RoBERTa does, from pad_token_id + 1."""
        return self.model.spec.max_positions(self.config) - self.config.pad_token_id - 1

    def encode_document(self, item: dict, where: str, truncation: bool = False) -> tuple[dict, np.ndarray]:
        """One row {input_ids, attention_mask, bbox [seq, 4]} of a checked document, and each token's word index
        (-1: none); cut to the model's tokens with ``truncation``, else a longer document is an error."""
        limit = self.token_capacity()
        cut = {"truncation": True, "max_length": min(self.tokenizer.model_max_length or limit, limit)} \
            if truncation else {}
        enc = {k: np.asarray(v[0]) for k, v in self.tokenizer(item["words"], boxes=item["scaled_boxes"],
                                                              return_word_ids=True, **cut).items()}
        word_ids = enc.pop("word_ids")
        if len(enc["input_ids"]) > limit:
            hint = " or pass truncation=True to cut it" if "truncation" in self.options else ""
            raise ValueError(f"{where}: the document is {len(enc['input_ids'])} tokens, more than the model's "
                             f"{limit} tokens; split it into pages{hint}")
        return enc, word_ids


class DocumentPipeline(WordsAndBoxes, Pipeline):
    """What both document tasks share: the {"words", "boxes"[, "page_size"]} input, checked and tokenized."""

    input_description = DOCUMENT_INPUT

    def __init__(self, model, tokenizer, **kwargs):
        if "bbox" not in model.spec.family.inputs:
            raise ValueError(f"task {self.task!r} reads words + boxes: it cannot run on a {model.architecture}; it "
                             f"needs a LiLT {' or '.join(self.heads)} head")
        super().__init__(model, tokenizer, **kwargs)

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (dict, str))  # a str: refused by check_document, naming what to give

    def check(self, item, where: str):
        return self.check_document(item, where)


class DocumentTokenClassification(DocumentPipeline):
    task = "document-token-classification"
    heads = ("token_classification",)
    options = {"ignore_labels": ()}

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        labels = opts["ignore_labels"]
        if isinstance(labels, str) or not isinstance(labels, (list, tuple)) or \
                not all(isinstance(x, str) for x in labels):
            raise ValueError(f"ignore_labels: expected a list of label names, got {describe(labels)}")
        return opts

    def preprocess(self, item: dict, where: str, opts: dict) -> Encoded:
        enc, word_ids = self.encode_document(item, where)
        first = {}
        for position, word in enumerate(word_ids):
            first.setdefault(int(word), position)
        missing = next((i for i in range(len(item["words"])) if i not in first), None)
        if missing is not None:
            raise ValueError(f"{where}['words'][{missing}]: {item['words'][missing]!r} tokenizes to nothing; it "
                             "cannot be labelled")
        return Encoded([enc], {"item": item, "first_token": [first[i] for i in range(len(item["words"]))]})

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict) -> list[dict]:
        item, first = encoded.meta["item"], encoded.meta["first_token"]
        given = item["boxes"]
        probs = softmax(outputs[0]["logits"][first].astype(np.float32))  # [words, labels]
        id2label = self.config.id2label
        entries = []
        for index, (word, p) in enumerate(zip(item["words"], probs)):
            label = id2label[int(p.argmax())]
            if label in opts["ignore_labels"]:
                continue
            entries.append({"entity": label, "score": float(p.max()), "index": index, "word": word,
                            "box": list(given[index])})
        return entries


class DocumentQuestionAnswering(DocumentPipeline):
    task = "document-question-answering"
    heads = ("question_answering",)
    options = {"top_k": 1, "max_answer_len": 15, "handle_impossible_answer": False, "doc_stride": None,
               "max_seq_len": None, "max_question_len": 64}
    output_fields = ("start_logits", "end_logits")
    token_fields = ("start_logits", "end_logits")
    input_description = 'a {"question", "words", "boxes"} dict'
    document_keys = ("question", "words", "boxes", "page_size")

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("top_k", "max_answer_len", "max_question_len"):
            check_int(name, opts[name], 1)
        if not isinstance(opts["handle_impossible_answer"], (bool, np.bool_)):
            raise ValueError(f"handle_impossible_answer: expected True or False, got "
                             f"{opts['handle_impossible_answer']!r}")
        capacity = self.token_capacity()
        if opts["max_seq_len"] is None:  # transformers 5.x: the tokenizer's limit (here also the model's)
            opts["max_seq_len"] = min(self.tokenizer.model_max_length or capacity, capacity)
        check_int("max_seq_len", opts["max_seq_len"], 1)
        if opts["max_seq_len"] > capacity:
            raise ValueError(f"max_seq_len: expected at most the model's {capacity} tokens, got "
                             f"{opts['max_seq_len']!r}")
        if opts["doc_stride"] is None:  # transformers 5.x's default
            opts["doc_stride"] = min(opts["max_seq_len"] // 2, 256)
        check_int("doc_stride", opts["doc_stride"], 0)
        if opts["doc_stride"] >= opts["max_seq_len"]:
            raise ValueError(f"doc_stride: {opts['doc_stride']} must be smaller than max_seq_len "
                             f"({opts['max_seq_len']}): windows overlap by doc_stride tokens")
        return opts

    def check(self, item, where: str):
        if isinstance(item, dict) and "question" not in item:
            raise ValueError(f"{where}: the question is missing; expected keys {list(self.document_keys)} "
                             f"(page_size optional), got {sorted(item)}")
        item = super().check(item, where)
        question = item["question"]
        if not isinstance(question, str):
            raise ValueError(f"{where}['question']: expected a str, got {describe(question)}")
        if not question.split():  # the tokenizer splits it on whitespace: a blank one has no words
            raise ValueError(f"{where}['question']: the question is empty")
        return item

    def preprocess(self, item: dict, where: str, opts: dict) -> Encoded:
        rows, word_ids, p_masks = [], [], []
        for window in self.windows(item, where, opts):
            ids = window.pop("word_ids")
            # as transformers: only document tokens can be in the answer, and the cls token (the null answer)
            p_mask = (ids < 0).astype(np.int64)
            p_mask[window["input_ids"] == self.tokenizer.cls_token_id] = 0
            rows.append(window)
            word_ids.append(ids)
            p_masks.append(p_mask)
        return Encoded(rows, {"item": item, "word_ids": word_ids, "p_masks": p_masks})

    def windows(self, item: dict, where: str, opts: dict) -> list[dict]:
        """The model rows of (question, words): one when they fit max_seq_len tokens, else transformers'
        windows (the whole question in each, the words cut "only_second", overlapping by doc_stride tokens)."""
        question, words, boxes = item["question"], item["words"], item["scaled_boxes"]
        whole = {k: v[0] for k, v in self.tokenizer(question, words, boxes=boxes, return_word_ids=True).items()}
        kept = int((whole["word_ids"] < 0).sum())  # the question and the special tokens: in every window
        question_tokens = kept - self.tokenizer.num_special_tokens_to_add(pair=True)
        if question_tokens > opts["max_question_len"]:
            raise ValueError(f"{where}['question']: the question is {question_tokens} tokens, more than "
                             f"max_question_len={opts['max_question_len']}")
        if len(whole["input_ids"]) <= opts["max_seq_len"]:
            return [whole]
        room = opts["max_seq_len"] - kept
        if room <= opts["doc_stride"]:
            raise ValueError(f"{where}: the question and the special tokens take {kept} of max_seq_len="
                             f"{opts['max_seq_len']} tokens, leaving {max(room, 0)} for the words of each window, "
                             f"not more than doc_stride={opts['doc_stride']} (the overlap of windows); raise "
                             f"max_seq_len or lower doc_stride")
        return self.tokenizer.windows(question, words, boxes, max_length=opts["max_seq_len"],
                                      stride=opts["doc_stride"])

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict) -> list[dict]:
        """transformers 5.x ``postprocess_extractive_qa`` + ``postprocess``: in each window the spans whose ends
        are both in document words (word indices of the whole document), then the null answer (when asked: the
        lowest null score of the windows), all windows' answers sorted by score and cut to top_k."""
        words, given = encoded.meta["item"]["words"], encoded.meta["item"]["boxes"]
        min_null_score = 1000000.0  # large and positive, as transformers
        answers = []
        for row, out, word_ids, p_mask in zip(encoded.rows, outputs, encoded.meta["word_ids"],
                                              encoded.meta["p_masks"]):
            starts, ends, scores, min_null_score = select_starts_ends(
                out["start_logits"], out["end_logits"], p_mask, row["attention_mask"], min_null_score,
                opts["top_k"], opts["handle_impossible_answer"], opts["max_answer_len"])
            for s, e, score in zip(starts, ends, scores):
                first, last = int(word_ids[s]), int(word_ids[e])
                if first >= 0 and last >= 0:
                    answers.append({"score": float(score), "answer": " ".join(words[first:last + 1]),
                                    "start": first, "end": last,
                                    "boxes": [list(box) for box in given[first:last + 1]]})
        if opts["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "answer": "", "start": 0, "end": 0, "boxes": []})
        return sorted(answers, key=lambda a: a["score"], reverse=True)[:opts["top_k"]]
