"""Beam search as in transformers 5.x ``GenerationMixin._beam_search``, token for token, inside one jit.

HF's vectorised beam search already works on static shapes, so it is ported step by step: per prompt it keeps
``num_beams`` running hypotheses and the ``num_beams`` best finished ones. Each step

1. turns the logits into log-probs (``log_softmax``), runs the logits processors, adds each running beam's
   summed log-prob and keeps the top ``M = max(2, 1 + len(eos)) * num_beams`` of the ``num_beams * V``
   continuations (``M`` so that ``num_beams`` of them survive even if many pick an EOS);
2. continues the best ``num_beams`` that hit no stop (EOS or the length limit);
3. moves those of the first ``num_beams`` candidates that hit a stop into the finished set, scored
   ``sum_logprob / generated_length ** length_penalty``, unless the set is closed (``early_stopping=True``
   and full) or the early-stop heuristic says nothing can improve any more;
4. reorders the KV cache by the continued beams' sources (the family's ``reorder_cache`` hook).

HF's constants are kept (-1e9 marks excluded scores and empty finished slots) because they decide which
hypotheses are compared, and so which tokens come out.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common.generation import GenerationConfig, decode_step, eos_array, prefill, process_scores, with_context
from common.sharding import like, take

NEG = -1.0e9  # HF's "excluded" score: added to scores, not a -inf, so sums stay finite


class BeamState(NamedTuple):
    """B prompts, K = num_beams, L = prompt + max_new_tokens slots, M candidates per step."""

    running: jax.Array  # [B, K, L] int32: live hypotheses (prompt, tokens so far, then filler)
    running_scores: jax.Array  # [B, K] float32: summed log-probs (NEG added once a beam is excluded)
    done: jax.Array  # [B, K, L] int32: best finished hypotheses, best first
    done_scores: jax.Array  # [B, K] float32: length-penalised scores; NEG (or below) for empty slots
    done_lengths: jax.Array  # [B, K] int32: generated tokens in each finished hypothesis
    is_done: jax.Array  # [B, K] bool: slot holds a finished hypothesis
    improvable: jax.Array  # [B, 1] bool: HF's is_early_stop_heuristic_unsatisfied
    hits: jax.Array  # [B, M] bool: which of the last step's candidates hit a stop


def candidates_per_step(s: GenerationConfig) -> int:
    """HF's beams_to_keep: enough candidates that num_beams survive even if each EOS takes num_beams."""
    return max(2, 1 + len(s.eos_token_ids)) * s.num_beams


def filler_token(s: GenerationConfig) -> int:
    """What HF writes after a finished hypothesis: ``pad_token_id or eos_token_id[0]``, so a pad id of 0
    (falsy in Python) is replaced by the first EOS. Without EOS nothing finishes early and the filler is
    never returned."""
    return s.pad_token_id if s.pad_token_id or not s.eos_token_ids else s.eos_token_ids[0]


def length_divisors(s: GenerationConfig) -> jax.Array:
    """[max_new_tokens] float32: entry n-1 is ``n ** length_penalty``, computed in float64 as HF's Python
    float and rounded once, as torch does when it divides a float32 tensor by it."""
    n = np.arange(1, s.max_new_tokens + 1, dtype=np.float64)
    return jnp.asarray((n ** s.length_penalty).astype(np.float32))


def init_beam_state(input_ids: jax.Array, s: GenerationConfig) -> BeamState:
    """input_ids: [B, T] -> the state before the first step. Only beam 0 starts live (the others at NEG), so
    the first step does not pick the same continuation K times from identical beams."""
    b, t = input_ids.shape
    k, m = s.num_beams, candidates_per_step(s)
    seqs = jnp.full((b, k, t + s.max_new_tokens), filler_token(s), jnp.int32)
    seqs = seqs.at[:, :, :t].set(input_ids[:, None].astype(jnp.int32))
    return BeamState(
        running=seqs, running_scores=jnp.zeros((b, k), jnp.float32).at[:, 1:].set(NEG), done=seqs,
        done_scores=jnp.full((b, k), NEG, jnp.float32), done_lengths=jnp.zeros((b, k), jnp.int32),
        is_done=jnp.zeros((b, k), bool), improvable=jnp.ones((b, 1), bool), hits=jnp.zeros((b, m), bool),
    )


def gather_beams(x: jax.Array, indices: jax.Array) -> jax.Array:
    """x: [B, N, ...], indices: [B, K] -> [B, K, ...] (HF's _gather_beams)."""
    return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_step(state: BeamState, log_probs: jax.Array, step, prompt_len: int, s: GenerationConfig,
              divisors: jax.Array) -> tuple[BeamState, jax.Array]:
    """One step of HF's beam search. log_probs: [B * K, V] (processed); step: tokens generated before it.
    Returns (new state, source row of each continued beam [B * K], into the flattened B * K rows)."""
    b, k, _ = state.running.shape
    v = log_probs.shape[-1]
    m = candidates_per_step(s)
    cur_len = prompt_len + step

    # 1. The top M continuations over all beams of a prompt.
    scores = (log_probs.reshape(b, k, v) + state.running_scores[:, :, None]).reshape(b, k * v)
    top_scores, top_index = jax.lax.top_k(scores, m)
    source, token = top_index // v, top_index % v
    top_seqs = gather_beams(state.running, source).at[:, :, cur_len].set(token)
    hits = jnp.isin(token, eos_array(s)) | (step + 1 >= s.max_new_tokens)

    # 2. Continue the best K that did not stop.
    live_scores = top_scores + hits.astype(jnp.float32) * NEG
    keep = jax.lax.top_k(live_scores, k)[1]
    rows = (gather_beams(source, keep) + jnp.arange(b)[:, None] * k).reshape(-1)

    # 3. Merge the stopped ones among the first K candidates into the finished set.
    just_done = hits & (jnp.arange(m) < k)
    cand = top_scores / divisors[step]
    closed = jnp.all(state.is_done, axis=-1, keepdims=True) & (s.early_stopping is True)
    cand = cand + closed.astype(jnp.float32) * NEG
    cand = cand + (~state.improvable).astype(jnp.float32) * NEG
    cand = cand + (~just_done).astype(jnp.float32) * NEG
    merged_scores = jnp.concatenate([state.done_scores, cand], axis=1)
    best = jax.lax.top_k(merged_scores, k)[1]
    new = state._replace(
        running=gather_beams(top_seqs, keep), running_scores=gather_beams(live_scores, keep),
        done=gather_beams(jnp.concatenate([state.done, top_seqs], axis=1), best),
        done_scores=gather_beams(merged_scores, best),
        done_lengths=gather_beams(jnp.concatenate([state.done_lengths, jnp.full((b, m), step + 1)], axis=1), best),
        is_done=gather_beams(jnp.concatenate([state.is_done, just_done], axis=1), best),
        hits=hits,
    )
    return new._replace(improvable=still_improvable(new, step + 1, s, divisors)), rows


def still_improvable(state: BeamState, generated, s: GenerationConfig, divisors: jax.Array) -> jax.Array:
    """HF's _check_early_stop_heuristic -> [B, 1] bool (generated: tokens so far, traced): can the best running
    beam, at its best hypothetical length, still beat the worst finished one (an empty slot counts as
    beatable)?"""
    if s.early_stopping == "never" and s.length_penalty > 0.0:
        generated = s.max_new_tokens  # a positive penalty favours the longest possible hypothesis
    best_running = state.running_scores[:, :1] / divisors[generated - 1]
    worst_done = jnp.where(state.is_done, jnp.min(state.done_scores, axis=1, keepdims=True), NEG)
    return state.improvable & jnp.any(best_running > worst_done, axis=-1, keepdims=True)


def should_continue(state: BeamState, s: GenerationConfig) -> jax.Array:
    """HF's _beam_search_has_unfinished_sequences (over the whole batch) -> bool scalar."""
    closed = jnp.all(state.is_done) & (s.early_stopping is True)
    return jnp.any(state.improvable) & ~closed & ~jnp.all(state.hits)


@functools.partial(jax.jit, static_argnames=("init_cache", "cached_step", "reorder_cache", "config", "settings",
                                             "cache_dtype", "decoding_params"))
def beam_search_tokens(params, input_ids, attention_mask, context=None, *, init_cache, cached_step, reorder_cache,
                       config, settings: GenerationConfig, cache_dtype, decoding_params=None):
    """input_ids, attention_mask: [B, T] (left-padded).
    Returns (finished hypotheses [B, K, T + max_new_tokens], best first; their generated lengths [B, K])."""
    b, t = input_ids.shape
    k, n = settings.num_beams, settings.max_new_tokens
    divisors = length_divisors(settings)
    params = params if decoding_params is None else decoding_params(params, config)
    # Prefill once per prompt, then copy each prompt's cache row to its K beams.
    logits, cache, last_pos = prefill(params, config, input_ids, attention_mask, init_cache=init_cache,
                                      cached_step=with_context(cached_step, context), length=t + n,
                                      cache_dtype=cache_dtype)
    expand = jnp.repeat(jnp.arange(b), k)
    logits, cache, last_pos = take(logits, expand), reorder_cache(cache, expand), take(last_pos, expand)
    # The encoder's context is the same for every beam of a prompt: expanded once, never reordered.
    cached_step = with_context(cached_step, None if context is None else reorder_cache(context, expand))

    def body(carry):
        i, state, logits, cache, last_pos = carry
        log_probs = process_scores(jax.nn.log_softmax(logits, axis=-1), state.running.reshape(b * k, -1), t, i,
                                   settings)
        state, rows = beam_step(state, log_probs, i, t, settings, divisors)
        # Beams of one prompt share its positions, so positions need no reordering.
        last_pos = last_pos + 1
        tokens = state.running[:, :, t + i].reshape(-1)
        logits, cache = decode_step(params, config, cached_step, tokens, last_pos, cache, logits,
                                    (i + 1 < n) & should_continue(state, settings),
                                    prepare=lambda c: reorder_cache(c, rows))
        # A loop's carry keeps its type (Explicit sharding included) from one iteration to the next.
        return like((i + 1, state, logits, cache, last_pos), carry)

    def cond(carry):
        i, state = carry[:2]
        return (i < n) & should_continue(state, settings)  # True at first: no candidate has hit a stop yet

    carry = (jnp.int32(0), init_beam_state(input_ids, settings), logits, cache, last_pos)
    state = jax.lax.while_loop(cond, body, carry)[1]
    return state.done, state.done_lengths


def beam_search(params, config, input_ids, attention_mask, *, init_cache, cached_step, reorder_cache,
                settings: GenerationConfig, cache_dtype=jnp.float32, context=None,
                decoding_params=None) -> np.ndarray:
    """Host entry: the best num_return_sequences hypotheses per prompt, [B * num_return_sequences, T + G]
    int32 (prompt, tokens, then filler), where G is the longest returned hypothesis's generated length."""
    done, lengths = beam_search_tokens(
        params, jnp.asarray(input_ids, jnp.int32), jnp.asarray(attention_mask, jnp.int32), context,
        init_cache=init_cache,
        cached_step=cached_step, reorder_cache=reorder_cache, config=config, settings=settings,
        cache_dtype=cache_dtype, decoding_params=decoding_params,
    )
    r = settings.num_return_sequences
    done, lengths = np.asarray(done)[:, :r], np.asarray(lengths)[:, :r]
    return done.reshape(-1, done.shape[-1])[:, :np.shape(input_ids)[1] + int(lengths.max())]
