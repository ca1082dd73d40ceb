"""Autoregressive generation for decoder-only models: the whole loop inside one jit.

A family provides two pure functions:

- ``init_cache(config, batch, length, dtype) -> cache`` (a pytree holding an int32 ``"index"``), and
- ``cached_step(params, config, input_ids [B, T], attention_mask [B, T], position_ids [B, T], cache)
  -> (next-token logits [B, V] float32, cache)``.

Prefill runs the (left-padded) prompt through ``cached_step`` once with HF's mask-derived positions
(``cumsum(mask) - 1``, pads at 0); each decode step feeds one token at the previous position + 1, under
``lax.while_loop``, which stops early once every row has produced an EOS. Finished rows receive
``pad_token_id``, as in HF. Token selection follows HF's warper order: temperature, top-k, top-p.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Static generation settings (a jit static argument)."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0

    def validate(self, vocab_size: int) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens = {self.max_new_tokens!r} is invalid: expected an integer >= 1")
        if self.do_sample and not self.temperature > 0:
            raise ValueError(f"temperature = {self.temperature!r} is invalid: expected a number > 0 when sampling")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k = {self.top_k!r} is invalid: expected an integer >= 0 (0 disables)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p = {self.top_p!r} is invalid: expected a number in (0, 1]")
        for name, ids in (("eos_token_id", self.eos_token_ids), ("pad_token_id", (self.pad_token_id,))):
            for i in ids:
                if not 0 <= i < vocab_size:
                    raise ValueError(f"{name} = {i} is invalid: expected an id in [0, {vocab_size})")


def warp_logits(logits: jax.Array, s: SamplingConfig) -> jax.Array:
    """logits: [B, V] float32 -> logits with filtered entries at -inf (HF's TopK/TopP warpers)."""
    if s.temperature != 1.0:
        logits = logits / s.temperature
    if s.top_k:
        kth = jax.lax.top_k(logits, min(s.top_k, logits.shape[-1]))[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if s.top_p < 1.0:
        # Sort ascending, drop the low tail whose cumulative mass is <= 1 - top_p, always keep the top token.
        order = jnp.argsort(logits, axis=-1)
        sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        remove_sorted = (cum <= 1.0 - s.top_p).at[:, -1].set(False)
        remove = jnp.zeros_like(remove_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(remove_sorted)
        logits = jnp.where(remove, -jnp.inf, logits)
    return logits


def select_tokens(logits: jax.Array, s: SamplingConfig, key) -> jax.Array:
    """logits: [B, V] -> next token ids [B] (argmax, or a draw from the warped distribution)."""
    if not s.do_sample:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, warp_logits(logits, s), axis=-1).astype(jnp.int32)


def prompt_positions(attention_mask: jax.Array) -> jax.Array:
    """HF's generation positions: cumsum(mask) - 1, with padding at 0. attention_mask: [B, T] -> [B, T]."""
    mask = attention_mask.astype(jnp.int32)
    return jnp.where(mask == 0, 0, jnp.cumsum(mask, axis=-1) - 1)


@functools.partial(jax.jit, static_argnames=("init_cache", "cached_step", "config", "sampling", "cache_dtype"))
def generate_tokens(params, input_ids, attention_mask, key, *, init_cache, cached_step, config,
                    sampling: SamplingConfig, cache_dtype):
    """input_ids, attention_mask: [B, T] (left-padded). Returns (new tokens [B, max_new_tokens], steps taken).

    Slots past ``steps`` are filler (pad) and are cut by the caller, so results equal HF's early stop.
    """
    b, t = input_ids.shape
    n = sampling.max_new_tokens
    eos = jnp.asarray(sampling.eos_token_ids or (-1,), jnp.int32)
    cache = init_cache(config, b, t + n, cache_dtype)
    positions = prompt_positions(attention_mask)
    logits, cache = cached_step(params, config, input_ids, attention_mask, positions, cache)

    def body(state):
        i, tokens, finished, logits, cache, last_pos, key = state
        key, sub = jax.random.split(key)
        nxt = select_tokens(logits, sampling, sub)
        nxt = jnp.where(finished, sampling.pad_token_id, nxt)
        tokens = tokens.at[:, i].set(nxt)
        finished = finished | jnp.isin(nxt, eos)
        last_pos = last_pos + 1

        def step(cache):
            return cached_step(params, config, nxt[:, None], jnp.ones((b, 1), jnp.int32), last_pos[:, None], cache)

        # The step after the last token would be wasted work; skip it.
        logits, cache = jax.lax.cond(i + 1 < n, step, lambda c: (logits, c), cache)
        return i + 1, tokens, finished, logits, cache, last_pos, key

    def cond(state):
        i, _, finished = state[:3]
        return (i < n) & ~jnp.all(finished)

    state = (jnp.int32(0), jnp.full((b, n), sampling.pad_token_id, jnp.int32), jnp.zeros((b,), bool), logits, cache,
             positions[:, -1], key)
    steps, tokens = jax.lax.while_loop(cond, body, state)[:2]
    return tokens, steps


def generate(params, config, input_ids, attention_mask, *, init_cache, cached_step, sampling: SamplingConfig,
             seed: int = 0, cache_dtype=jnp.float32) -> np.ndarray:
    """Host entry: prompt + generated tokens, [B, T + steps] int32, cut where every row has finished."""
    tokens, steps = generate_tokens(
        params, jnp.asarray(input_ids, jnp.int32), jnp.asarray(attention_mask, jnp.int32), jax.random.PRNGKey(seed),
        init_cache=init_cache, cached_step=cached_step, config=config, sampling=sampling, cache_dtype=cache_dtype,
    )
    return np.concatenate([np.asarray(input_ids, np.int32), np.asarray(tokens)[:, :int(steps)]], axis=1)
