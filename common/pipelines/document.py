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
document longer than the model's positions is an error (transformers would cut it into strided windows).
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.question_answering import check_int, select_starts_ends
from common.pipelines.scores import softmax
from common.tokenization import describe


class DocumentPipeline(Pipeline):
    """What both document tasks share: the {"words", "boxes"[, "page_size"]} input, checked and tokenized."""

    input_description = 'a {"words", "boxes"} dict'
    input_keys: tuple[str, ...] = ("words", "boxes", "page_size")

    def __init__(self, model, tokenizer, **kwargs):
        if "bbox" not in model.spec.family.inputs:
            raise ValueError(f"task {self.task!r} reads words + boxes: it cannot run on a {model.architecture}; it "
                             f"needs a LiLT {' or '.join(self.heads)} head")
        super().__init__(model, tokenizer, **kwargs)

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, dict)

    def check(self, item, where: str):
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected {self.input_description}, got {describe(item)}")
        unknown = sorted(set(item) - set(self.input_keys))
        if unknown or "words" not in item or "boxes" not in item:
            raise ValueError(f"{where}: expected keys {list(self.input_keys)} (page_size optional), got "
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

    def encode_words(self, item: dict, where: str, question: str | None = None) -> dict:
        """One row {input_ids, attention_mask, bbox [seq, 4]} + each token's word index (-1: none)."""
        args = (question, item["words"]) if question is not None else (item["words"],)
        enc = {k: np.asarray(v[0]) for k, v in self.tokenizer(*args, boxes=item["scaled_boxes"],
                                                              return_word_ids=True).items()}
        limit = self.model.spec.max_positions(self.config)
        if len(enc["input_ids"]) > limit:
            raise ValueError(f"{where}: the document is {len(enc['input_ids'])} tokens, more than the model's "
                             f"{limit} positions; split it into pages")
        return enc


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
        enc = self.encode_words(item, where)
        word_ids = enc.pop("word_ids")
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
    options = {"top_k": 1, "max_answer_len": 15, "handle_impossible_answer": False}
    output_fields = ("start_logits", "end_logits")
    token_fields = ("start_logits", "end_logits")
    input_description = 'a {"question", "words", "boxes"} dict'
    input_keys = ("question", "words", "boxes", "page_size")

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("top_k", "max_answer_len"):
            check_int(name, opts[name], 1)
        if not isinstance(opts["handle_impossible_answer"], (bool, np.bool_)):
            raise ValueError(f"handle_impossible_answer: expected True or False, got "
                             f"{opts['handle_impossible_answer']!r}")
        return opts

    def check(self, item, where: str):
        if isinstance(item, dict) and "question" not in item:
            raise ValueError(f"{where}: the question is missing; expected keys {list(self.input_keys)} "
                             f"(page_size optional), got {sorted(item)}")
        item = super().check(item, where)
        question = item["question"]
        if not isinstance(question, str):
            raise ValueError(f"{where}['question']: expected a str, got {describe(question)}")
        if not question.split():  # the tokenizer splits it on whitespace: a blank one has no words
            raise ValueError(f"{where}['question']: the question is empty")
        return item

    def preprocess(self, item: dict, where: str, opts: dict) -> Encoded:
        enc = self.encode_words(item, where, question=item["question"])
        word_ids = enc.pop("word_ids")
        # as transformers: only document tokens can be in the answer, and the cls token (the null answer)
        p_mask = (word_ids < 0).astype(np.int64)
        p_mask[enc["input_ids"] == self.tokenizer.cls_token_id] = 0
        return Encoded([enc], {"item": item, "word_ids": word_ids, "p_mask": p_mask})

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict) -> list[dict]:
        """transformers 5.x ``postprocess_extractive_qa`` + ``postprocess``: the spans whose ends are both in
        document words, then the null answer (when asked), sorted by score and cut to top_k."""
        (row,), (out,), meta = encoded.rows, outputs, encoded.meta
        words, given, word_ids = meta["item"]["words"], meta["item"]["boxes"], meta["word_ids"]
        starts, ends, scores, min_null_score = select_starts_ends(
            out["start_logits"], out["end_logits"], meta["p_mask"], row["attention_mask"], 1000000, opts["top_k"],
            opts["handle_impossible_answer"], opts["max_answer_len"])
        answers = []
        for s, e, score in zip(starts, ends, scores):
            first, last = int(word_ids[s]), int(word_ids[e])
            if first >= 0 and last >= 0:
                answers.append({"score": float(score), "answer": " ".join(words[first:last + 1]), "start": first,
                                "end": last, "boxes": [list(box) for box in given[first:last + 1]]})
        if opts["handle_impossible_answer"]:
            answers.append({"score": min_null_score, "answer": "", "start": 0, "end": 0, "boxes": []})
        return sorted(answers, key=lambda a: a["score"], reverse=True)[:opts["top_k"]]
