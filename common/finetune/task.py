"""What every fine-tuning task shares: its options, its columns, the tokenization helpers, and how it is evaluated.

A task (``common.finetune.tasks``) turns data rows into features (``common.finetune.batches``) for one head of a
family and scores the model on held-out rows with its metric::

    task = TASKS[name](options, tokenizer, "longformer")   # the model's family
    task.prepare(train_rows, "train.jsonl")          # columns, label set (from the training file)
    overrides = task.config_overrides()              # num_labels, id2label, ... for the head's config
    task.bind(model)                                 # a common.model.Model with the task's head and labels
    features = task.features(rows, source)           # list of {name: np.ndarray}, checked, labels included
    scores = task.evaluate(evaluator, rows, features)  # {"f1": ..., ...}; task.metric names the main one
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from common.finetune.batches import Field, collate, eval_batches, feature_length
from common.finetune.data import DataError, find_column, where
from common.pipelines.batching import check_ladder

IGNORE = -100  # the label every HF loss skips
# Families that number positions as RoBERTa does, from pad_token_id + 1: they hold max_positions - pad - 1 tokens.
ROBERTA_POSITIONS = ("longformer", "lilt")


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The knobs of pre-processing and evaluation (``jaxzoo finetune`` flags of the same names)."""

    max_seq_length: int | None = None  # tokens per row; default: the tokenizer's and the model's limit, at most 512
    doc_stride: int = 128  # question answering: tokens shared by consecutive windows of a long context
    max_target_length: int = 128  # summarization: summary tokens the model learns (and generates at evaluation)
    num_beams: int = 1  # summarization: beam width of the evaluation's generation
    mlm_probability: float = 0.15  # masked-lm: the fraction of tokens masked
    label_names: tuple[str, ...] | None = None  # names of integer labels 0..k-1 (e.g. CoNLL's tags)
    columns: tuple[tuple[str, str], ...] = ()  # (role, column name): a column named otherwise than the default
    buckets: tuple[int, ...] | None = None  # padded lengths, increasing (default: the pipelines' ladder)

    def __post_init__(self):
        checks = {"max_seq_length": self.max_seq_length is None or self.max_seq_length >= 8,
                  "doc_stride": self.doc_stride >= 1, "max_target_length": self.max_target_length >= 2,
                  "num_beams": self.num_beams >= 1, "mlm_probability": 0 < self.mlm_probability < 1}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: expected max_seq_length >= 8 (or "
                                 "None), doc_stride >= 1, max_target_length >= 2, num_beams >= 1, 0 < "
                                 "mlm_probability < 1")
        object.__setattr__(self, "buckets", check_ladder(self.buckets))


class Task:
    """One task: subclasses set the class variables and fill in ``prepare``, ``features`` and ``evaluate``."""

    name: ClassVar[str]
    heads: ClassVar[Mapping[str, str]]  # family name -> the head this task trains on it
    metric: ClassVar[str]  # the main metric: the best checkpoint is the one where it is best
    columns: ClassVar[Mapping[str, tuple[str, ...]]] = {}  # role -> the column names it may have (first found)
    optional_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: TaskOptions, tokenizer, family: str):
        self.head_for(family)
        self.options = options
        self.tokenizer = tokenizer
        self.family = family
        self.model = self.config = None
        self.column: dict[str, str | None] = {}
        unknown = sorted({role for role, _ in options.columns} - set(self.columns))
        if unknown:
            raise ValueError(f"columns: task {self.name!r} has no column role {unknown}; its roles are "
                             f"{sorted(self.columns)}")
        self.fields: dict[str, Field] = self.make_fields()

    def make_fields(self) -> dict[str, Field]:
        """How each sequence field of this task's features is padded (common.finetune.batches.Field); a field
        not named here has no sequence axis and is stacked as it is."""
        raise NotImplementedError

    def bind(self, model) -> None:
        """The model (with this task's head and labels) the features are for and the evaluations run."""
        self.model = model
        self.config = model.config

    @classmethod
    def head_for(cls, family: str) -> str:
        if family not in cls.heads:
            raise ValueError(f"task {cls.name!r} trains {', '.join(sorted(cls.heads))} models, not {family}")
        return cls.heads[family]

    # ------------------------------------------------------------------------------------ columns
    def find_columns(self, rows: Sequence[dict], source: str) -> None:
        """Each role's column in ``rows`` (the user's name for it, else the first default present)."""
        given = dict(self.options.columns)
        for role, candidates in self.columns.items():
            names = (given[role],) if role in given else candidates
            self.column[role] = find_column(rows, source, role, names,
                                            required=role not in self.optional_columns or role in given)

    def prepare(self, rows: Sequence[dict], source: str) -> None:
        """Learn what the training file decides (columns, the label set)."""
        self.find_columns(rows, source)

    def config_overrides(self) -> dict[str, Any]:
        """config.json fields the head needs for this data (num_labels, id2label, ...)."""
        return {}

    def features(self, rows: Sequence[dict], source: str) -> list[dict[str, np.ndarray]]:
        raise NotImplementedError

    def held_out(self, features: list[dict], seed: int) -> list[dict]:
        """The held-out features as every evaluation scores them (masked-lm masks them once here)."""
        return features

    def train_batch(self, batch: dict[str, np.ndarray], step: int, seed: int) -> dict[str, np.ndarray]:
        """The batch a train step gets (masked-lm masks it here, from (seed, step): the same on resume)."""
        return batch

    def evaluate(self, evaluator: "Evaluator", rows: Sequence[dict], features: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- helpers
    @property
    def max_length(self) -> int:
        """Tokens per row: --max-seq-length, else the tokenizer's model_max_length and the model's positions,
        at most 512 (as transformers' run_* scripts)."""
        limit = self.model.spec.max_positions(self.config) if self.model.spec.max_positions else None
        if limit is not None and self.family in ROBERTA_POSITIONS:
            limit -= self.config.pad_token_id + 1
        if self.options.max_seq_length is not None:
            if limit is not None and self.options.max_seq_length > limit:
                raise ValueError(f"max_seq_length = {self.options.max_seq_length} is more than the {limit} tokens the "
                                 "model's positions hold")
            return self.options.max_seq_length
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        candidates = [512] + [x for x in (limit, tok_limit) if isinstance(x, int) and 0 < x < 10**9]
        return min(candidates)

    def label_index(self, rows: Sequence[dict], source: str, i: int, column: str, value, field: str | None = None):
        """The index of a label value in self.labels; DataError naming the row when it is not in the set."""
        if isinstance(value, bool) or value not in self.label_to_index:
            raise DataError(f"{where(source, i, field or column)}: label {value!r} is not in the label set "
                            f"{list(self.label_to_index)[:20]} (learned from the training file)")
        return self.label_to_index[value]

    def set_labels(self, values: Sequence, source: str, column: str) -> None:
        """The label set from the training file's label values (str, or int with --label-names or 0..max)."""
        names = self.options.label_names
        self.label_names_given = names is not None
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        strs = [v for v in values if isinstance(v, str)]
        if ints and strs or len(ints) + len(strs) != len(values):
            odd = next(v for v in values if not isinstance(v, (int, str)) or isinstance(v, bool)) \
                if len(ints) + len(strs) != len(values) else strs[0]
            raise DataError(f"{source}: column {column!r} mixes label kinds (e.g. {odd!r}); expected all int or "
                            "all str labels")
        if strs:
            self.labels = list(names) if names else sorted(set(strs))
            self.label_to_index = {name: i for i, name in enumerate(self.labels)}
            return
        top = max(ints)
        if min(ints) < 0:
            raise DataError(f"{source}: column {column!r} has the label {min(ints)}; int labels are 0..k-1")
        if names is not None and top >= len(names):
            raise DataError(f"{source}: column {column!r} has the label {top}, but --label-names names only "
                            f"{len(names)} labels (0..{len(names) - 1})")
        self.labels = list(names) if names else [str(i) for i in range(top + 1)]
        self.label_to_index = {i: i for i in range(len(self.labels))}

    def label_config(self, problem_type: str | None = None) -> dict[str, Any]:
        out = {"num_labels": len(self.labels), "id2label": {str(i): n for i, n in enumerate(self.labels)},
               "label2id": {n: i for i, n in enumerate(self.labels)}}
        if problem_type is not None:
            out["problem_type"] = problem_type
        return out

    def checked_text(self, rows: Sequence[dict], source: str, i: int, role: str) -> str:
        column = self.column[role]
        text = rows[i].get(column)
        if not isinstance(text, str) or not text.strip():
            got = "nothing (missing or null)" if text is None else repr(text)[:60]
            raise DataError(f"{where(source, i, column)}: expected a non-empty text, got {got}")
        return text


# ----------------------------------------------------------------------------------- tokenization
def encode_text(tokenizer, text: str, pair: str | None, max_length: int) -> np.ndarray:
    """int32 [seq] ids of a text (or pair) with the tokenizer's special tokens, cut to max_length as transformers'
    truncation=True ("longest_first") cuts it. A tokenizer without truncation (Llama's) is cut from the right,
    a pair joined as its fast tokenizer joins one (the second text with its own bos)."""
    if "truncation" in _call_args(tokenizer):
        return np.asarray(tokenizer(text, pair, truncation=True, max_length=max_length)["input_ids"][0], np.int32)
    ids = list(tokenizer(text)["input_ids"][0])
    if pair is not None:
        ids += list(tokenizer(pair)["input_ids"][0])
    return np.asarray(ids[:max_length], np.int32)


def encode_words(tokenizer, words: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32 [seq], word index of each token int64 [seq], -1 for special tokens) of pre-split words, cut to
    max_length tokens (content cut, special tokens kept). A fast tokenizer encodes the words as transformers'
    is_split_into_words does; another (XLM's) tokenizes each word on its own."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None:
        enc = backend.encode(list(words), is_pretokenized=True, add_special_tokens=True)
        ids = np.asarray(enc.ids, np.int32)
        word_ids = np.asarray([-1 if w is None else w for w in enc.word_ids], np.int64)
        if len(ids) > max_length:
            trailing = len(ids) - 1 - int(np.flatnonzero(word_ids >= 0)[-1])  # special tokens after the words
            keep = np.r_[0:max_length - trailing, len(ids) - trailing:len(ids)]
            ids, word_ids = ids[keep], word_ids[keep]
        return ids, word_ids
    pieces, owners = [], []
    for w, word in enumerate(words):
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        pieces += ids
        owners += [w] * len(ids)
    special = len(tokenizer.build_inputs_with_special_tokens([]))
    room = max(max_length - special, 0)
    marked = tokenizer.build_inputs_with_special_tokens([-1])
    lead = marked.index(-1)  # special tokens before the content
    ids = np.asarray(tokenizer.build_inputs_with_special_tokens(pieces[:room]), np.int32)
    word_ids = np.full(len(ids), -1, np.int64)
    word_ids[lead:lead + len(owners[:room])] = owners[:room]
    return ids, word_ids


def first_subword_labels(word_ids: np.ndarray, word_labels: Sequence[int]) -> np.ndarray:
    """int32 [seq]: each word's label on its first token, IGNORE on its other tokens and on special tokens (the
    labelling transformers' run_ner uses with label_all_tokens=False)."""
    labels = np.full(len(word_ids), IGNORE, np.int32)
    previous = -1
    for t, w in enumerate(word_ids):
        if w >= 0 and w != previous:
            labels[t] = word_labels[w]
        previous = w
    return labels


def special_ids(tokenizer) -> set[int]:
    """The tokenizer's special token ids (masking skips them)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for name in ("bos", "eos", "pad", "cls", "sep", "mask", "unk"):
        value = getattr(tokenizer, f"{name}_token_id", None)
        if isinstance(value, int):
            ids.add(value)
    return ids


def _call_args(tokenizer) -> Sequence[str]:
    import inspect

    return tuple(inspect.signature(tokenizer.__call__).parameters)


# ------------------------------------------------------------------------------------ evaluation
class Evaluator:
    """The model's outputs over features, in batches of one row count and bucketed lengths (compiled once per
    length). ``model``: a common.model.Model whose params the job swaps for the latest before each evaluation."""

    def __init__(self, model, fields: Mapping[str, Field], batch_size: int, limits: Mapping[str, int | None],
                 ladder: Sequence[int] | None = None):
        self.model = model
        self.fields = fields
        self.batch_size = batch_size
        self.limits = limits
        self.ladder = ladder

    def batches(self, features: list[dict], keep_labels: bool = False):
        """(feature indices, padded batch) over all features; copies that fill the last batch get IGNORE labels."""
        lengths = [feature_length(f, self.fields) for f in features]
        for real, filled in eval_batches(lengths, self.batch_size):
            batch = collate([features[i] for i in filled], self.fields, self.limits, self.ladder)
            if keep_labels and "labels" in batch and len(real) < len(filled):  # copies count for nothing
                batch["labels"] = batch["labels"].copy()
                batch["labels"][len(real):] = IGNORE
            if not keep_labels:
                batch.pop("labels", None)
            yield real, batch

    def outputs(self, features: list[dict], per_token: bool = False) -> list[np.ndarray]:
        """Each feature's logits: [num_labels] (or [choices]) per example, or with ``per_token`` [seq, ...] cut
        to the feature's own length."""
        results: list[np.ndarray | None] = [None] * len(features)
        for real, batch in self.batches(features, keep_labels=False):
            logits = np.asarray(self.model(**batch).logits)
            for j, i in enumerate(real):
                results[i] = logits[j, :feature_length(features[i], self.fields)] if per_token else logits[j]
        return results

    def mean_loss(self, features: list[dict], count) -> float:
        """The head's loss over all features, weighted by ``count(batch)`` (the labels a batch's loss averages)."""
        total, n = 0.0, 0
        for _, batch in self.batches(features, keep_labels=True):
            k = int(count(batch))
            if k:
                total += float(self.model(**batch).loss) * k
                n += k
        return total / max(n, 1)
