"""The fine-tuning tasks: data rows -> features for one head, and the task's metric on held-out rows.

Columns default to the layout of the usual public datasets of each task (GLUE / IMDB, CoNLL-2003, SQuAD v1 and
v2, XSum / CNN-DailyMail, SWAG, FUNSD); ``TaskOptions.columns`` names others. Every check of a row raises a
DataError naming the file, the row and the field.
"""

from __future__ import annotations

import warnings

import numpy as np

from common.finetune import metrics
from common.finetune.batches import Field
from common.finetune.data import DataError, where
from common.finetune.task import (IGNORE, Evaluator, Task, encode_text, encode_words, first_subword_labels,
                                  special_ids)


def _pad_id(tokenizer) -> int:
    return next((i for i in (tokenizer.pad_token_id, getattr(tokenizer, "eos_token_id", None)) if i is not None), 0)


def _text_fields(tokenizer) -> dict[str, Field]:
    return {"input_ids": Field(_pad_id(tokenizer)), "attention_mask": Field(0)}


class _Labelled(Task):
    """Tasks whose rows carry labels from a label set (learned from the training file)."""

    def bind(self, model):
        super().bind(model)
        if getattr(self.config, "summary_type", None) == "last" and self.name in ("text-classification",
                                                                                "multiple-choice"):
            # transformers' XLM reads the last position, which in a right-padded batch is padding (zeros after
            # XLM's mask): every row shorter than its batch gives the same logits and teaches nothing.
            warnings.warn(f"{model.architecture}: summary_type 'last' reads the last position, which is padding for "
                          "every row shorter than its batch, so those rows learn nothing; XLM checkpoints on the Hub "
                          "use 'first'", stacklevel=2)

    def make_fields(self):
        return _text_fields(self.tokenizer)


# ------------------------------------------------------------------------------ text classification
class TextClassification(_Labelled):
    """One text or a pair -> a label (single-label), or a list of labels (multi-label: the label column holds
    lists). Metric: accuracy (single-label) or micro F1 (multi-label)."""

    name = "text-classification"
    heads = {f: "sequence_classification" for f in ("llama", "longformer", "led", "xlm")}
    metric = "accuracy"
    columns = {"text": ("text", "sentence", "sentence1"), "text_pair": ("text_pair", "sentence2"),
               "label": ("label", "labels")}
    optional_columns = ("text_pair",)

    def prepare(self, rows, source):
        super().prepare(rows, source)
        column = self.column["label"]
        values = [r.get(column) for r in rows]
        self.multi_label = isinstance(values[0], list)
        if self.multi_label:
            for i, v in enumerate(values):
                if not isinstance(v, list):
                    raise DataError(f"{where(source, i, column)}: expected a list of labels (multi-label, as row 1), "
                                    f"got {v!r}"[:200])
            values = [x for v in values for x in v]
            if not values:
                raise DataError(f"{source}: column {column!r} holds only empty label lists")
        self.set_labels(values, source, column)
        self.metric = "f1_micro" if self.multi_label else "accuracy"

    def config_overrides(self):
        out = self.label_config("multi_label_classification" if self.multi_label else "single_label_classification")
        if self.family == "llama":  # its head pools the last token that is not padding, found by the pad id
            out["pad_token_id"] = _pad_id(self.tokenizer)
        return out

    def features(self, rows, source):
        out = []
        label_column = self.column["label"]
        for i in range(len(rows)):
            text = self.checked_text(rows, source, i, "text")
            pair = self.checked_text(rows, source, i, "text_pair") if self.column.get("text_pair") else None
            ids = encode_text(self.tokenizer, text, pair, self.max_length)
            value = rows[i].get(label_column)
            if self.multi_label:
                if not isinstance(value, list):
                    raise DataError(f"{where(source, i, label_column)}: expected a list of labels, got {value!r}"[:200])
                label = np.zeros(len(self.labels), np.float32)
                for v in value:
                    label[self.label_index(rows, source, i, label_column, v)] = 1.0
            else:
                label = np.int32(self.label_index(rows, source, i, label_column, value))
            out.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": label})
        return out

    def evaluate(self, evaluator: Evaluator, rows, features):
        logits = np.stack(evaluator.outputs(features))
        labels = np.stack([f["labels"] for f in features])
        if self.multi_label:
            return metrics.multilabel_scores(logits > 0, labels > 0.5)
        return metrics.classification_scores(logits.argmax(-1).tolist(), labels.tolist(),
                                             labels=list(range(len(self.labels))))


# ----------------------------------------------------------------------------- token classification
class TokenClassification(_Labelled):
    """Pre-split words -> one tag per word (CoNLL layout: "tokens", "ner_tags"); the first token of each word
    learns its tag. Metric: seqeval's entity F1 over the words the rows hold (IOB tags)."""

    name = "token-classification"
    heads = {f: "token_classification" for f in ("llama", "longformer", "xlm")}
    metric = "f1"
    columns = {"words": ("tokens", "words"), "tags": ("ner_tags", "tags", "labels")}

    def make_fields(self):
        return {**_text_fields(self.tokenizer), "labels": Field(IGNORE)}

    def prepare(self, rows, source):
        super().prepare(rows, source)
        column = self.column["tags"]
        tags = []
        for i, r in enumerate(rows):
            value = r.get(column)
            if not isinstance(value, list):
                raise DataError(f"{where(source, i, column)}: expected a list of tags, got {value!r}"[:200])
            tags += value
        self.set_labels(tags, source, column)
        if not self.label_names_given and all(name.isdigit() for name in self.labels):
            raise DataError(f"{source}: column {column!r} holds int tags; name them with --label-names (e.g. "
                            "O,B-PER,I-PER,...) so entities can be scored")

    def config_overrides(self):
        return self.label_config()

    def words_and_tags(self, rows, source, i) -> tuple[list[str], list[int]]:
        words_col, tags_col = self.column["words"], self.column["tags"]
        words, tags = rows[i].get(words_col), rows[i].get(tags_col)
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
            raise DataError(f"{where(source, i, words_col)}: expected a non-empty list of words (non-empty str), "
                            f"got {words!r}"[:200])
        if not isinstance(tags, list) or len(tags) != len(words):
            n = len(tags) if isinstance(tags, list) else tags
            raise DataError(f"{where(source, i, tags_col)}: expected one tag per word ({len(words)}), got {n!r}"[:200])
        return words, [self.label_index(rows, source, i, tags_col, t) for t in tags]

    def features(self, rows, source):
        out = []
        for i in range(len(rows)):
            words, tags = self.words_and_tags(rows, source, i)
            ids, word_ids = encode_words(self.tokenizer, words, self.max_length)
            out.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                        "labels": first_subword_labels(word_ids, tags)})
        return out

    def evaluate(self, evaluator: Evaluator, rows, features):
        predicted, reference = [], []
        for f, logits in zip(features, evaluator.outputs(features, per_token=True)):
            keep = f["labels"] != IGNORE
            predicted.append([self.labels[k] for k in logits.argmax(-1)[keep]])
            reference.append([self.labels[k] for k in f["labels"][keep]])
        return metrics.entity_scores(predicted, reference)


class DocumentTokenClassification(TokenClassification):
    """LiLT: words + boxes (0..1000) -> one tag per word (FUNSD layout: "tokens", "bboxes", "ner_tags")."""

    name = "document-token-classification"
    heads = {"lilt": "token_classification"}
    columns = {"words": ("tokens", "words"), "boxes": ("bboxes", "boxes"), "tags": ("ner_tags", "tags", "labels")}

    def make_fields(self):
        return {**super().make_fields(), "bbox": Field((0, 0, 0, 0))}

    def features(self, rows, source):
        out = []
        box_col = self.column["boxes"]
        for i in range(len(rows)):
            words, tags = self.words_and_tags(rows, source, i)
            boxes = rows[i].get(box_col)
            if not isinstance(boxes, list) or len(boxes) != len(words):
                n = len(boxes) if isinstance(boxes, list) else boxes
                raise DataError(f"{where(source, i, box_col)}: expected one box per word ({len(words)}), got "
                                f"{n!r}"[:200])
            for k, box in enumerate(boxes):
                if not (isinstance(box, list) and len(box) == 4 and all(
                        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1000 for v in box)
                        and box[0] <= box[2] and box[1] <= box[3]):
                    raise DataError(f"{where(source, i, box_col)}[{k}]: expected [x0, y0, x1, y1], ints in 0..1000 "
                                    f"with x0 <= x1 and y0 <= y1 (boxes normalised to the page), got {box!r}"[:240])
            enc = self.tokenizer(words, boxes=boxes, word_labels=tags, truncation=True, max_length=self.max_length)
            out.append({k: np.asarray(enc[k][0]) for k in ("input_ids", "attention_mask", "bbox", "labels")})
        return out


# ------------------------------------------------------------------------------- multiple choice
class MultipleChoice(_Labelled):
    """SWAG layout: a context ("sent1"), the start of the answer ("sent2") and endings "ending0".."endingN";
    "label": the right ending. Each choice is the pair (context, start + " " + ending). Metric: accuracy."""

    name = "multiple-choice"
    heads = {"longformer": "multiple_choice", "xlm": "multiple_choice"}
    metric = "accuracy"
    columns = {"context": ("sent1", "context"), "question": ("sent2", "question"), "label": ("label",)}

    def make_fields(self):
        return {"input_ids": Field(_pad_id(self.tokenizer), axis=1), "attention_mask": Field(0, axis=1)}

    def prepare(self, rows, source):
        super().prepare(rows, source)
        self.endings = sorted((c for c in rows[0] if c.startswith("ending") and c[6:].isdigit()),
                              key=lambda c: int(c[6:]))
        if len(self.endings) < 2:
            raise DataError(f"{source}: expected ending columns 'ending0', 'ending1', ... (two at least); the file "
                            f"has columns {list(rows[0])}")
        self.labels = [str(k) for k in range(len(self.endings))]

    def features(self, rows, source):
        out = []
        label_col = self.column["label"]
        for i in range(len(rows)):
            context = self.checked_text(rows, source, i, "context")
            start = rows[i].get(self.column["question"]) or ""
            choices = []
            for col in self.endings:
                ending = rows[i].get(col)
                if not isinstance(ending, str) or not ending.strip():
                    raise DataError(f"{where(source, i, col)}: expected a non-empty ending, got {ending!r}"[:200])
                choices.append(encode_text(self.tokenizer, context, f"{start} {ending}".strip(), self.max_length))
            label = rows[i].get(label_col)
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(self.endings):
                raise DataError(f"{where(source, i, label_col)}: expected the right ending's index, an int in "
                                f"0..{len(self.endings) - 1}, got {label!r}")
            length = max(len(c) for c in choices)
            ids = np.full((len(choices), length), _pad_id(self.tokenizer), np.int32)
            mask = np.zeros((len(choices), length), np.int32)
            for k, c in enumerate(choices):
                ids[k, :len(c)], mask[k, :len(c)] = c, 1
            out.append({"input_ids": ids, "attention_mask": mask, "labels": np.int32(label)})
        return out

    def evaluate(self, evaluator: Evaluator, rows, features):
        logits = np.stack(evaluator.outputs(features))
        labels = [int(f["labels"]) for f in features]
        return {"accuracy": metrics.accuracy(logits.argmax(-1).tolist(), labels)}


# ---------------------------------------------------------------------------- question answering
class QuestionAnswering(Task):
    """SQuAD v1 / v2 layout: "id", "question", "context", "answers" {"text": [...], "answer_start": [...]} (an
    empty list: no answer, v2). Long contexts are cut into windows as the question-answering pipeline cuts them;
    a window that does not hold the (first) answer learns "no answer" (both positions on the cls token).
    Evaluation runs the question-answering pipeline over the held-out rows. Metric: SQuAD F1."""

    name = "question-answering"
    heads = {"llama": "question_answering", "longformer": "question_answering", "led": "question_answering",
             "xlm": "question_answering_simple"}
    metric = "f1"
    columns = {"id": ("id",), "question": ("question",), "context": ("context",), "answers": ("answers",)}

    def bind(self, model):
        super().bind(model)
        from common.pipelines.question_answering import QuestionAnswering as Pipe

        self.pipe = Pipe(model, self.tokenizer, buckets=self.options.buckets)
        self.opts = self.pipe.resolve_options({**self.pipe.defaults, "max_seq_len": self.max_length,
                                               "doc_stride": min(self.options.doc_stride, self.max_length // 2)})

    def answers(self, rows, source, i) -> tuple[list[str], list[int]]:
        """The row's answer texts and starts, each checked against its context."""
        column = self.column["answers"]
        value = rows[i].get(column)
        if not isinstance(value, dict) or not isinstance(value.get("text"), list) or \
                not isinstance(value.get("answer_start"), list) or len(value["text"]) != len(value["answer_start"]):
            raise DataError(f"{where(source, i, column)}: expected {{'text': [str, ...], 'answer_start': [int, ...]}} "
                            f"of equal lengths, got {value!r}"[:240])
        context = self.checked_text(rows, source, i, "context")
        for k, (text, start) in enumerate(zip(value["text"], value["answer_start"])):
            if not isinstance(text, str) or not text or isinstance(start, bool) or not isinstance(start, int) \
                    or context[start:start + len(text)] != text:
                found = context.find(text) if isinstance(text, str) and text else -1
                hint = f" (the text is at {found})" if found >= 0 else " (the text is not in the context)"
                raise DataError(f"{where(source, i, column)}: answer {k} {text!r} does not start at character "
                                f"{start!r} of the context{hint}"[:300])
        return value["text"], value["answer_start"]

    def make_fields(self):
        return {**_text_fields(self.tokenizer), "token_type_ids": Field(0)}

    def config_overrides(self):
        """Span heads have two outputs (start, end), whatever the checkpoint's classifier had."""
        self.labels = ["LABEL_0", "LABEL_1"]
        return self.label_config()

    def prepare(self, rows, source):
        super().prepare(rows, source)
        self.version_2 = any(not (r.get(self.column["answers"]) or {}).get("text") for r in rows)

    def features(self, rows, source):
        out = []
        for i in range(len(rows)):
            question = self.checked_text(rows, source, i, "question")
            context = self.checked_text(rows, source, i, "context")
            texts, starts = self.answers(rows, source, i)
            try:
                encoded = self.pipe.preprocess((question, context), where(source, i), self.opts)
            except ValueError as e:
                raise DataError(str(e)) from None
            span = (starts[0], starts[0] + len(texts[0])) if texts else None
            for k, row in enumerate(encoded.rows):
                start, end = self.span_tokens(encoded, k, row, span)
                feature = {"input_ids": row["input_ids"].astype(np.int32),
                           "attention_mask": row["attention_mask"].astype(np.int32),
                           "start_positions": np.int32(start), "end_positions": np.int32(end)}
                if "token_type_ids" in row and self.model.accepts("token_type_ids"):
                    feature["token_type_ids"] = row["token_type_ids"].astype(np.int32)
                out.append(feature)
        return out

    def span_tokens(self, encoded, k: int, row: dict, span) -> tuple[int, int]:
        """The first and last token of the answer's characters in window k; the cls token when the window does not
        hold the whole answer (or there is none)."""
        ids = row["input_ids"]
        cls = int(np.flatnonzero(ids == self.tokenizer.cls_token_id)[0]) \
            if getattr(self.tokenizer, "cls_token_id", None) in ids else 0
        if span is None:
            return cls, cls
        first, last = span
        if self.pipe.offsets:
            enc = encoded.meta["windows"][k]
            context_seq = 1 if encoded.meta["question_first"] else 0
            tokens = [t for t, s in enumerate(enc.sequence_ids) if s == context_seq
                      and enc.offsets[t][0] < last and enc.offsets[t][1] > first]
            inside = [t for t, s in enumerate(enc.sequence_ids) if s == context_seq]
            if not tokens or enc.offsets[inside[0]][0] > first or enc.offsets[inside[-1]][1] < last:
                return cls, cls
            return tokens[0], tokens[-1]
        words = encoded.meta["words"]
        window = encoded.meta["windows"][k]
        covered = [w for w, (s, e) in enumerate(zip(words.starts, words.ends)) if s < last and e >= first]
        tokens = np.flatnonzero(np.isin(window.word_of_token, covered))
        held = set(window.word_of_token[window.word_of_token >= 0].tolist())
        if not covered or not set(covered) <= held:
            return cls, cls
        return int(tokens[0]), int(tokens[-1])

    def evaluate(self, evaluator: Evaluator, rows, features):
        self.pipe.batch_size = evaluator.batch_size
        items = [{"question": r[self.column["question"]], "context": r[self.column["context"]]} for r in rows]
        opts = {k: self.opts[k] for k in ("max_seq_len", "doc_stride")}
        answers = self.pipe.each(items, handle_impossible_answer=self.version_2, **opts)
        ids = [str(r.get(self.column["id"], i)) for i, r in enumerate(rows)]
        predictions = {i: a["answer"] for i, a in zip(ids, answers)}
        references = {i: list(r[self.column["answers"]]["text"]) for i, r in zip(ids, rows)}
        return metrics.squad_scores(predictions, references)


# --------------------------------------------------------------------------------- summarization
class Summarization(Task):
    """LED: a document -> its summary (XSum layout "document", "summary"; CNN/DailyMail "article", "highlights").
    The first token attends globally, as LED's documentation sets it. Evaluation generates a summary of each held-out
    document (greedy, or --num-beams). Metric: ROUGE-L (ROUGE-1/2/Lsum beside it)."""

    name = "summarization"
    heads = {"led": "conditional_generation"}
    metric = "rougeL"
    columns = {"text": ("document", "article", "text"), "summary": ("summary", "highlights")}

    def make_fields(self):
        return {**_text_fields(self.tokenizer), "global_attention_mask": Field(0),
                "labels": Field(IGNORE, group="target")}

    @property
    def max_length(self) -> int:
        limit = self.config.max_encoder_position_embeddings
        if self.options.max_seq_length is not None:
            if self.options.max_seq_length > limit:
                raise ValueError(f"max_seq_length = {self.options.max_seq_length} is more than the encoder's {limit} "
                                 "positions")
            return self.options.max_seq_length
        return min(limit, 4096)

    @property
    def target_length(self) -> int:
        """Summary tokens: --max-target-length, at most the decoder's positions."""
        return min(self.options.max_target_length, self.config.max_decoder_position_embeddings)

    def features(self, rows, source):
        out = []
        for i in range(len(rows)):
            ids = encode_text(self.tokenizer, self.checked_text(rows, source, i, "text"), None, self.max_length)
            labels = encode_text(self.tokenizer, self.checked_text(rows, source, i, "summary"), None,
                                 self.target_length)
            glob = np.zeros_like(ids)
            glob[0] = 1
            out.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "global_attention_mask": glob,
                        "labels": labels})
        return out

    def evaluate(self, evaluator: Evaluator, rows, features):
        """Generate a summary of each held-out document (as its features cut it), greedy or --num-beams."""
        summaries: list[str | None] = [None] * len(features)
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        for real, batch in evaluator.batches(inputs):
            sequences = self.model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                                            global_attention_mask=batch["global_attention_mask"],
                                            max_new_tokens=self.target_length - 1,
                                            num_beams=self.options.num_beams)
            for j, i in enumerate(real):
                summaries[i] = self.tokenizer.decode(np.asarray(sequences[j]), skip_special_tokens=True).strip()
        return metrics.rouge_scores(summaries, [r[self.column["summary"]] for r in rows])


# ------------------------------------------------------------------------------ language modelling
class _LanguageModelling(Task):
    """Texts ("text") concatenated, each with its tokenizer's special tokens, and cut into rows of max_seq_length
    tokens (transformers' run_clm / run_mlm "group_texts"); the tail shorter than a row is dropped."""

    columns = {"text": ("text",)}

    def make_fields(self):
        return {**_text_fields(self.tokenizer), "labels": Field(IGNORE)}

    def blocks(self, rows, source, size: int) -> np.ndarray:
        stream = []
        for i in range(len(rows)):
            stream += encode_text(self.tokenizer, self.checked_text(rows, source, i, "text"), None, 10**9).tolist()
        n = len(stream) // size
        if n == 0:
            raise DataError(f"{source}: its texts hold {len(stream)} tokens, fewer than one row of "
                            f"max_seq_length = {size}")
        return np.asarray(stream[:n * size], np.int32).reshape(n, size)

    def evaluate(self, evaluator: Evaluator, rows, features):
        loss = evaluator.mean_loss(features, self.label_count)
        return {"loss": loss, "perplexity": float(np.exp(min(loss, 50.0)))}


class CausalLM(_LanguageModelling):
    """Next-token prediction. Llama shifts the labels inside its loss; XLM's LM head does not, so its rows are
    (tokens[:-1], tokens[1:]), and its config is made causal. Metric: held-out perplexity."""

    name = "causal-lm"
    heads = {"llama": "causal_lm", "xlm": "with_lm_head"}
    metric = "perplexity"

    @property
    def shifts_inside(self) -> bool:
        return self.family == "llama"

    def config_overrides(self):
        return {} if self.shifts_inside else {"causal": True}

    def features(self, rows, source):
        size = self.max_length if self.shifts_inside else self.max_length + 1
        out = []
        for block in self.blocks(rows, source, size):
            ids, labels = (block, block) if self.shifts_inside else (block[:-1], block[1:])
            out.append({"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": labels.copy()})
        return out

    def label_count(self, batch) -> int:
        labels = batch["labels"][:, 1:] if self.shifts_inside else batch["labels"]
        return int((labels != IGNORE).sum())


class MaskedLM(_LanguageModelling):
    """Masked-token prediction (Longformer, XLM): mlm_probability of the ordinary tokens are chosen; of those 80%
    become the mask token, 10% a random token, 10% stay (transformers' DataCollatorForLanguageModeling). Training
    masks each batch afresh from (seed, step); held-out rows are masked once, from the seed. Metric: held-out
    perplexity (and the accuracy on the masked tokens)."""

    name = "masked-lm"
    heads = {"longformer": "masked_lm", "xlm": "with_lm_head"}
    metric = "perplexity"

    def __init__(self, options, tokenizer, family):
        super().__init__(options, tokenizer, family)
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise ValueError(f"masked-lm: the tokenizer ({type(tokenizer).__name__}) has no mask token")
        self.special = np.asarray(sorted(special_ids(tokenizer)), np.int64)

    def features(self, rows, source):
        blocks = self.blocks(rows, source, self.max_length)
        return [{"input_ids": b, "attention_mask": np.ones_like(b), "labels": np.full_like(b, IGNORE)}
                for b in blocks]

    def mask(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(masked input ids, labels) for ids [..., seq]."""
        chosen = (rng.random(ids.shape) < self.options.mlm_probability) & ~np.isin(ids, self.special)
        labels = np.where(chosen, ids, IGNORE).astype(np.int32)
        draw = rng.random(ids.shape)
        masked = ids.copy()
        masked[chosen & (draw < 0.8)] = self.tokenizer.mask_token_id
        swap = chosen & (draw >= 0.8) & (draw < 0.9)
        masked[swap] = rng.integers(0, self.config.vocab_size, size=int(swap.sum()))
        return masked.astype(np.int32), labels

    def train_batch(self, batch, step, seed):
        ids, labels = self.mask(batch["input_ids"], np.random.default_rng([seed, 1, step]))
        return {**batch, "input_ids": ids, "labels": labels}

    def held_out(self, features: list[dict], seed: int) -> list[dict]:
        """Masked once, the same at every evaluation."""
        rng = np.random.default_rng([seed, 2])
        out = []
        for f in features:
            ids, labels = self.mask(f["input_ids"], rng)
            out.append({**f, "input_ids": ids, "labels": labels})
        return out

    def label_count(self, batch) -> int:
        return int((batch["labels"] != IGNORE).sum())

    def evaluate(self, evaluator: Evaluator, rows, features):
        scores = super().evaluate(evaluator, rows, features)
        right = total = 0
        for f, logits in zip(features, evaluator.outputs(features, per_token=True)):
            keep = f["labels"] != IGNORE
            right += int((logits.argmax(-1)[keep] == f["labels"][keep]).sum())
            total += int(keep.sum())
        return {**scores, "accuracy": right / max(total, 1)}


TASKS: dict[str, type[Task]] = {t.name: t for t in (
    TextClassification, TokenClassification, QuestionAnswering, Summarization, MultipleChoice, MaskedLM, CausalLM,
    DocumentTokenClassification)}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not one of {sorted(TASKS)}")
    return TASKS[name]

