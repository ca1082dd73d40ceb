"""Evaluation metrics of the fine-tuning jobs: classification, multi-label, NER, summarisation and extractive QA.

Every score is a float fraction in [0, 1] (SQuAD's too, where the official script prints percentages); counts
(``total``) are ints. Every function checks that predictions and references are non-empty and of equal count and
raises a ValueError naming the argument otherwise.

``seqeval`` (entity scores) and ``rouge-score`` (ROUGE) are the ``finetune`` extra: they are imported inside the
functions that need them, so the rest of this module works without them.

``METRICS`` says for each metric name whether higher is better, and ``is_better`` compares two values of one metric
(used to keep the best checkpoint).
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from common.extras import require

_EXTRA = "finetune"


# ----------------------------------------------------------------------------------------------------- validation


def _as_list(values: Any, name: str) -> list:
    """``values`` (a sequence or a 1-D numpy / jax array) as a python list; arrays become python scalars so that
    their items are hashable and compare by value."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of labels, got a single {type(values).__name__}")
    if hasattr(values, "shape") and hasattr(values, "dtype"):
        array = np.asarray(values)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one label per example), got shape {array.shape}")
        return array.tolist()
    return list(values)


def _check_counts(predictions: Sequence, references: Sequence, names: tuple[str, str]) -> None:
    """ValueError naming the argument when either is empty or their counts differ."""
    for values, name in zip((predictions, references), names):
        if len(values) == 0:
            raise ValueError(f"{name} is empty: need at least one example")
    if len(predictions) != len(references):
        raise ValueError(
            f"{names[0]} has {len(predictions)} examples but {names[1]} has {len(references)}: they must match"
        )


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when the denominator is 0 (sklearn's zero_division=0)."""
    return float(numerator) / float(denominator) if denominator else 0.0


# ------------------------------------------------------------------------------------------- single-label classes


def accuracy(predictions: Sequence[Hashable], references: Sequence[Hashable]) -> float:
    """Fraction of examples whose predicted label equals the reference label.

    predictions, references: [n] labels (ints, strings, any hashables; lists or 1-D arrays), n >= 1.
    """
    predictions = _as_list(predictions, "predictions")
    references = _as_list(references, "references")
    _check_counts(predictions, references, ("predictions", "references"))
    return sum(p == r for p, r in zip(predictions, references)) / len(references)


def _label_index(labels: Sequence[Hashable] | None, predictions: list, references: list) -> dict:
    """label -> column of the per-class counts; ``labels`` if given (it must cover every label seen), else every
    label that occurs in references or predictions."""
    if labels is None:
        return {label: i for i, label in enumerate(dict.fromkeys(references + predictions))}
    labels = _as_list(labels, "labels")
    if not labels:
        raise ValueError("labels is empty: give the full label set, or None to use the labels seen")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        duplicates = sorted({repr(x) for x in labels if labels.count(x) > 1})
        raise ValueError(f"labels has duplicates: {', '.join(duplicates)}")
    for values, name in ((predictions, "predictions"), (references, "references")):
        unknown = [x for x in dict.fromkeys(values) if x not in index]
        if unknown:
            raise ValueError(f"{name} has labels not in labels: {unknown[:5]!r}; labels must be the full label set")
    return index


def classification_scores(
    predictions: Sequence[Hashable], references: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> dict[str, float]:
    """Scores of a single-label multi-class classifier.

    predictions, references: [n] labels, n >= 1. labels: the full label set (like sklearn's ``labels=``), so that a
    class absent from both predictions and references still counts, as 0, in the macro averages; every label in
    predictions and references must be in it (ValueError otherwise). None: the labels that occur in either.

    Returns {"accuracy", "f1_macro", "f1_micro", "precision_macro", "recall_macro"}. Convention (sklearn's
    ``zero_division=0``): a class with no predicted examples has precision 0, one with no true examples recall 0,
    and per-class F1 = 2 tp / (2 tp + fp + fn), which is 0 for a class with neither predicted nor true examples.
    Macro = unweighted mean over the label set; micro pools the counts, so for single-label data over the full
    label set f1_micro equals accuracy.
    """
    predictions = _as_list(predictions, "predictions")
    references = _as_list(references, "references")
    _check_counts(predictions, references, ("predictions", "references"))
    index = _label_index(labels, predictions, references)
    pred = np.array([index[x] for x in predictions])
    true = np.array([index[x] for x in references])
    k = len(index)
    tp = np.bincount(true[pred == true], minlength=k)  # [k] correct predictions per class
    predicted = np.bincount(pred, minlength=k)  # [k] tp + fp
    actual = np.bincount(true, minlength=k)  # [k] tp + fn
    precision = [_ratio(t, p) for t, p in zip(tp, predicted)]
    recall = [_ratio(t, a) for t, a in zip(tp, actual)]
    f1 = [_ratio(2 * t, p + a) for t, p, a in zip(tp, predicted, actual)]  # 2tp / (2tp + fp + fn)
    return {
        "accuracy": _ratio(tp.sum(), len(true)),
        "f1_macro": float(np.mean(f1)),
        "f1_micro": _ratio(2 * tp.sum(), predicted.sum() + actual.sum()),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
    }


# ----------------------------------------------------------------------------------------------------- multi-label


def _as_bool_matrix(values: Any, name: str) -> np.ndarray:
    """values as a bool [n, num_labels] array; ints or floats must already be 0 / 1 (scores must be thresholded
    by the caller, a cast would turn every non-zero score into True)."""
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [examples, labels], got shape {array.shape}")
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be bool or 0 / 1 (threshold the scores first), got dtype {array.dtype}")
        array = array.astype(bool)
    return array


def multilabel_scores(predicted: Any, reference: Any) -> dict[str, float]:
    """Scores of a multi-label classifier.

    predicted, reference: bool (or 0 / 1) arrays [n, num_labels], n >= 1, same shape.

    Returns {"subset_accuracy": fraction of rows predicted exactly, "f1_micro": F1 of the pooled (example, label)
    decisions, "f1_macro": unweighted mean of the per-label F1 = 2 tp / (2 tp + fp + fn)}; a label never predicted
    and never true gets F1 0 (sklearn's zero_division=0).
    """
    predicted = _as_bool_matrix(predicted, "predicted")
    reference = _as_bool_matrix(reference, "reference")
    _check_counts(predicted, reference, ("predicted", "reference"))
    if predicted.shape[1] != reference.shape[1]:
        raise ValueError(
            f"predicted has {predicted.shape[1]} labels per example but reference has {reference.shape[1]}"
        )
    if predicted.shape[1] == 0:
        raise ValueError("predicted has 0 labels per example: need at least one label column")
    tp = (predicted & reference).sum(axis=0)  # [num_labels]
    fp = (predicted & ~reference).sum(axis=0)
    fn = (~predicted & reference).sum(axis=0)
    per_label = [_ratio(2 * t, 2 * t + p + n) for t, p, n in zip(tp, fp, fn)]
    return {
        "subset_accuracy": float((predicted == reference).all(axis=1).mean()),
        "f1_micro": _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()),
        "f1_macro": float(np.mean(per_label)),
    }


# ------------------------------------------------------------------------------------------------ named entities


def _check_sentences(predicted: Sequence, reference: Sequence) -> None:
    """ValueError naming the argument or the sentence index when the tag sequences do not line up."""
    _check_counts(predicted, reference, ("predicted", "reference"))
    for values, name in ((predicted, "predicted"), (reference, "reference")):
        for i, sentence in enumerate(values):
            # A flat list of tags would otherwise be read as sentences of one-letter tags.
            if isinstance(sentence, str):
                raise ValueError(f"{name} must be a list of sentences (lists of tags), got a str at index {i}")
    for i, (p, r) in enumerate(zip(predicted, reference)):
        if len(p) != len(r):
            raise ValueError(f"sentence {i}: predicted has {len(p)} tags but reference has {len(r)}")


def entity_scores(predicted: list[list[str]], reference: list[list[str]]) -> dict[str, float]:
    """Entity-level scores of a tagger, by seqeval in its default (conlleval-compatible) mode.

    predicted, reference: [sentences][tokens] tags such as "B-PER", "I-PER", "O" (IOB2; the default mode also
    reads IOB1); each sentence the same length in both.

    Returns {"precision", "recall", "f1"}: micro averages over entities (an entity counts only when its type and
    span match exactly), "accuracy": token-level fraction of equal tags, and "f1_<TYPE>" for every entity type
    found in either argument. Undefined ratios (no predicted or no true entities) are 0.
    """
    _check_sentences(predicted, reference)
    metrics = require("seqeval.metrics", _EXTRA, "entity_scores")
    labeling = require("seqeval.metrics.sequence_labeling", _EXTRA, "entity_scores")
    predicted = [list(s) for s in predicted]
    reference = [list(s) for s in reference]
    precision, recall, f1, _ = labeling.precision_recall_fscore_support(
        reference, predicted, average="micro", zero_division=0
    )
    scores = {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy": float(metrics.accuracy_score(reference, predicted)),
    }
    # seqeval orders its per-type rows by the sorted union of the types found in both arguments.
    types = sorted({t for seqs in (reference, predicted) for t, _, _ in labeling.get_entities(seqs)})
    if types:
        _, _, per_type, _ = labeling.precision_recall_fscore_support(reference, predicted, average=None,
                                                                     zero_division=0)
        scores.update({f"f1_{t}": float(v) for t, v in zip(types, per_type)})
    return scores


# ------------------------------------------------------------------------------------------------------ ROUGE


_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _one_sentence_per_line(text: str) -> str:
    """text with each sentence on its own line, for rougeLsum (which scores per line).

    Stands in for HF run_summarization's ``"\\n".join(nltk.sent_tokenize(text))`` without nltk's punkt data: lines
    are kept, and a line is also split after ".", "!" or "?" followed by whitespace. Unlike punkt it also splits
    after abbreviations ("Dr. Smith"), so rougeLsum can differ slightly from HF's on such text.
    """
    sentences = (s for line in text.split("\n") for s in _SENTENCE_END.split(line.strip()))
    return "\n".join(s for s in sentences if s)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE F-measures of generated summaries, by rouge-score with its Porter stemmer.

    predictions, references: [n] strings, one reference per prediction.

    Returns {"rouge1", "rouge2", "rougeL", "rougeLsum"}: the mean over examples of each F-measure (a plain mean,
    not HF evaluate's bootstrap midpoint). For rougeLsum both texts are first put one sentence per line (see
    ``_one_sentence_per_line``). rouge-score's tokenizer keeps only ASCII letters and digits, so text in other
    scripts scores 0.
    """
    predictions = _as_list(predictions, "predictions")
    references = _as_list(references, "references")
    _check_counts(predictions, references, ("predictions", "references"))
    for values, name in ((predictions, "predictions"), (references, "references")):
        for i, text in enumerate(values):
            if not isinstance(text, str):
                raise ValueError(f"{name}[{i}] must be a str, got {type(text).__name__}")
    rouge_scorer = require("rouge_score.rouge_scorer", _EXTRA, "rouge_scores")
    scorer = rouge_scorer.RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(_ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        # score(target, prediction): the reference comes first.
        scores = scorer.score(_one_sentence_per_line(reference), _one_sentence_per_line(prediction))
        for name in _ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: total / len(predictions) for name, total in totals.items()}


# ------------------------------------------------------------------------------------------------------ SQuAD


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop ASCII punctuation, drop the articles a / an / the, and
    collapse runs of whitespace to one space (stripped)."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _exact(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def _token_f1(prediction: str, gold: str) -> float:
    """F1 of the normalised tokens, counted as multisets; when either side has no token, 1.0 only if both are
    empty (how SQuAD v2 scores a no-answer)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float | int]:
    """Exact match and token F1 of extractive QA by the SQuAD v1.1 / v2.0 rules.

    predictions: question id -> predicted answer text ("" = no answer). references: question id -> gold answer
    texts; an empty list marks an unanswerable question (v2.0), whose right prediction is "". Gold answers that
    normalise to nothing are dropped, and a question left with none is scored against "". Each question scores
    the max over its gold answers. The ids of predictions and references must be the same (ValueError naming a
    missing or extra id).

    Returns {"exact_match", "f1": means over the questions (fractions, not percentages), "total": the number of
    questions}; when any question is unanswerable also "HasAns_exact", "HasAns_f1", "HasAns_total" and
    "NoAns_exact", "NoAns_f1", "NoAns_total", the same over the answerable and the unanswerable questions (the
    means are 0.0 over an empty group).
    """
    _check_squad_ids(predictions, references)
    exact, f1, has_answer = {}, {}, {}
    for qid, answers in references.items():
        if isinstance(answers, str):
            raise ValueError(f"references[{qid!r}] must be a list of answer texts, got a str")
        prediction = predictions[qid]
        golds = [a for a in answers if normalize_answer(a)] or [""]
        exact[qid] = max(_exact(prediction, g) for g in golds)
        f1[qid] = max(_token_f1(prediction, g) for g in golds)
        has_answer[qid] = bool(answers)
    overall = _squad_group(exact, f1, list(references))
    scores = {"exact_match": overall["exact"], "f1": overall["f1"], "total": overall["total"]}
    if not all(has_answer.values()):
        for prefix, keep in (("HasAns", True), ("NoAns", False)):
            group = _squad_group(exact, f1, [q for q, h in has_answer.items() if h == keep])
            scores.update({f"{prefix}_{k}": v for k, v in group.items()})
    return scores


def _check_squad_ids(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    """ValueError when either is empty, when a reference id has no prediction (naming the id), or when
    predictions has ids that references lacks (the counts then differ)."""
    for values, name in ((predictions, "predictions"), (references, "references")):
        if len(values) == 0:
            raise ValueError(f"{name} is empty: need at least one question")
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"predictions has no answer for question id {missing[0]!r} ({len(missing)} ids missing)")
    if len(predictions) != len(references):
        extra = [qid for qid in predictions if qid not in references]
        raise ValueError(
            f"predictions has {len(predictions)} questions but references has {len(references)}: "
            f"ids not in references, e.g. {extra[0]!r}"
        )


def _squad_group(exact: dict, f1: dict, qids: list[str]) -> dict[str, float | int]:
    """{"exact", "f1", "total"} over the question ids qids (means 0.0 when there is none)."""
    n = len(qids)
    return {
        "exact": _ratio(sum(exact[q] for q in qids), n),
        "f1": _ratio(sum(f1[q] for q in qids), n),
        "total": n,
    }


# ------------------------------------------------------------------------------------------- best-checkpoint rule


# Metric name -> True when a higher value is better. Counts ("total", "HasAns_total", ...) are not metrics and are
# left out; entity_scores' per-type "f1_<TYPE>" names are covered by is_better's "f1_" rule. "loss" (the eval
# loss) is here too because it is the usual default for picking a checkpoint.
METRICS: dict[str, bool] = {
    "loss": False,
    "perplexity": False,
    "accuracy": True,
    "f1_macro": True,
    "f1_micro": True,
    "precision_macro": True,
    "recall_macro": True,
    "subset_accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "rouge1": True,
    "rouge2": True,
    "rougeL": True,
    "rougeLsum": True,
    "exact_match": True,
    "HasAns_exact": True,
    "HasAns_f1": True,
    "NoAns_exact": True,
    "NoAns_f1": True,
}


def higher_is_better(name: str) -> bool:
    """Whether a higher value of metric ``name`` is better: METRICS, plus "f1_<TYPE>" (entity_scores' per-type
    F1); ValueError for any other name."""
    if name in METRICS:
        return METRICS[name]
    if name.startswith("f1_") and len(name) > 3:
        return True
    raise ValueError(f"unknown metric {name!r}: expected one of {sorted(METRICS)} or f1_<TYPE>")


def is_better(name: str, new: float, old: float | None) -> bool:
    """Whether value ``new`` of metric ``name`` beats ``old`` (strictly, so a tie keeps the older checkpoint).

    old None or NaN (no checkpoint kept yet, or a diverged one): any non-NaN new is better. A NaN new is never
    better. ValueError for a name neither in METRICS nor of the form "f1_<TYPE>".
    """
    higher = higher_is_better(name)
    new = float(new)
    if math.isnan(new):
        return False
    if old is None or math.isnan(float(old)):
        return True
    return new > old if higher else new < old
