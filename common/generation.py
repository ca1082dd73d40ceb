"""Autoregressive generation: the whole loop inside one jit (greedy and sampling here, beam search in
``common.beam_search``).

A family provides pure functions:

- ``init_cache(config, batch, length, dtype) -> cache`` (a pytree holding an int32 ``"index"``),
- ``cached_step(params, config, input_ids [B, T], attention_mask [B, T], position_ids [B, T], cache)
  -> (next-token logits [B, V] float32, cache)``, and, for beam search,
- optionally ``decoding_params(params, config) -> params`` for ``cached_step``, computed once per call before
  the decoding loop (e.g. stacked layers split per layer, so that no step slices a copy of a weight),
- ``reorder_cache(cache, beam_indices [N]) -> cache`` whose row ``i`` is the old row ``beam_indices[i]`` (HF's
  ``_reorder_cache``; N may differ from the old row count, which is how the prefilled cache is expanded to
  ``batch * num_beams`` rows).

An encoder-decoder also gives a ``context`` (its encoder's output, e.g. cross-attention keys/values, computed
once per input): ``cached_step`` then takes it as a keyword, ``cached_step(..., cache, context=context)``. It
is read, never written, so it stays out of the loop's carry and is not reordered per beam step; its rows are
expanded once to the beams / returned sequences by ``reorder_cache``, which must accept its entries.

Prefill runs the (left-padded) prompt through ``cached_step`` once with HF's mask-derived positions
(``cumsum(mask) - 1``, pads at 0); each decode step feeds one token at the previous position + 1, under
``lax.while_loop``, which stops early once every row has produced an EOS. Finished rows receive
``pad_token_id``, as in HF. Scores pass through HF's logits processors (no-repeat n-gram, then min new
tokens) and then its warpers (temperature, top-k, top-p) before a token is picked.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.sharding import like, replicate


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
    """Static generation settings (a jit static argument), named as in HF's GenerationConfig."""

    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    min_new_tokens: int = 0  # EOS is banned until this many tokens are generated
    no_repeat_ngram_size: int = 0  # 0 disables
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0  # beam scores are divided by generated_length ** length_penalty
    early_stopping: bool | str = False  # True, False or "never" (HF's beam stopping heuristics)
    forced_bos_token_id: int | None = None  # the token after a one-token prompt (HF: when cur_len == 1)
    forced_eos_token_id: tuple[int, ...] = ()  # at the last slot one of these is forced (HF: max_length - 1)

    def validate(self, vocab_size: int) -> None:
        def bad(name, value, expected):
            raise ValueError(f"{name} = {value!r} is invalid: expected {expected}")

        def is_int(x):
            return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

        if not is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            bad("max_new_tokens", self.max_new_tokens, "an integer >= 1")
        if not is_int(self.num_beams) or self.num_beams < 1:
            bad("num_beams", self.num_beams, "an integer >= 1 (1 is greedy or sampling)")
        if self.do_sample and self.num_beams > 1:
            raise ValueError(f"do_sample=True with num_beams = {self.num_beams} (beam sampling) is not supported: "
                             "expected num_beams = 1 when sampling, or do_sample=False for beam search")
        if self.do_sample and not self.temperature > 0:
            bad("temperature", self.temperature, "a number > 0 when sampling")
        if not is_int(self.top_k) or self.top_k < 0:
            bad("top_k", self.top_k, "an integer >= 0 (0 disables)")
        if not 0.0 < self.top_p <= 1.0:
            bad("top_p", self.top_p, "a number in (0, 1]")
        if not is_int(self.min_new_tokens) or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            bad("min_new_tokens", self.min_new_tokens, f"an integer in [0, max_new_tokens={self.max_new_tokens}]")
        if not is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            bad("no_repeat_ngram_size", self.no_repeat_ngram_size, "an integer >= 0 (0 disables)")
        # HF: beam search returns at most num_beams sequences per prompt, sampling any number, greedy one.
        if self.num_beams > 1:
            most, expected = self.num_beams, f"an integer in [1, num_beams={self.num_beams}]"
        elif self.do_sample:
            most, expected = np.inf, "an integer >= 1"
        else:
            most, expected = 1, "1 for greedy search (more need num_beams > 1 or do_sample=True)"
        if not is_int(self.num_return_sequences) or not 1 <= self.num_return_sequences <= most:
            bad("num_return_sequences", self.num_return_sequences, expected)
        if not np.isfinite(self.length_penalty):
            bad("length_penalty", self.length_penalty, "a finite number")
        if not (self.early_stopping is True or self.early_stopping is False or self.early_stopping == "never"):
            bad("early_stopping", self.early_stopping, "True, False or 'never'")
        forced_bos = () if self.forced_bos_token_id is None else (self.forced_bos_token_id,)
        for name, ids in (("eos_token_id", self.eos_token_ids), ("pad_token_id", (self.pad_token_id,)),
                          ("forced_bos_token_id", forced_bos), ("forced_eos_token_id", self.forced_eos_token_id)):
            for i in ids:
                if not 0 <= i < vocab_size:
                    raise ValueError(f"{name} = {i} is invalid: expected an id in [0, {vocab_size})")


# ------------------------------------------------------------------------------------ scores
def warp_logits(logits: jax.Array, s: GenerationConfig) -> jax.Array:
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


def select_tokens(logits: jax.Array, s: GenerationConfig, key) -> jax.Array:
    """logits: [B, V] -> next token ids [B] (argmax, or a draw from the warped distribution)."""
    if not s.do_sample:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, warp_logits(logits, s), axis=-1).astype(jnp.int32)


def draw_key(key, stream, step):
    """The key of one row's draw at one step: every row has its own random stream (see :func:`row_streams`), so
    what a row draws does not depend on the other rows of its batch, their number or its place among them."""
    return jax.random.fold_in(jax.random.fold_in(key, stream), step)


def select_row_tokens(logits: jax.Array, s: GenerationConfig, key, streams: jax.Array, steps) -> jax.Array:
    """logits: [R, V]; streams: [R] int; steps: the step count, [R] or one for all rows -> next token ids [R],
    each row's draw from its own stream at its own step (argmax when greedy)."""
    if not s.do_sample:
        return select_tokens(logits, s, key)
    steps = jnp.broadcast_to(steps, streams.shape)
    return jax.vmap(lambda row, stream, step: select_tokens(row[None], s, draw_key(key, stream, step))[0])(
        logits, streams, steps)


def row_streams(streams, prompts: int, returned: int) -> np.ndarray:
    """Each generated row's random stream, [prompts * returned] int32: prompt i's j-th returned sequence gets
    ``streams[i] * returned + j``. streams: one int >= 0 per prompt (None: 0 .. prompts - 1, the prompt's
    index), so that a caller who splits one job over several calls can keep each prompt's draws."""
    if streams is None:
        streams = np.arange(prompts)
    values = np.asarray(streams)
    if values.shape != (prompts,) or values.dtype.kind not in "iu":
        raise ValueError(f"streams: expected one int per prompt ({prompts}), got an array of shape {values.shape} "
                         f"and dtype {values.dtype}")
    if prompts and (values.min() < 0 or int(values.max()) * returned + returned > 2 ** 31):
        raise ValueError(f"streams: expected ints in [0, {2 ** 31 // returned}), got {values.min()} .. "
                         f"{values.max()}")
    return (values.astype(np.int64)[:, None] * returned + np.arange(returned)).reshape(-1).astype(np.int32)


def row_limits(limits, prompts: int, returned: int, s: GenerationConfig) -> np.ndarray:
    """[prompts * returned] int32: each row's own max_new_tokens (a prompt's, repeated for its returned
    sequences), settings.max_new_tokens for every row when ``limits`` is None."""
    if limits is None:
        return np.full((prompts * returned,), s.max_new_tokens, np.int32)
    return np.repeat(np.asarray(limits, np.int32), returned)


def eos_array(s: GenerationConfig) -> jax.Array:
    """EOS ids as an int32 array ([-1], which no token equals, when EOS is off)."""
    return jnp.asarray(s.eos_token_ids or (-1,), jnp.int32)


def banned_ngram_tokens(seqs: jax.Array, cur_len, n: int, vocab_size: int) -> jax.Array:
    """HF's NoRepeatNGramLogitsProcessor. seqs: [R, L] int, valid up to ``cur_len`` (traced) -> [R, V] bool.

    A token is banned when the last n-1 tokens followed by it would repeat an n-gram already in the row
    (prompt pads included, as HF sees them). Every window that could be complete is matched against the
    current suffix at once; windows reaching past ``cur_len`` are masked out, so the buffer may be static.
    """
    r, length = seqs.shape
    if n > length:  # no n-gram fits in the whole buffer: nothing is ever banned
        return jnp.zeros((r, vocab_size), bool)
    num_windows = length - n + 1
    windows = jnp.stack([seqs[:, j:j + num_windows] for j in range(n)], axis=-1)  # [R, W, n]
    suffix = jax.lax.dynamic_slice_in_dim(seqs, cur_len - (n - 1), n - 1, axis=1)  # clamped when cur_len < n
    complete = jnp.arange(num_windows) <= cur_len - n  # none while cur_len < n, as in HF
    match = jnp.all(windows[..., :-1] == suffix[:, None, :], axis=-1) & complete
    # Non-matching windows write into a spare column past the vocabulary.
    column = jnp.where(match, windows[..., -1], vocab_size)
    banned = jnp.zeros((r, vocab_size + 1), bool).at[jnp.arange(r)[:, None], column].set(True)
    return banned[:, :vocab_size]


def process_scores(scores: jax.Array, seqs: jax.Array, prompt_len: int, step, s: GenerationConfig,
                   last=None) -> jax.Array:
    """HF's logits processors, in its order. scores: [R, V] float32; seqs: [R, prompt_len + max_new_tokens]
    holding the prompt and the ``step`` tokens generated so far; last: each row's last step ([R] or a scalar;
    default max_new_tokens - 1), where forced_eos_token_id applies. Banned entries become -inf."""
    if s.no_repeat_ngram_size:
        banned = banned_ngram_tokens(seqs, prompt_len + step, s.no_repeat_ngram_size, scores.shape[-1])
        scores = jnp.where(banned, -jnp.inf, scores)
    vocab = jnp.arange(scores.shape[-1])
    if s.min_new_tokens and s.eos_token_ids:
        is_eos = jnp.isin(vocab, eos_array(s))
        scores = jnp.where(is_eos & (step < s.min_new_tokens), -jnp.inf, scores)
    if s.forced_bos_token_id is not None and prompt_len == 1:
        scores = jnp.where(step == 0, jnp.where(vocab == s.forced_bos_token_id, 0.0, -jnp.inf), scores)
    if s.forced_eos_token_id:
        forced = jnp.where(jnp.isin(vocab, jnp.asarray(s.forced_eos_token_id)), 0.0, -jnp.inf)
        last = s.max_new_tokens - 1 if last is None else last
        scores = jnp.where(jnp.reshape(step == last, (-1, 1)), forced, scores)
    return scores


# --------------------------------------------------------------------------------- model calls
def prompt_positions(attention_mask: jax.Array) -> jax.Array:
    """HF's generation positions: cumsum(mask) - 1, with padding at 0. attention_mask: [B, T] -> [B, T]."""
    mask = attention_mask.astype(jnp.int32)
    return jnp.where(mask == 0, 0, jnp.cumsum(mask, axis=-1) - 1)


def with_context(cached_step, context):
    """``cached_step`` reading an encoder-decoder's ``context`` (unchanged when there is none)."""
    return cached_step if context is None else functools.partial(cached_step, context=context)


def prefill(params, config, input_ids, attention_mask, *, init_cache, cached_step, length: int, cache_dtype):
    """Run the prompt [B, T] into a fresh cache of ``length`` slots (``cached_step`` bound to its context, if
    any, by :func:`with_context`).
    Returns (next-token logits [B, V] float32, cache, position of the last prompt token [B])."""
    cache = init_cache(config, input_ids.shape[0], length, cache_dtype)
    positions = prompt_positions(attention_mask)
    logits, cache = cached_step(params, config, input_ids, attention_mask, positions, cache)
    # The decoding bookkeeping (scores, chosen tokens, beams) is small: replicated, it mixes freely with the
    # replicated sequences under Explicit mesh axes; the model's activations stay batch-split inside.
    return replicate(logits), cache, replicate(positions[:, -1])


def decode_step(params, config, cached_step, tokens, positions, cache, logits, run, prepare=None):
    """Feed one token per row (tokens, positions: [R]) into ``prepare(cache)`` when ``run`` (traced bool) is
    set; otherwise return ``logits`` and ``cache`` as they are (the step after the last token would be
    wasted work). Returns (logits [R, V] float32, cache)."""
    def step(c):
        prepared = prepare(c) if prepare is not None else c
        out = cached_step(params, config, tokens[:, None], jnp.ones_like(tokens)[:, None], positions[:, None],
                          prepared)
        return like(out, (logits, c))  # both branches of the cond must have one type (Explicit sharding)

    return jax.lax.cond(run, step, lambda c: (logits, c), cache)


# ------------------------------------------------------------------------------- greedy / sample
@functools.partial(jax.jit, static_argnames=("init_cache", "cached_step", "config", "settings", "cache_dtype",
                                             "decoding_params"))
def generate_tokens(params, input_ids, attention_mask, key, streams, limits, context=None, *, init_cache,
                    cached_step, config, settings: GenerationConfig, cache_dtype, decoding_params=None):
    """input_ids, attention_mask: [B, T] (left-padded); streams: [B] each row's random stream (sampling);
    limits: [B] each row's own max_new_tokens (<= settings.max_new_tokens): a row stops there as at an EOS.
    Returns (sequences [B, T + max_new_tokens]: prompt then new tokens, steps taken).

    Slots past ``T + steps`` are filler (pad) and are cut by the caller, so results equal HF's early stop.
    """
    b, t = input_ids.shape
    n, pad = settings.max_new_tokens, settings.pad_token_id
    eos = eos_array(settings)
    params = params if decoding_params is None else decoding_params(params, config)
    cached_step = with_context(cached_step, context)
    logits, cache, last_pos = prefill(params, config, input_ids, attention_mask, init_cache=init_cache,
                                      cached_step=cached_step, length=t + n, cache_dtype=cache_dtype)

    def body(state):
        i, seqs, finished, logits, cache, last_pos = state
        nxt = select_row_tokens(process_scores(logits, seqs, t, i, settings, limits - 1), settings, key, streams, i)
        nxt = jnp.where(finished, pad, nxt)
        seqs = seqs.at[:, t + i].set(nxt)
        finished = finished | jnp.isin(nxt, eos) | (i + 1 >= limits)
        last_pos = last_pos + 1
        logits, cache = decode_step(params, config, cached_step, nxt, last_pos, cache, logits, i + 1 < n)
        # A loop's carry keeps its type (Explicit sharding included) from one iteration to the next.
        return like((i + 1, seqs, finished, logits, cache, last_pos), state)

    def cond(state):
        i, _, finished = state[:3]
        return (i < n) & ~jnp.all(finished)

    seqs = jnp.concatenate([input_ids.astype(jnp.int32), jnp.full((b, n), pad, jnp.int32)], axis=1)
    state = (jnp.int32(0), seqs, jnp.zeros((b,), bool), logits, cache, last_pos)
    steps, seqs = jax.lax.while_loop(cond, body, state)[:2]
    return seqs, steps


def generate(params, config, input_ids, attention_mask, *, init_cache, cached_step, settings: GenerationConfig,
             seed: int = 0, cache_dtype=jnp.float32, context=None, reorder_cache=None,
             decoding_params=None, streams=None, limits=None) -> np.ndarray:
    """Host entry for greedy / sampling: prompt + generated tokens, [B * num_return_sequences, T + steps]
    int32, cut where every row has finished. limits: [B] each prompt's own max_new_tokens (default
    settings.max_new_tokens for all). Each prompt is repeated num_return_sequences times (HF's order),
    and so are the rows of ``context``, through ``reorder_cache`` (which must accept the context's entries).
    Sampling draws row r's token at step t with ``draw_key(PRNGKey(seed), row_streams(streams, ...)[r], t)``,
    as common.continuous does."""
    r = settings.num_return_sequences
    rows = row_streams(streams, np.shape(input_ids)[0], r)
    ids = np.repeat(np.asarray(input_ids, np.int32), r, axis=0)
    mask = np.repeat(np.asarray(attention_mask, np.int32), r, axis=0)
    limits = row_limits(limits, np.shape(input_ids)[0], r, settings)
    if context is not None and r > 1:
        context = reorder_cache(context, jnp.repeat(jnp.arange(ids.shape[0] // r), r))
    seqs, steps = generate_tokens(
        params, jnp.asarray(ids), jnp.asarray(mask), jax.random.PRNGKey(seed), jnp.asarray(rows),
        jnp.asarray(limits), context,
        init_cache=init_cache, cached_step=cached_step, config=config, settings=settings, cache_dtype=cache_dtype,
        decoding_params=decoding_params,
    )
    return np.asarray(seqs)[:, :ids.shape[1] + int(steps)]
