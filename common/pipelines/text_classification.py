"""text-classification: labels and scores of a text or a text pair, as transformers 5.x's
TextClassificationPipeline.

Inputs: a str, a {"text", "text_pair"} dict, or a list of them. Without ``top_k`` (transformers' legacy
form) each input gives its best {"label", "score"}, and a single str gives a one-element list of it; with
``top_k`` (an int, or None for every label) each input gives a list of {"label", "score"}, best first.
Scores: softmax for single-label models, sigmoid for multi-label or one-label ones, the raw logit for
regression (``function_to_apply`` overrides: "softmax", "sigmoid", "none").

LiLT (LiltForSequenceClassification) reads documents instead: a {"words", "boxes"[, "page_size"]} dict (as
"document-token-classification" takes it, common.pipelines.document) gives {"label", "score"} (a list with
``top_k``), a list of them a list. A plain str is an error: transformers' pipeline refuses it too (its LayoutLMv3
tokenizer takes only words with boxes), and a text without its layout is not what the model was trained on.
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import UNSET, Encoded, Pipeline
from common.pipelines.document import DOCUMENT_INPUT, WordsAndBoxes
from common.pipelines.scores import sigmoid, softmax
from common.tokenization import describe

FUNCTIONS = {"softmax": softmax, "sigmoid": sigmoid, "none": lambda x: x}


class TextClassification(WordsAndBoxes, Pipeline):
    task = "text-classification"
    heads = ("sequence_classification",)
    options = {"top_k": UNSET, "function_to_apply": None}
    token_fields = ()
    input_description = 'a str or a {"text", "text_pair"} dict'

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if self.reads_boxes:
            self.input_description = DOCUMENT_INPUT

    def rows_per_call(self) -> int:
        # A left-padded classifier without a pad id reads the last position (transformers runs it one row at a
        # time): one row per call, still padded to a bucket length on the left.
        if self.padding == "left" and getattr(self.config, "pad_token_id", None) is None:
            return 1
        return self.batch_size

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, dict))

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        top_k = opts["top_k"]
        if top_k is not UNSET and top_k is not None and (
                isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k: expected an int >= 1 or None (every label), got {top_k!r}")
        name = opts["function_to_apply"]
        if name is None:
            name = self.default_function()
        elif not isinstance(name, str) or name.lower() not in FUNCTIONS:
            raise ValueError(f"function_to_apply: expected one of {sorted(FUNCTIONS)}, got {name!r}")
        opts["function"] = FUNCTIONS[name.lower()]
        return opts

    def default_function(self) -> str:
        problem = getattr(self.config, "problem_type", None) or self.config.extra("problem_type")
        if problem == "regression":
            return "none"
        if problem == "multi_label_classification" or self.config.num_labels == 1:
            return "sigmoid"
        return "softmax"

    def check(self, item, where: str):
        if self.reads_boxes:
            return self.check_document(item, where)
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"text", "text_pair"})
            if unknown or "text" not in item:
                raise ValueError(f'{where}: expected a {{"text", "text_pair"}} dict, got keys {sorted(item)}')
            text = super().check(item["text"], f"{where}['text']")
            pair = item.get("text_pair")
            if pair is not None and not isinstance(pair, str):
                raise ValueError(f"{where}['text_pair']: expected a str, got {describe(pair)}")
            return text, pair
        return super().check(item, where), None

    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        if self.reads_boxes:
            return Encoded([self.encode_document(item, where)[0]])
        text, pair = item
        return Encoded([self.encode(text, pair)])

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        scores = opts["function"](outputs[0]["logits"].astype(np.float32))
        id2label = self.config.id2label
        if opts["top_k"] is UNSET:
            best = int(scores.argmax())
            return {"label": id2label[best], "score": float(scores.max())}
        ranked = [{"label": id2label[i], "score": float(s)} for i, s in enumerate(scores)]
        ranked.sort(key=lambda d: d["score"], reverse=True)
        return ranked if opts["top_k"] is None else ranked[:opts["top_k"]]

    def arrange(self, inputs, single: bool, results: list, opts: dict):
        if isinstance(inputs, str) and opts["top_k"] is UNSET:
            return results
        return results[0] if single else results
