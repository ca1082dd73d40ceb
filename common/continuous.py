"""Continuous batching: many prompts through a fixed number of decoding slots, in one compiled loop.

Static batching generates a batch until its longest row is done, then starts the next batch: rows that met EOS
early idle. Here ``slots`` rows decode together and, as soon as one finishes (EOS or its own max_new_tokens), the
next waiting prompt is prefilled into its slot while the others go on decoding; the loop ends when every prompt is
done. Everything (prefills, decode steps, refills) runs in one ``lax.while_loop``, for one compiled program per
(prompt count, padded prompt width, settings).

The family's cache (``init_cache`` / ``cached_step``, as common.generation) is used as it is: its rows share one
write index, so a refilled slot's prompt is prefilled on its own into a fresh one-row cache whose index is set so
that the prompt's keys end where the shared index stands, and that row replaces the slot's row (its old entries go
with it). Which axis of each cache leaf is the batch and which the slot axis is read from ``init_cache``'s shapes
(``jax.eval_shape``). The cache has room for the longest possible row and a margin; when the shared index reaches
its end, every row is shifted back by the same number of slots (the oldest, which no live row holds), keeping their
order, so causal masks by slot still hold. Positions are each row's own, so a prompt's tokens equal those it gets
alone (greedy; up to float rounding in near-ties).

Sampling draws a row's token at step t with common.generation's ``draw_key(key, row's stream, t)``, as static
batching does: the same prompt, stream and seed give the same text whatever slot or neighbours it gets, and the
same as without slots.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.generation import (GenerationConfig, eos_array, process_scores, prompt_positions, row_limits,
                               row_streams, select_row_tokens, with_context)
from common.layers import transposed_kernels


def cache_axes(init_cache, config, dtype):
    """(batch axis, slot axis) of each cache leaf (None where the leaf has none, e.g. the shared index), read
    from the shapes of caches of different batch and slot counts."""
    base = jax.eval_shape(lambda: init_cache(config, 1, 4, dtype))
    wider = jax.eval_shape(lambda: init_cache(config, 2, 4, dtype))
    longer = jax.eval_shape(lambda: init_cache(config, 1, 6, dtype))

    def differing(a, b):
        return next((axis for axis, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y), None)

    return (jax.tree.map(differing, base, wider), jax.tree.map(differing, base, longer))


def insert_row(cache, row_cache, slot, batch_axes):
    """``cache`` with its row ``slot`` replaced by the one-row ``row_cache`` (leaves without a batch axis, such
    as the shared index, kept from ``cache``)."""
    def put(big, row, axis):
        if axis is None:
            return big
        return jax.lax.dynamic_update_slice_in_dim(big, row.astype(big.dtype), slot, axis=axis)

    return jax.tree.map(put, cache, row_cache, batch_axes)


def shift_back(cache, n, slot_axes):
    """Every row's slots moved ``n`` back (the first n, which no live row holds, wrap to the end, invalid) and
    the write index with them."""
    def move(leaf, axis):
        return leaf if axis is None else jnp.roll(leaf, -n, axis=axis)

    moved = jax.tree.map(move, cache, slot_axes)
    return {**moved, "index": cache["index"] - n}


@functools.partial(jax.jit, static_argnames=("init_cache", "cached_step", "config", "settings", "cache_dtype",
                                             "decoding_params", "slots", "widths", "encoder_context",
                                             "encoder_static"))
def generate_continuous(params, input_ids, attention_mask, key, streams, limits, count, encoder_inputs=None, *,
                        init_cache, cached_step, config, settings: GenerationConfig, cache_dtype, slots: int,
                        widths: tuple[int, ...] | None = None, decoding_params=None, encoder_context=None,
                        encoder_static=()):
    """input_ids, attention_mask: [N, P] prompts, left-padded to one width P (an encoder-decoder's decoder
    prompts), of which the first ``count`` (traced, so that N can be a bucketed size) are generated; streams: [N]
    each prompt's random stream (sampling); limits: [N] each prompt's own max_new_tokens (<= the settings');
    encoder_inputs: an encoder-decoder's encoder arrays, {name: [N, S]}, run by ``encoder_context``
    (with the static keyword arguments ``encoder_static``, (name, value) pairs) for each prompt as its slot is
    filled; its context's leaves are batch-first.
    widths: the prompt widths a refill may be prefilled at (ascending, the last P; default (P,)): each waiting
    prompt at the narrowest that holds it, one branch each in the compiled loop.
    Returns (new tokens [N, max_new_tokens] (pad after each prompt's end), their counts [N])."""
    n_prompts, p = input_ids.shape
    widths = (p,) if widths is None else widths
    if list(widths) != sorted(set(widths)) or widths[-1] != p or widths[0] < 1:
        raise ValueError(f"widths = {widths} is invalid: expected ascending ints >= 1 ending at the width {p}")
    new, pad = settings.max_new_tokens, settings.pad_token_id
    rows = min(slots, n_prompts)
    longest = p + new
    length = longest + max(8, longest // 8)  # a margin: one shift of every row per margin's worth of steps
    eos = eos_array(settings)
    encoder_params = params  # the encoder reads the params as given; decoding steps may want them rearranged
    params = params if decoding_params is None else decoding_params(params, config)
    # One loop runs a whole workload's steps: the few-row products' faster layout repays its copy (see
    # transposed_kernels; in a static batch of a few dozen steps it would not).
    params = transposed_kernels(params)
    batch_axes, slot_axes = cache_axes(init_cache, config, cache_dtype)
    ids, mask = input_ids.astype(jnp.int32), attention_mask.astype(jnp.int32)

    def context_of(rows):
        """The encoder's context of prompts ``rows`` (None for a decoder-only model)."""
        if encoder_context is None:
            return None
        return encoder_context(encoder_params, config, **{k: v[rows] for k, v in encoder_inputs.items()},
                               **dict(encoder_static))

    def prefill_at(width, row_context):
        """A branch of the refill: the prompt's last ``width`` columns (its tokens and some left padding)
        prefilled into a fresh one-row cache whose keys end at the shared index."""
        def run(index, prompt):
            row_cache = {**init_cache(config, 1, length, cache_dtype), "index": index - width}
            row_ids, row_mask = ids[prompt][None, p - width:], mask[prompt][None, p - width:]
            positions = prompt_positions(row_mask)
            row_logits, row_cache = with_context(cached_step, row_context)(params, config, row_ids, row_mask,
                                                                           positions, row_cache)
            return row_logits[0], row_cache, positions[0, -1]
        return run

    def prefill_into(cache, context, logits, last_pos, seqs, slot, prompt):
        """Prompt ``prompt`` prefilled alone, its keys ending at the shared index, into row ``slot``: at the
        narrowest of ``widths`` that holds its tokens (prompts share the call's padded width P, and a short one
        prefilled at P would cost a long one's prefill)."""
        row_context = context_of(jnp.reshape(prompt, (1,)))
        branch = jnp.searchsorted(jnp.asarray(widths), jnp.sum(mask[prompt]))
        row_logits, row_cache, last = jax.lax.switch(branch, [prefill_at(w, row_context) for w in widths],
                                                     cache["index"], prompt)
        cache = insert_row(cache, row_cache, slot, batch_axes)
        if context is not None:
            context = insert_row(context, row_context, slot, jax.tree.map(lambda _: 0, context))
        seqs = seqs.at[slot].set(jnp.concatenate([ids[prompt], jnp.full((new,), pad, jnp.int32)]))
        return cache, context, logits.at[slot].set(row_logits), last_pos.at[slot].set(last), seqs

    # The first `rows` prompts are prefilled together (the shared index then stands at p).
    cache = init_cache(config, rows, length, cache_dtype)
    context = context_of(jnp.arange(rows))
    positions = prompt_positions(mask[:rows])
    logits, cache = with_context(cached_step, context)(params, config, ids[:rows], mask[:rows], positions, cache)
    last_pos = positions[:, -1]
    seqs = jnp.concatenate([ids[:rows], jnp.full((rows, new), pad, jnp.int32)], axis=1)
    out = jnp.full((n_prompts + 1, new), pad, jnp.int32)  # the extra row takes idle slots' writes
    counts = jnp.zeros((n_prompts + 1,), jnp.int32)
    state = dict(cache=cache, context=context, logits=logits, last_pos=last_pos, seqs=seqs, prompt=jnp.arange(rows),
                 made=jnp.zeros((rows,), jnp.int32), active=jnp.arange(rows) < count,
                 waiting=jnp.minimum(jnp.int32(rows), count),
                 out=out, counts=counts)

    def pick(logits, seqs, made, prompt):
        """Each row's next token, with its own step count and its prompt's own random stream."""
        scores = jax.vmap(lambda row, seq, step, last: process_scores(row[None], seq[None], p, step, settings,
                                                                      last)[0])(logits, seqs, made, limits[prompt] - 1)
        return select_row_tokens(scores, settings, key, streams[prompt], made)

    def step(s):
        live = s["active"]
        token = jnp.where(live, pick(s["logits"], s["seqs"], s["made"], s["prompt"]), pad)
        target = jnp.where(live, s["prompt"], n_prompts)
        out = s["out"].at[target, jnp.minimum(s["made"], new - 1)].set(token)
        at = p + jnp.minimum(s["made"], new - 1)
        seqs = s["seqs"].at[jnp.arange(rows), at].set(jnp.where(live, token, s["seqs"][jnp.arange(rows), at]))
        made = s["made"] + live
        counts = s["counts"].at[target].set(made)
        active = live & ~jnp.isin(token, eos) & (made < limits[s["prompt"]])
        cache = jax.lax.cond(s["cache"]["index"] >= length, lambda c: shift_back(c, length - longest, slot_axes),
                             lambda c: c, s["cache"])
        last_pos = s["last_pos"] + 1
        logits, cache = with_context(cached_step, s["context"])(params, config, token[:, None],
                                                                live[:, None].astype(jnp.int32), last_pos[:, None],
                                                                cache)
        s = dict(s, cache=cache, logits=logits, last_pos=last_pos, seqs=seqs, made=made, active=active, out=out,
                 counts=counts)
        return jax.lax.while_loop(can_refill, refill, s)

    def can_refill(s):
        return jnp.any(~s["active"]) & (s["waiting"] < count)

    def refill(s):
        slot = jnp.argmax(~s["active"])
        cache, context, logits, last_pos, seqs = prefill_into(s["cache"], s["context"], s["logits"], s["last_pos"],
                                                              s["seqs"], slot, s["waiting"])
        return dict(s, cache=cache, context=context, logits=logits, last_pos=last_pos, seqs=seqs,
                    prompt=s["prompt"].at[slot].set(s["waiting"]), made=s["made"].at[slot].set(0),
                    active=s["active"].at[slot].set(True), waiting=s["waiting"] + 1)

    state = jax.lax.while_loop(lambda s: jnp.any(s["active"]), step, state)
    return state["out"][:n_prompts], state["counts"][:n_prompts]


def prefill_widths(p: int, smallest: int = 8) -> tuple[int, ...]:
    """The widths a refill is prefilled at for prompts padded to ``p``: powers of two from ``smallest`` below p,
    then p (a prompt costs at most twice its own length's prefill; log2(p) branches are compiled)."""
    return tuple(w for w in (1 << k for k in range(smallest.bit_length() - 1, p.bit_length())) if w < p) + (p,)


def generate(params, config, input_ids, attention_mask, *, init_cache, cached_step, settings: GenerationConfig,
             slots: int, seed: int = 0, cache_dtype=jnp.float32, decoding_params=None, encoder_context=None,
             encoder_inputs=None, encoder_static=(), streams=None, limits=None) -> np.ndarray:
    """Host entry, as common.generation.generate (the same inputs and result, another schedule): prompts [N, P]
    (left-padded) -> [N * num_return_sequences, P + steps] int32, each row its prompt then its new tokens, pad
    after its end, cut after the longest row. An encoder-decoder gives its ``encoder_context`` hook, its encoder
    arrays ``encoder_inputs`` {name: [N, S]} and their static arguments ``encoder_static`` ((name, value) pairs);
    limits: [N] each prompt's own max_new_tokens (default settings.max_new_tokens)."""
    r = settings.num_return_sequences
    streams = row_streams(streams, np.shape(input_ids)[0], r)
    limits = row_limits(limits, np.shape(input_ids)[0], r, settings)
    ids = np.repeat(np.asarray(input_ids, np.int32), r, axis=0)
    mask = np.repeat(np.asarray(attention_mask, np.int32), r, axis=0)
    if encoder_inputs is not None:
        encoder_inputs = {k: jnp.asarray(np.repeat(np.asarray(v), r, axis=0)) for k, v in encoder_inputs.items()}
    n = len(ids)
    rows = 1 << max(n - 1, 0).bit_length()  # a power of two: calls with similar counts share one program
    if rows > n:  # filler prompts (copies of the last), never generated
        ids, mask, streams, limits = (np.concatenate([a, np.repeat(a[-1:], rows - n, axis=0)])
                                      for a in (ids, mask, streams, limits))
        if encoder_inputs is not None:
            encoder_inputs = {k: jnp.concatenate([v, jnp.repeat(v[-1:], rows - n, axis=0)])
                              for k, v in encoder_inputs.items()}
    tokens, counts = generate_continuous(params, jnp.asarray(ids), jnp.asarray(mask), jax.random.PRNGKey(seed),
                                         jnp.asarray(streams), jnp.asarray(limits), jnp.int32(n), encoder_inputs,
                                         init_cache=init_cache,
                                         cached_step=cached_step, config=config, settings=settings,
                                         cache_dtype=cache_dtype, slots=slots, widths=prefill_widths(ids.shape[1]),
                                         decoding_params=decoding_params,
                                         encoder_context=encoder_context, encoder_static=tuple(sorted(encoder_static)))
    tokens, counts = np.asarray(tokens)[:n], np.asarray(counts)[:n]
    steps = int(np.max(counts))
    return np.concatenate([ids[:n], tokens[:, :steps]], axis=1)
