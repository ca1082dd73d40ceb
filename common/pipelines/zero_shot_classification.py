"""zero-shot-classification: rank free-form candidate labels for a text with an NLI sequence classifier, as
transformers 5.x's ZeroShotClassificationPipeline.

Each (text, hypothesis_template.format(label)) pair is one model row: the text is truncated "only_first" at
the tokenizer's model_max_length (the hypothesis kept whole), with the "too short" rules of transformers' fast
and Python tokenizers. The model's logit of the "entailment" label (the first label2id name starting with
"entail", any case; else -1, the last label, with transformers' warning) scores each candidate label:
``multi_label=False``: softmax of the entailment logits over the candidate labels; ``multi_label=True`` (or a
single label): per label, softmax of its [contradiction, entailment] logits, contradiction being label 0 (label
-1 when entailment is 0). Each text gives {"sequence", "labels", "scores"}, labels best first; a str gives one
dict, a list a list.

Departures, on purpose: bad options raise ValueError naming them (transformers: TypeError / KeyError /
IndexError, or silently uses a truthy multi_label); candidate labels must be str (transformers formats any
object); a template is checked for a replacement field, not by formatting the first label (transformers
rejects the label "{}" with its default template); a tuple of texts is a list of texts (transformers reads
only the first text's rows of it); the Llama tokenizer carries no model_max_length, so Llama rows are not
truncated (transformers cuts at tokenizer_config.json's, 131072 for Llama 3).
"""

from __future__ import annotations

import logging
import string

import numpy as np

from common.pipelines.base import UNSET, Encoded, Pipeline
from common.pipelines.scores import softmax
from common.tokenization import describe

logger = logging.getLogger(__name__)


class ZeroShotClassification(Pipeline):
    task = "zero-shot-classification"
    heads = ("sequence_classification",)
    options = {"candidate_labels": UNSET, "hypothesis_template": "This example is {}.", "multi_label": False}
    token_fields = ()

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.entailment_id = entailment_id(self.config)
        if self.entailment_id == -1:
            logger.warning("Failed to determine 'entailment' label id from the label2id mapping in the model config. "
                           "Setting to -1. Define a descriptive label2id mapping in the model config to ensure "
                           "correct outputs.")

    def __call__(self, inputs, *args, **options):
        # transformers takes the candidate labels as a second positional argument too.
        if len(args) == 1 and "candidate_labels" not in options:
            options["candidate_labels"] = args[0]
        elif args:
            raise ValueError(f"{self.task}: unexpected positional arguments {args!r} (candidate_labels is the only "
                             "one it takes)")
        return super().__call__(inputs, **options)

    def rows_per_call(self) -> int:
        # A left-padded classifier without a pad id reads the last position (transformers runs it one row at a
        # time): one row per call, as in text-classification.
        if self.padding == "left" and getattr(self.config, "pad_token_id", None) is None:
            return 1
        return self.batch_size

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        labels = parse_labels(opts["candidate_labels"])
        opts["labels"] = labels
        opts["hypotheses"] = hypotheses(opts["hypothesis_template"], labels)
        if not isinstance(opts["multi_label"], (bool, np.bool_)):
            raise ValueError(f"multi_label: expected True or False, got {describe(opts['multi_label'])}")
        return opts

    def preprocess(self, item: str, where: str, opts: dict) -> Encoded:
        return Encoded([self.pair_row(item, hypothesis) for hypothesis in opts["hypotheses"]], {"text": item})

    def pair_row(self, text: str, hypothesis: str) -> dict[str, np.ndarray]:
        """The row of (text, hypothesis), as transformers' tokenizer gives it with truncation="only_first": over
        model_max_length, text tokens are cut and the hypothesis kept (fast tokenizers: unless the text has too few
        tokens to absorb the cut, then nothing is cut; Python ones: the text's tokens, all of them if need be)."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        if not self.tokenizer.is_fast:
            row = self.encode(text, hypothesis)
            over = len(row["input_ids"]) - limit if limit is not None else 0
            if over > 0:
                # transformers' Python tokenizers cut min(over, all) text tokens, never failing "too short".
                cut = min(over, len(self.tokenizer.encode(text, add_special_tokens=False)))
                row = self.encode(text, hypothesis, truncation="only_first", max_length=len(row["input_ids"]) - cut)
            return row
        enc = self.tokenizer.encoding(text, hypothesis)
        ids = np.asarray(enc.ids, dtype=np.int32)
        if limit is not None and len(ids) > limit:
            ids = ids[keep_only_first(enc.sequence_ids, len(ids) - limit,
                                      getattr(self.tokenizer, "truncation_side", "right"))]
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        logits = np.stack([out["logits"] for out in outputs]).astype(np.float32)  # [labels, model labels]
        entail = self.entailment_id
        if opts["multi_label"] or len(opts["labels"]) == 1:
            contradiction = -1 if entail == 0 else 0
            scores = softmax(logits[:, [contradiction, entail]])[:, 1]
        else:
            scores = softmax(logits[:, entail])
        order = list(reversed(scores.argsort()))  # transformers' order, ties included
        return {"sequence": encoded.meta["text"], "labels": [opts["labels"][i] for i in order],
                "scores": [float(scores[i]) for i in order]}


def entailment_id(config) -> int:
    """The id of the first label2id name starting with "entail" (any case), else -1 (transformers' fallback).

    label2id is config.json's (transformers keeps it as written); without one, id2label's inverse."""
    label2id = config.extra("label2id")
    if label2id is None:
        label2id = {name: i for i, name in config.id2label.items()}
    for label, index in label2id.items():
        if label.lower().startswith("entail"):
            return int(index)
    return -1


def parse_labels(labels) -> list[str]:
    """candidate_labels as a list: a str is split on commas (pieces stripped, empty ones dropped)."""
    if labels is UNSET or labels is None:
        raise ValueError("candidate_labels: required, a list of str or a comma-separated str "
                         "(e.g. candidate_labels=['sports', 'politics'])")
    if isinstance(labels, str):
        labels = [label.strip() for label in labels.split(",") if label.strip()]
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"candidate_labels: expected a list of str or a comma-separated str, got {describe(labels)}")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"candidate_labels[{i}]: expected a str, got {describe(label)}")
    if not labels:
        raise ValueError(f"candidate_labels: expected at least one label, got {describe(labels)}")
    return list(labels)


def hypotheses(template, labels: list[str]) -> list[str]:
    """``template.format(label)`` for each label; the template must hold one replacement field such as {}."""
    if not isinstance(template, str):
        raise ValueError(f"hypothesis_template: expected a str with {{}} where the label goes, "
                         f"got {describe(template)}")
    try:
        has_field = any(field is not None for _, field, _, _ in string.Formatter().parse(template))
        formatted = [template.format(label) for label in labels]
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as e:
        raise ValueError(f"hypothesis_template: {template!r} cannot be formatted with one label "
                         f"({type(e).__name__}: {e}); it takes one {{}} where the label goes") from None
    if not has_field:
        raise ValueError(f"hypothesis_template: {template!r} has no {{}} where the label goes "
                         "(e.g. 'This example is {}.')")
    return formatted


def keep_only_first(sequence_ids: list, n: int, side: str) -> np.ndarray:
    """Indices of an encoding's tokens kept when ``n`` tokens of its first sequence are cut from ``side`` (the
    special tokens and the second sequence stay), as the tokenizers library's "only_first" truncation; all of them
    when the first sequence has n tokens or fewer (tokenizers then fails "too short" and transformers retries
    without truncation)."""
    ids = np.asarray([-1 if s is None else s for s in sequence_ids])
    first = np.flatnonzero(ids == 0)
    if len(first) <= n:
        return np.arange(len(ids))
    cut = first[len(first) - n:] if side == "right" else first[:n]
    return np.setdiff1d(np.arange(len(ids)), cut)
