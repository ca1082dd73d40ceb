"""Small synthetic data sets, one per fine-tuning task, each learnable only by using the signal the task is about.

Every generator takes a numpy Generator and a row count and returns rows in the layout of the task's usual public
data set (CoNLL, GLUE, SQuAD, XSum, SWAG, FUNSD); ``write_jsonl`` writes them. Words come from small pools of words the
test tokenizers (trained on pydoc texts, VOCAB_SIZE pieces) hold whole. Each generator's docstring states what
a model must use, and the chance level the tests compare with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Words frequent in the pydoc texts the test tokenizers learn from, so that at a vocabulary of 1,000 each is one
# token (tests/finetune builds its checkpoints so): a model then learns words, not sequences of letters.
FILLER = ["the", "is", "a", "to", "in", "and", "of", "if", "for", "an", "as", "with", "are", "that", "it", "be"]
PEOPLE = ["target", "assignment", "expression", "object"]  # "people" and "places": entity classes of the NER data
PLACES = ["list", "sequence", "attribute", "statement"]
COLORS = ["syntax", "type", "class", "value", "function", "name"]  # the six "colors" of several data sets
GOOD = ["right", "same", "single", "normal"]
BAD = ["left", "await", "raise", "except"]
VOCAB_SIZE = 1000


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def pick(rng, pool: list[str]) -> str:
    return pool[int(rng.integers(len(pool)))]


def ner_rows(rng, n: int) -> list[dict]:
    """CoNLL layout. People are B-PER, places B-LOC, the rest O: the tag is the word's class. Predicting O alone
    scores entity F1 0."""
    rows = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(int(rng.integers(3, 12))):
            r = rng.random()
            pool, tag = (PEOPLE, "B-PER") if r < 0.2 else (PLACES, "B-LOC") if r < 0.35 else (FILLER, "O")
            words.append(pick(rng, pool))
            tags.append(tag)
        rows.append({"tokens": words, "ner_tags": tags})
    return rows


def sentiment_rows(rng, n: int, pairs: bool = False) -> list[dict]:
    """GLUE layout ("sentence1", "sentence2", "label") or IMDB's ("text", "label"): filler words and one judging
    word, good or bad; with pairs the judging word is in the second sentence. Balanced: chance accuracy 0.5."""
    rows = []
    for _ in range(n):
        positive = bool(rng.random() < 0.5)
        words = [pick(rng, FILLER) for _ in range(int(rng.integers(3, 10)))]
        words.insert(int(rng.integers(len(words) + 1)), pick(rng, GOOD if positive else BAD))
        label = "positive" if positive else "negative"
        if pairs:
            rows.append({"sentence1": " ".join(pick(rng, FILLER) for _ in range(4)), "sentence2": " ".join(words),
                         "label": label})
        else:
            rows.append({"text": " ".join(words), "label": label})
    return rows


def topics_rows(rng, n: int) -> list[dict]:
    """Multi-label: "labels" lists which of people / places / colors the text names (each present with
    probability 0.5: predicting none scores micro F1 0, predicting all 0.67)."""
    rows = []
    for _ in range(n):
        words, labels = [pick(rng, FILLER) for _ in range(3)], []
        for name, pool in (("people", PEOPLE), ("places", PLACES), ("colors", COLORS)):
            if rng.random() < 0.5:
                words.insert(int(rng.integers(len(words) + 1)), pick(rng, pool))
                labels.append(name)
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def squad_rows(rng, n: int, unanswerable: float = 0.0) -> list[dict]:
    """SQuAD layout: a context of filler words with "code <color>" somewhere; the question asks for the code and the
    answer is the color. With ``unanswerable`` that share of contexts has no code (answers empty: SQuAD v2).
    A model must find the word after "code": a random context word scores F1 ~ 1/len (about 0.1)."""
    rows = []
    for k in range(n):
        words = [pick(rng, FILLER) for _ in range(int(rng.integers(5, 14)))]
        answer = None
        if rng.random() >= unanswerable:
            at = int(rng.integers(len(words) + 1))
            answer = pick(rng, COLORS)
            words[at:at] = ["code", answer]
        context = " ".join(words)
        if answer is None:
            answers = {"text": [], "answer_start": []}
        else:
            start = context.index(f"code {answer}") + len("code ")
            answers = {"text": [answer], "answer_start": [start]}
        rows.append({"id": f"q{k}", "question": "what is the code", "context": context, "answers": answers})
    return rows


def summary_rows(rng, n: int) -> list[dict]:
    """XSum layout ("document", "summary"): a document of filler words names one color; its summary is "the
    <color>". A summary that gets the form right and the color wrong scores ROUGE-L 0.5, so a model must find the
    color (choosing among six) to go past it."""
    rows = []
    for _ in range(n):
        words = [pick(rng, FILLER) for _ in range(int(rng.integers(5, 16)))]
        color = pick(rng, COLORS)
        words.insert(int(rng.integers(len(words) + 1)), color)
        rows.append({"document": " ".join(words), "summary": f"the {color}"})
    return rows


def swag_rows(rng, n: int) -> list[dict]:
    """SWAG layout: "sent1" names a color; of four endings (other colors) the right one repeats it. Chance 0.25."""
    rows = []
    for _ in range(n):
        colors = list(rng.choice(COLORS, 4, replace=False))
        label = int(rng.integers(4))
        rows.append({"sent1": f"the type is {colors[label]}", "sent2": "so it is",
                     **{f"ending{k}": c for k, c in enumerate(colors)}, "label": label})
    return rows


def cycle_rows(rng, n: int) -> list[dict]:
    """Language-model texts: each walks the fixed cycle of COLORS + PEOPLE from a random start, so every token
    follows from the one before (and a masked one from its neighbours); the unigram perplexity is about 11."""
    cycle = COLORS + PEOPLE
    rows = []
    for _ in range(n):
        start = int(rng.integers(len(cycle)))
        rows.append({"text": " ".join(cycle[(start + k) % len(cycle)] for k in range(int(rng.integers(12, 30))))})
    return rows


def form_rows(rng, n: int) -> list[dict]:
    """FUNSD layout ("tokens", "bboxes" in 0..1000, "ner_tags"): words from one pool, shuffled out of reading
    order, on a form whose parts are aligned as printed forms are (a header band at the top, questions in a left
    column, answers in a right one, a few fixed x and y positions); a word's tag is its part (B-HEADER,
    B-QUESTION, B-ANSWER), which only its box tells. The most common tag alone scores entity F1 about a third,
    and a word alone no better."""
    pool = FILLER + COLORS
    rows = []
    for _ in range(n):
        words, boxes, tags = [], [], []
        for _ in range(int(rng.integers(4, 10))):
            role = int(rng.integers(3))
            x = int(rng.choice([60, 90, 120])) if role < 2 else int(rng.choice([600, 630, 660]))
            y = int(rng.choice([30, 50])) if role == 0 else int(rng.choice(np.arange(200, 1000, 100)))
            words.append(pick(rng, pool))
            boxes.append([x, y, x + 60, y + 20])
            tags.append(("B-HEADER", "B-QUESTION", "B-ANSWER")[role])
        order = rng.permutation(len(words))
        rows.append({"tokens": [words[i] for i in order], "bboxes": [boxes[i] for i in order],
                     "ner_tags": [tags[i] for i in order]})
    return rows
