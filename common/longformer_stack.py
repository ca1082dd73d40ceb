"""The Longformer layer stack, shared by Longformer and LED's encoder: the sliding-window config mixin, the stacked
layer params, padding to the window, and the scanned (or, for per-layer windows, unrolled) layers.

Param tree of the stack (L layers, H hidden, I intermediate), every leaf with a leading [L] axis:

    attn/{query,key,value,query_global,key_global,value_global}/{kernel [L, H, H], bias [L, H]}
    attn_output/dense/{kernel,bias}, attn_output/layer_norm/{scale,bias}
    intermediate/dense/{kernel [L, H, I], bias}
    output/dense/{kernel [L, I, H], bias}, output/layer_norm/{scale,bias}

The attention itself is :mod:`common.longformer_attention`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from common import layers as L
from common.config import config_error
from common.longformer_attention import PROJECTIONS, count_max_num_global, longformer_self_attention
from common.outputs import BaseModelOutput
from common.remat import remat
from common.sharding import BATCH, constrain


class SlidingWindowConfig:
    """Mixin for configs with Longformer attention (Longformer, LED's encoder): ``attention_window`` is an int
    (every layer) or one even, positive full window (2w) per layer of ``num_hidden_layers``."""

    @property
    def windows(self) -> tuple[int, ...]:
        """The full attention window of every layer (HF's list form)."""
        if isinstance(self.attention_window, int):
            return (self.attention_window,) * self.num_hidden_layers
        return tuple(self.attention_window)

    @property
    def max_window(self) -> int:
        """Inputs are padded to a multiple of this (HF ``_pad_to_window_size``)."""
        return max(self.windows)

    def check_attention_window(self, layers_field: str = "num_hidden_layers") -> None:
        window = self.attention_window
        if isinstance(window, int) and not isinstance(window, bool):
            windows = (window,)
        elif isinstance(window, tuple):
            if len(window) != self.num_hidden_layers:
                raise config_error("attention_window", window,
                                   f"an int or a list of {layers_field}={self.num_hidden_layers} ints")
            windows = window
        else:
            raise config_error("attention_window", window, "an even positive int or a list of them, one per layer")
        for w in windows:
            if not isinstance(w, int) or isinstance(w, bool) or w < 2 or w % 2:
                raise config_error("attention_window", window, "even positive window sizes (each >= 2)")
        if any(max(windows) % w for w in windows):
            # HF pads to a multiple of max(window) and asserts every layer's window divides the padded length.
            raise config_error("attention_window", window, "windows that each divide the largest one")


def init_layers(key, h: int, i: int, n: int, std: float, dtype) -> dict:
    """n stacked Longformer layers (also LED's encoder layers): every leaf has a leading [n] axis."""
    dense = functools.partial(L.init_dense, std=std, dtype=dtype)

    def one_layer(k):
        ks = jax.random.split(k, 9)
        return {
            "attn": {name: dense(ks[j], h, h, bias=True) for j, name in enumerate(PROJECTIONS)},
            "attn_output": {"dense": dense(ks[6], h, h, bias=True), "layer_norm": L.init_layer_norm(h, dtype)},
            "intermediate": {"dense": dense(ks[7], h, i, bias=True)},
            "output": {"dense": dense(ks[8], i, h, bias=True), "layer_norm": L.init_layer_norm(h, dtype)},
        }

    return jax.vmap(one_layer)(jax.random.split(key, n))


def num_global_slots(max_num_global, attention_mask, global_mask) -> int:
    """The static number of global slots: the given int, or counted from concrete (non-traced) masks."""
    if max_num_global is None:
        if isinstance(attention_mask, jax.core.Tracer) or isinstance(global_mask, jax.core.Tracer):
            raise ValueError("under jit, pass max_num_global as a static int (count_max_num_global of the masks, "
                             "as validate_inputs computes it): the number of global slots must be static")
        return count_max_num_global(attention_mask, global_mask)
    return int(max_num_global)


def _layer(p, config, h, window: int, attention_mask, global_mask, x_slots: int, *,
           deterministic, rng, output_attentions):
    """One LongformerLayer. h: [B, T, H] (T a multiple of window). Returns (h, local_probs, global_probs)."""
    drop = functools.partial(L.dropout, rate=config.hidden_dropout_prob, deterministic=deterministic)
    a, local_probs, global_probs = longformer_self_attention(
        p["attn"], h, num_heads=config.num_attention_heads, one_sided_window=window // 2,
        attention_mask=attention_mask, global_mask=global_mask, impl=config.attention_impl,
        dropout_rate=config.attention_probs_dropout_prob, deterministic=deterministic, rng=L.fold_rng(rng, 0),
        output_attentions=output_attentions, max_num_global=x_slots)
    a = drop(L.dense(p["attn_output"]["dense"], a), rng=L.fold_rng(rng, 1))
    h = L.layer_norm(p["attn_output"]["layer_norm"], a + h, config.layer_norm_eps)
    inter = L.activation(config.hidden_act)(L.dense(p["intermediate"]["dense"], h))
    # LED's encoder layer drops out after the activation too (Longformer has no such rate).
    inter = L.dropout(inter, getattr(config, "activation_dropout", 0.0), deterministic=deterministic,
                      rng=L.fold_rng(rng, 3))
    out = drop(L.dense(p["output"]["dense"], inter), rng=L.fold_rng(rng, 2))
    h = L.layer_norm(p["output"]["layer_norm"], out + h, config.layer_norm_eps)
    return constrain(h, BATCH, None, None), local_probs, global_probs


def pad_to_window(config, pad_value: int, input_ids, *arrays):
    """Right-pad [B, T] arrays to a multiple of config.max_window (HF ``_pad_to_window_size``): input_ids with
    ``pad_value``, the others (masks, token types) with 0. Returns the padded arrays in the same order."""
    t = input_ids.shape[1]
    pad = (config.max_window - t % config.max_window) % config.max_window
    if not pad:
        return (input_ids,) + arrays
    right = ((0, 0), (0, pad))
    return (jnp.pad(input_ids, right, constant_values=pad_value),) + tuple(
        None if a is None else jnp.pad(a, right, constant_values=0) for a in arrays)


def encode_layers(layers, config, x, attention_mask, global_mask, x_slots: int, t: int, *, deterministic=True,
                  rng=None, output_hidden_states=False, output_attentions=False) -> BaseModelOutput:
    """The Longformer layer stack (also LED's encoder). x: [B, Tp, H] embedded input, padded to the window;
    attention_mask / global_mask: [B, Tp] bool (global already restricted to real tokens); t: the un-padded
    length. Returns hidden_states / attentions cut back to t (global_attentions keep Tp, as HF)."""
    x = constrain(x, BATCH, None, None)
    windows = config.windows

    def run(p, h, i, window):
        return _layer(p, config, h, window, attention_mask, global_mask, x_slots, deterministic=deterministic,
                      rng=None if rng is None else jax.random.fold_in(rng, i),
                      output_attentions=output_attentions)

    if len(set(windows)) == 1:
        def body(h, xs):
            p, i = xs
            h, lp, gp = run(p, h, i, windows[0])
            return h, (h if output_hidden_states else None, lp, gp)

        n = config.num_hidden_layers
        last, (per_layer, local, glob) = jax.lax.scan(remat(body, config.remat_policy), x, (layers, jnp.arange(n)),
                                                      unroll=1 if config.scan_layers else n)
        per_layer = [per_layer[j] for j in range(n)] if output_hidden_states else []
        local = [local[j] for j in range(n)] if output_attentions else []
        glob = [glob[j] for j in range(n)] if (output_attentions and glob is not None) else []
    else:
        # Different windows give layers different static shapes: unroll, slicing each layer's params.
        h, per_layer, local, glob = x, [], [], []
        for i, window in enumerate(windows):
            p = jax.tree.map(lambda a, i=i: a[i], layers)
            h, lp, gp = remat(lambda p, h, i=i, window=window: run(p, h, i, window), config.remat_policy)(p, h)
            per_layer.append(h)
            local.append(lp)
            glob.append(gp)
        last = h

    hidden_states = None
    if output_hidden_states:
        hidden_states = tuple(s[:, :t] for s in [x] + list(per_layer))
    attentions = global_attentions = None
    if output_attentions:
        attentions = tuple(a[:, :, :t] for a in local)
        if x_slots:
            global_attentions = tuple(glob)  # HF keeps the padded length here
    return BaseModelOutput(last_hidden_state=last[:, :t], hidden_states=hidden_states, attentions=attentions,
                           global_attentions=global_attentions)
