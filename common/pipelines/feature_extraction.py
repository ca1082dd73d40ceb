"""feature-extraction: a bare model's first output for each text, as transformers 5.x's FeatureExtractionPipeline.

A text gives its nested list [1, seq, hidden] of floats (the model's first output: the encoder's last hidden
state, or for LED, as transformers' LEDModel, the decoder's, run on the input shifted right); a list of texts
gives a list of those. ``return_tensors=True`` gives numpy arrays [1, seq, hidden] instead of lists.

LiLT (LiltModel) reads documents instead: a {"words", "boxes"[, "page_size"]} dict (common.pipelines.document) gives
its [1, seq, hidden] (seq: the tokens of its words with their boxes, as the document tasks encode them); a plain
str is an error, as in transformers' pipeline, whose LayoutLMv3 tokenizer takes only words with boxes.
``truncation=True`` cuts a document to the model's tokens.
"""

from __future__ import annotations

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.document import DOCUMENT_INPUT, WordsAndBoxes


class FeatureExtraction(WordsAndBoxes, Pipeline):
    task = "feature-extraction"
    heads = ("model",)
    options = {"return_tensors": False, "truncation": False}
    output_fields = ("last_hidden_state",)
    token_fields = ("last_hidden_state",)

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        if self.reads_boxes:
            self.input_description = DOCUMENT_INPUT

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, dict))

    def check(self, item, where: str):
        return self.check_document(item, where) if self.reads_boxes else super().check(item, where)

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("return_tensors", "truncation"):
            if not isinstance(opts[name], bool):
                raise ValueError(f"{name}: expected True or False, got {opts[name]!r}")
        return opts

    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        if self.reads_boxes:
            return Encoded([self.encode_document(item, where, truncation=opts["truncation"])[0]])
        return Encoded([self.encode(item, **({"truncation": True} if opts["truncation"] else {}))])

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        features = outputs[0]["last_hidden_state"][None]  # [1, seq, hidden]
        return features if opts["return_tensors"] else features.tolist()
