"""Training smoke test: a small XLM learns a masked-token task through the common train step, and then
continues sequences through generate (whose mask-slot scheme is the same task at the end of the prefix).

Each example counts upwards from a random start (tokens 14..63, wrapping), 3 to 12 tokens after <s>, right
padded. The last token and ~15% of the others are replaced by the mask token; the labels are the originals.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import conversion
from common.model import Model
from common.train import OptimizerConfig, init_train_state, make_optimizer, make_train_step
from xlm_jax.config import XLMConfig
from xlm_jax import init_params, xlm_with_lm_head

# Training loops until the model learns: running, not compiling, is their cost.
pytestmark = pytest.mark.optimized

FIRST, N_NUMBERS, MASK, PAD, T = 14, 50, 5, 2, 13


def counting(rng, size: int) -> tuple[np.ndarray, np.ndarray]:
    """ids [size, T] (<s> then counting, padded) and their lengths [size]."""
    lengths = rng.integers(4, T + 1, size)
    start = rng.integers(0, N_NUMBERS, size)
    ids = np.full((size, T), PAD, np.int32)
    ids[:, 0] = 0
    for b in range(size):
        ids[b, 1:lengths[b]] = FIRST + (start[b] + np.arange(lengths[b] - 1)) % N_NUMBERS
    return ids, lengths


def masked_batch(rng, size: int) -> dict[str, np.ndarray]:
    ids, lengths = counting(rng, size)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
    hide = (rng.random(ids.shape) < 0.15) & (mask == 1)
    hide[:, 0] = False
    hide[np.arange(size), lengths - 1] = True  # the generation case: the token after the prefix
    return {"input_ids": np.where(hide, MASK, ids), "attention_mask": mask, "labels": np.where(hide, ids, -100)}


def test_masked_lm_learns_counting_and_generates_it():
    config = XLMConfig(vocab_size=FIRST + N_NUMBERS, emb_dim=64, n_layers=2, n_heads=4, n_langs=1,
                       max_position_embeddings=32, mask_token_id=MASK, mask_index=MASK, pad_token_id=PAD,
                       eos_token_id=1, embed_init_std=64 ** -0.5)
    steps = 800
    tx = make_optimizer(OptimizerConfig(learning_rate=3e-3, warmup_steps=20, total_steps=steps, weight_decay=0.01))
    state = init_train_state(init_params(config, jax.random.PRNGKey(0), head="with_lm_head"), tx,
                             jax.random.PRNGKey(1))
    step = make_train_step(xlm_with_lm_head, config, tx)
    rng = np.random.default_rng(0)
    first = None
    for _ in range(steps):
        state, metrics = step(state, masked_batch(rng, 32))
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.1 * first, (first, float(metrics["loss"]))

    test = masked_batch(np.random.default_rng(1), 64)
    logits = xlm_with_lm_head(state.params, config, test["input_ids"], test["attention_mask"]).logits
    hidden = test["labels"] >= 0
    accuracy = float(np.mean(np.asarray(logits).argmax(-1)[hidden] == test["labels"][hidden]))
    assert accuracy > 0.9, accuracy  # chance: 1 / 50 (measured 0.95)

    model = Model(config, state.params, conversion.ARCHITECTURES["XLMWithLMHeadModel"].spec)
    prompts, _ = counting(np.random.default_rng(2), 16)
    prompts = prompts[:, :4]  # <s> and three numbers
    out = model.generate(prompts, max_new_tokens=6, eos_token_id=[])
    expected = FIRST + (prompts[:, 1:2] - FIRST + np.arange(3, 9)[None]) % N_NUMBERS
    assert np.mean(out[:, 4:] == expected) > 0.9, (out, expected)  # measured 1.0
