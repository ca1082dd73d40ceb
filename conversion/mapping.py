"""Declarative HF <-> param-tree name mapping, one table per family, used in both directions.

A :class:`Rule` ties one HF tensor name (``{i}`` = layer index of a stacked layer) to one param path and
says how the array changes on the way (``transform``). Loading runs each rule forwards; saving runs it
backwards, so the two directions cannot drift apart. A stacked rule has one HF tensor per entry of its param's
leading axis (as init_params builds it), not per a config field: each stack is numbered by its own depth, so
LED's encoder (encoder_layers) and decoder (decoder_layers) need nothing special in its table.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Sequence

import numpy as np

# name -> (hf array -> param array, param array -> hf array, param shape -> hf shape,
#          a box of the param (one slice per dim) -> the box of the HF tensor that holds it)
TRANSFORMS: dict[str, tuple[Callable, Callable, Callable, Callable]] = {
    "none": (lambda a: a, lambda a: a, lambda s: s, lambda b: b),
    # torch Linear weight (out, in) <-> Flax kernel (in, out)
    "transpose": (lambda a: a.T, lambda a: a.T, lambda s: s[::-1], lambda b: b[::-1]),
    # a [1, n] buffer (e.g. BART-style final_logits_bias) <-> a [n] vector
    "row": (lambda a: a.reshape(-1), lambda a: a.reshape(1, -1), lambda s: (1,) + tuple(s),
            lambda b: (slice(0, 1),) + tuple(b)),
}


def copy_into(out: np.ndarray, array: np.ndarray, block: int = 64) -> None:
    """``out[...] = array`` (with its dtype cast), a transposed 2-D view copied ``block`` of its columns at a time:
    numpy's transposing copy walks one array against its memory order, a blocked one keeps both in cache (a
    [1024, 4096] float32 kernel from its torch [4096, 1024] weight: 31 ms -> 4 ms here, the most of a load)."""
    if array.ndim != 2 or array.flags.c_contiguous:
        out[...] = array
        return
    for start in range(0, array.shape[1], block):
        out[:, start:start + block] = array[:, start:start + block]


@dataclasses.dataclass(frozen=True)
class Rule:
    hf: str  # HF name below the backbone prefix (or the full name if not on the backbone); "{i}" = layer
    path: tuple[str, ...]  # param-tree path; stacked rules point at a leaf with a leading layer axis
    transform: str = "none"
    on_backbone: bool = True  # the HF name takes the head's backbone prefix ("model.", "transformer.", ...)
    # Other names the same tensor is found under in older files (load side only; saving writes `hf`).
    alternatives: tuple[str, ...] = ()
    # "zeros": a file may lack this tensor (transformers then makes it zeros, e.g. a buffer); None: required.
    default: str | None = None

    @property
    def stacked(self) -> bool:
        return "{i}" in self.hf

    def hf_names(self, prefix: str, param_shape: tuple[int, ...], name: str | None = None) -> list[str]:
        """The HF names of the param of shape ``param_shape``: one per layer when stacked, numbered by the leaf's
        leading axis, so each stack counts its own depth (LED's encoder_layers and decoder_layers differ)."""
        name = (prefix if self.on_backbone else "") + (self.hf if name is None else name)
        return [name.format(i=i) for i in range(param_shape[0])] if self.stacked else [name]

    def candidate_names(self, prefix: str, param_shape: tuple[int, ...]) -> list[tuple[str, ...]]:
        """Per tensor (one per layer when stacked): the HF name, then its alternatives."""
        per_name = [self.hf_names(prefix, param_shape, n) for n in (self.hf,) + self.alternatives]
        return list(zip(*per_name))

    def hf_shape(self, param_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = param_shape[1:] if self.stacked else param_shape
        return tuple(TRANSFORMS[self.transform][2](tuple(shape)))

    def read_box(self, read: Callable, names: Sequence[str], box: tuple[slice, ...], dtype) -> np.ndarray:
        """The part ``box`` (one slice per param dim) of the param as ``dtype``, reading only what it needs of its
        HF tensors ``names`` (as hf_names gives them) with ``read(name, hf_box) -> array``: a stacked rule reads
        only the layers in ``box[0]``, and each tensor only the box that the transform maps onto. Layers are
        read and cast one at a time into the result, so the host holds the part plus one layer, never twice."""
        fwd, hf_box = TRANSFORMS[self.transform][0], TRANSFORMS[self.transform][3]
        if not self.stacked:
            array = fwd(read(names[0], hf_box(box)))
            if array.flags.c_contiguous:
                return np.asarray(array, dtype)
            out = np.empty(array.shape, dtype)
            copy_into(out, array)
            return out
        out = None
        for k, name in enumerate(names[box[0].start:box[0].stop]):
            layer = fwd(read(name, hf_box(box[1:])))
            if out is None:
                out = np.empty((box[0].stop - box[0].start,) + layer.shape, dtype)
            copy_into(out[k], layer)
        return out

    def to_hf(self, array: np.ndarray) -> list[np.ndarray]:
        back = TRANSFORMS[self.transform][1]
        return [back(a) for a in array] if self.stacked else [back(array)]


# transformers renames these on load for every model (its "legacy" conversion): TF-era LayerNorm names.
LEGACY_SUFFIXES = (("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias"))


def modern_name(name: str) -> str:
    """A checkpoint key under its current transformers name (``...LayerNorm.gamma`` -> ``...LayerNorm.weight``)."""
    for old, new in LEGACY_SUFFIXES:
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


def dense_rules(hf: str, path: tuple[str, ...], *, bias: bool, on_backbone: bool = True) -> list[Rule]:
    """The weight (transposed into a kernel) and optional bias of one torch Linear."""
    rules = [Rule(f"{hf}.weight", path + ("kernel",), "transpose", on_backbone)]
    if bias:
        rules.append(Rule(f"{hf}.bias", path + ("bias",), "none", on_backbone))
    return rules


def layer_norm_rules(hf: str, path: tuple[str, ...], *, on_backbone: bool = True) -> list[Rule]:
    """The weight (-> scale) and bias of one torch LayerNorm."""
    return [Rule(f"{hf}.weight", path + ("scale",), "none", on_backbone),
            Rule(f"{hf}.bias", path + ("bias",), "none", on_backbone)]


def head_linear(hf: str) -> Callable:
    """Rules (config -> rules) of a head that is one Linear named ``hf`` with a bias, at the top of the state dict
    (``qa_outputs``, ``classifier``, ...)."""
    return lambda config: dense_rules(hf, (hf,), bias=True, on_backbone=False)


def head_classifier(hf: str) -> Callable:
    """Rules (config -> rules) of a RoBERTa / BART classification head named ``hf``: ``dense`` and ``out_proj``
    (common.heads.classification_head)."""
    return lambda config: (dense_rules(f"{hf}.dense", (hf, "dense"), bias=True, on_backbone=False)
                           + dense_rules(f"{hf}.out_proj", (hf, "out_proj"), bias=True, on_backbone=False))


def no_rules(config) -> list[Rule]:
    """A head without tensors of its own (the bare backbone)."""
    return []


@dataclasses.dataclass(frozen=True)
class NameTable:
    """A family's two-way name table: the backbone's rules, each head's own (keyed by the family's head names,
    common.family.Head.name; the registry checks the two sets agree), and the keys a file may carry that are
    dropped on load."""

    backbone: Callable  # config -> list[Rule]
    heads: dict  # head name -> (config -> list[Rule])
    ignored: Callable  # (config, head name) -> regexes of HF keys (below nothing: full names) dropped on load

    def rules(self, config, head: str) -> list[Rule]:
        return self.backbone(config) + self.heads[head](config)


def get_path(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def tree_paths(tree: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out.extend(tree_paths(value, prefix + (key,)))
        else:
            out.append(prefix + (key,))
    return out


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)
