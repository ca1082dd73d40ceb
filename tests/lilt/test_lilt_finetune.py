"""Fine-tuning smoke test: LiLT token classification on synthetic forms, through the common train step.

Each page is a FUNSD-like form: a header across the top, question / answer pairs in two columns, a footer line
(label O). Every word is drawn from one shared pool and the words are shuffled out of reading order, so
neither a word nor its place in the sequence tells its role: only its box does. A model that learns the task
has learned it through the layout stream (the test checks that no word-only rule comes close).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from lilt_jax import LiltConfig, init_params, lilt_token_classification
from lilt_jax.tokenizer import normalize_box

# Training loops until the model learns: running, not compiling, is their cost.
pytestmark = pytest.mark.optimized

LABELS = ("O", "HEADER", "QUESTION", "ANSWER")
BOS, PAD, EOS, FIRST_WORD = 0, 1, 2, 4  # RoBERTa's special ids; words take ids FIRST_WORD..
N_WORDS = 40
PAGE_W, PAGE_H = 850, 1100  # page units (e.g. pixels of a scan); boxes are normalised to 0..1000
MAX_LEN = 40


def _block(rng, x, y, n, label) -> list[tuple[int, list[float], int]]:
    """n words left to right from (x, y): (word id, page box, label)."""
    out = []
    for _ in range(n):
        w, h = rng.integers(40, 90), rng.integers(18, 26)
        out.append((int(rng.integers(FIRST_WORD, FIRST_WORD + N_WORDS)), [x, y, x + w, y + h], label))
        x += w + rng.integers(8, 16)
    return out


def synthetic_page(rng) -> list[tuple[int, list[int], int]]:
    """One form's words in random order: (word id, box in 0..1000, label index)."""
    words = _block(rng, rng.integers(250, 350), rng.integers(30, 70), rng.integers(1, 4), 1)  # header
    for row in range(rng.integers(3, 6)):
        y = 160 + 120 * row + rng.integers(-20, 20)
        words += _block(rng, rng.integers(40, 90), y, rng.integers(1, 3), 2)  # question, left column
        words += _block(rng, rng.integers(430, 520), y, rng.integers(1, 4), 3)  # answer, right column
    words += _block(rng, rng.integers(40, 500), rng.integers(1000, 1050), rng.integers(1, 3), 0)  # footer
    order = rng.permutation(len(words))
    return [(words[i][0], normalize_box(words[i][1], PAGE_W, PAGE_H), words[i][2]) for i in order]


def synthetic_batch(rng, size: int) -> dict[str, np.ndarray]:
    """<s> words </s>, right-padded to MAX_LEN: input_ids, attention_mask [B, T]; bbox [B, T, 4] (specials and
    padding at [0, 0, 0, 0]); labels [B, T] with -100 on specials and padding."""
    ids = np.full((size, MAX_LEN), PAD, np.int32)
    mask = np.zeros((size, MAX_LEN), np.int32)
    boxes = np.zeros((size, MAX_LEN, 4), np.int32)
    labels = np.full((size, MAX_LEN), -100, np.int32)
    for b in range(size):
        page = synthetic_page(rng)
        n = len(page)
        assert n + 2 <= MAX_LEN
        ids[b, :n + 2] = [BOS] + [w for w, _, _ in page] + [EOS]
        mask[b, :n + 2] = 1
        boxes[b, 1:n + 1] = [box for _, box, _ in page]
        labels[b, 1:n + 1] = [label for _, _, label in page]
    return {"input_ids": ids, "attention_mask": mask, "bbox": boxes, "labels": labels}


def word_only_accuracy(train: dict, test: dict) -> float:
    """The best any rule from word id to label can do on test: each word's majority label in train."""
    counts = np.zeros((FIRST_WORD + N_WORDS, len(LABELS)))
    keep = train["labels"] >= 0
    np.add.at(counts, (train["input_ids"][keep], train["labels"][keep]), 1)
    keep = test["labels"] >= 0
    return float(np.mean(counts.argmax(-1)[test["input_ids"][keep]] == test["labels"][keep]))


def test_token_classification_learns_synthetic_forms():
    config = LiltConfig(vocab_size=FIRST_WORD + N_WORDS, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=MAX_LEN + 2, type_vocab_size=1,
                        pad_token_id=PAD, layer_norm_eps=1e-5, num_labels=len(LABELS))
    rng = np.random.default_rng(0)
    test = synthetic_batch(np.random.default_rng(1), 64)
    steps, batch_size = 500, 16
    tx = make_optimizer(OptimizerConfig(learning_rate=3e-3, warmup_steps=20, total_steps=steps, weight_decay=0.01))
    state = init_train_state(init_params(config, jax.random.PRNGKey(0), head="token_classification"), tx,
                             jax.random.PRNGKey(1))
    step = make_train_step(lilt_token_classification, config, tx)
    seen = []
    for _ in range(steps):
        batch = synthetic_batch(rng, batch_size)
        seen.append(batch)
        state, metrics = step(state, batch)
    assert np.isfinite(float(metrics["loss"]))

    logits = lilt_token_classification(state.params, config, test["input_ids"], test["bbox"], test["attention_mask"])
    keep = test["labels"] >= 0
    accuracy = float(np.mean(np.asarray(logits.logits).argmax(-1)[keep] == test["labels"][keep]))
    majority = float(np.bincount(test["labels"][keep]).max() / keep.sum())
    train = {k: np.concatenate([b[k] for b in seen]) for k in ("input_ids", "labels")}
    words_alone = word_only_accuracy(train, test)
    # Chance is the majority class (~0.47); words alone do no better; the boxes give the answer.
    assert majority < 0.5 and words_alone < 0.5, (majority, words_alone)
    assert accuracy > 0.9, f"held-out token accuracy {accuracy:.3f} (majority class {majority:.3f})"
