"""Stacked layers and their per-layer form for decoding.

A family keeps its layers stacked (every param of the layer tree with a leading [num_layers] axis), which
``lax.scan`` runs over with flat compile time. A decoding step is memory-bound, and a scan over stacked weights
slices a copy of every weight at every step (reading each weight three times: the slice, its copy, the product).
So generation splits the stack once per call (:func:`split_layers`, a family's ``decoding_params`` hook) and the
step runs a Python loop over the layers (:func:`layer_params`), each weight its own buffer read in place.
"""

from __future__ import annotations

import jax


def layer_params(layers, i: int):
    """Layer ``i``: an entry of a per-layer tuple (:func:`split_layers`) or a slice of the stacked tree."""
    return layers[i] if isinstance(layers, (tuple, list)) else jax.tree.map(lambda a: a[i], layers)


def split_layers(layers, n: int) -> tuple:
    """The stacked layer tree as a tuple of ``n`` per-layer trees."""
    return tuple(layer_params(layers, i) for i in range(n))
