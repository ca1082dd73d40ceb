"""feature-extraction: a bare model's first output for each text, as transformers 5.x's FeatureExtractionPipeline.

A text gives its nested list [1, seq, hidden] of floats (the model's first output: the encoder's last hidden
state, or for LED, as transformers' LEDModel, the decoder's, run on the input shifted right); a list of texts
gives a list of those. ``return_tensors=True`` gives numpy arrays [1, seq, hidden] instead of lists.
"""

from __future__ import annotations

from common.pipelines.base import Encoded, Pipeline


class FeatureExtraction(Pipeline):
    task = "feature-extraction"
    heads = ("model",)
    options = {"return_tensors": False, "truncation": False}
    output_fields = ("last_hidden_state",)
    token_fields = ("last_hidden_state",)

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("return_tensors", "truncation"):
            if not isinstance(opts[name], bool):
                raise ValueError(f"{name}: expected True or False, got {opts[name]!r}")
        return opts

    def preprocess(self, text: str, where: str, opts: dict) -> Encoded:
        return Encoded([self.encode(text, **({"truncation": True} if opts["truncation"] else {}))])

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        features = outputs[0]["last_hidden_state"][None]  # [1, seq, hidden]
        return features if opts["return_tensors"] else features.tolist()
