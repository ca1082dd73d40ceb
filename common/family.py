"""A model family declared once, as data: its backbone, its heads, its input checks, its partition rules.

Each family package declares one ``Family`` in its ``family.py``; ``conversion.registry`` only collects them.
A head is a ``Head``: the HF class it mirrors, its params' init, what it computes from the backbone's output
(``apply``), the inputs it adds to the backbone's (labels, span positions, ...), how its labels are checked and
its generation hooks. Every head runs the same path (``run_head``):

    inputs --prepare--> backbone inputs --backbone--> backbone output --apply--> head output (+ loss)

and the backbone's hidden_states / attentions (and every other field the head's output class shares with the
backbone's) are carried over, so no head rebuilds them. The public per-head functions
(``longformer_masked_lm(params, config, input_ids, ...)``) are ``Family.head_function(name)``: one generated
function per head with an explicit signature (the family's inputs, then the head's, then the family's static
arguments; dropout and output flags keyword-only), usable under jit / grad / vmap like a hand-written one.

Adding a head: its ``apply`` (and ``init`` when it has params) in the family's model.py, one ``Head(...)`` in its
family.py, and its name rules in conversion/<family>.py. Adding a family: its package with a ``FAMILY``, its
name table, and one line in conversion/registry.py.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from common import validation as V
from common.layers import fold_rng

# Keyword-only arguments of every head function: (name, default).
RUN_FLAGS = (("deterministic", True), ("rng", None), ("output_hidden_states", False), ("output_attentions", False))


@dataclasses.dataclass(frozen=True)
class Generation:
    """The hooks common.generation / common.beam_search call for a generative head."""

    init_cache: Callable  # (config, batch, length, dtype) -> empty cache
    cached_step: Callable  # (params, config, input_ids, attention_mask, position_ids, cache) -> (logits, cache)
    reorder_cache: Callable | None = None  # (cache, beam_indices [N]) -> cache rows beam_indices (beam search)
    decoding_params: Callable | None = None  # (params, config) -> params for cached_step, once per generate call
    # Encoder-decoder heads: (params, config, input_ids, attention_mask, <encoder inputs>) -> arrays added to the
    # decoder's cache (e.g. cross-attention keys/values); the decoder starts from decoder_start_token_id.
    encoder_context: Callable | None = None
    # The cache keeps per-row validity and positions given by the caller, so a row can be replaced mid-loop
    # (continuous batching: common.continuous); its leaves carry a batch and a slot axis, and a shared "index".
    slot_cache: bool = False


def no_params(key, config, dtype) -> dict:
    """``Head.init`` of a head without params of its own (the bare backbone)."""
    return {}


@dataclasses.dataclass(frozen=True)
class Head:
    """One HF head class of a family."""

    hf_class: str  # e.g. "LongformerForMaskedLM"
    name: str  # e.g. "masked_lm": the suffix of its function's name, and the key of its name rules
    prefix: str  # the backbone's key prefix in this head's HF state_dict ("longformer."; "" for the bare model)
    # (params, config, out, inputs, *, deterministic, rng, **static) -> output pytree (loss included when its
    # labels are given). out: the backbone's output; inputs: the head function's arguments as given (before
    # ``prepare``), so a head reads its labels and the original shapes there.
    apply: Callable
    init: Callable = no_params  # (key, config, dtype) -> the head's top-level params, e.g. {"lm_head": ...}
    inputs: tuple[str, ...] = ()  # arguments after the family's inputs: labels, start_positions, p_mask, ...
    # How the family's input checks read ``labels``: "sequence" [B], "token" [B, T] or "choice" [B] (the
    # inputs are then [B, choices, T]); and the number of classes a label indexes (config -> int; None = the
    # number of choices, or num_labels).
    label_kind: str | None = None
    label_classes: Callable | None = None
    # (config, inputs) -> inputs for the backbone: HF's per-head defaults (global-attention masks, decoder inputs
    # shifted from the labels) and reshapes (choices flattened into the batch). None: passed as given.
    prepare: Callable | None = None
    static_args: tuple[tuple[str, Any], ...] = ()  # the head's own keyword-only static arguments (name, default)
    generation: Generation | None = None
    # config -> how a batch of unequal rows may be padded without changing any row's output: "right", "left"
    # (position_ids then count from each row's first token) or "exact" (only rows of one length share a batch,
    # e.g. a classifier that averages every position). None: the family's padding_side.
    padding: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: one backbone and its heads."""

    name: str  # "longformer"
    config_class: type
    # The backbone's array inputs, in the head functions' positional order (the first one is required).
    inputs: tuple[str, ...]
    # (params, config, **inputs, **static, deterministic, rng, output_hidden_states, output_attentions) -> output
    backbone: Callable
    init_backbone: Callable  # (key, config, dtype) -> the backbone's params
    # (config, head: Head, inputs dict) -> numpy (or device) arrays, plus the static arguments computed on the host
    validate_inputs: Callable
    partition_rules: tuple  # (regex over the "/"-joined param path, PartitionSpec) pairs, see common.sharding
    heads: tuple[Head, ...]
    max_positions: Callable | None = None  # config -> largest position + 1, or None if unbounded
    static_args: tuple[str, ...] = ()  # static backbone arguments validate_inputs computes (max_num_global)
    # directory -> the family's tokenizer read from the files saved with a checkpoint (the pipelines' default)
    load_tokenizer: Callable | None = None
    # Where batches of unequal rows are padded: "left" for a decoder-only family (its last token is the one a
    # classifier reads and generation continues from; position_ids then count from each row's first token).
    padding_side: str = "right"

    def __post_init__(self):
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: head names repeat: {names}")

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.heads)

    def head(self, name: str) -> Head:
        for h in self.heads:
            if h.name == name:
                return h
        raise ValueError(f"head {name!r} is invalid for {self.name}: expected one of {self.head_names}")

    def init_params(self, config, key, dtype=jnp.float32, head: str = "model") -> dict:
        """Random params of ``head`` with HF's init: the backbone's, plus the head's top-level entries."""
        declared = self.head(head)
        k_backbone, k_head = jax.random.split(key)
        return {**self.init_backbone(k_backbone, config, dtype), **declared.init(k_head, config, dtype)}

    def head_function(self, name: str) -> Callable:
        """``f(params, config, <family inputs>, <head inputs>, <family static>, *, deterministic=True, rng=None,
        output_hidden_states=False, output_attentions=False, <head static>)`` for head ``name``."""
        return _head_function(self, self.head(name))

    def spec(self, name: str) -> "HeadSpec":
        """What ``common.model.Model`` needs to run head ``name``."""
        head = self.head(name)
        return HeadSpec(family=self, declaration=head, forward=self.head_function(name))


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """One head of one family, bound: what the Model calls (its jitted forward, input checks, generation)."""

    family: Family
    declaration: Head
    forward: Callable

    @property
    def hf_class(self) -> str:
        return self.declaration.hf_class

    @property
    def head(self) -> str:
        return self.declaration.name

    @property
    def generation(self) -> Generation | None:
        return self.declaration.generation

    @property
    def static_args(self) -> tuple[str, ...]:
        """Arguments static under jit besides the run flags: the family's and the head's own."""
        return self.family.static_args + tuple(name for name, _ in self.declaration.static_args)

    @property
    def partition_rules(self) -> tuple:
        return self.family.partition_rules

    @property
    def max_positions(self) -> Callable | None:
        return self.family.max_positions

    def validate_inputs(self, config, inputs: dict) -> dict:
        return self.family.validate_inputs(config, self.declaration, inputs)


def checked_labels(head: Head, config, inputs: dict, shape: tuple[int, ...]) -> dict:
    """``{"labels": ...}`` checked as ``head`` reads them (see ``Head.label_kind``), or {} when not given.
    shape: input_ids' shape ([B, T], or [B, choices, T] for a choice head)."""
    if inputs.get("labels") is None:
        return {}
    if head.label_kind is None:  # a span head's targets have their own names: point there
        hint = " (use start_positions / end_positions)" if "start_positions" in head.inputs else ""
        raise ValueError(f"{head.name} takes no labels{hint}")
    if head.label_classes is not None:
        classes = head.label_classes(config)
    else:
        classes = shape[1] if head.label_kind == "choice" else config.num_labels
    return {"labels": V.labels(inputs["labels"], head.label_kind, batch=shape[0], token_shape=shape, classes=classes)}


def with_backbone_fields(result, backbone_out):
    """``result`` with every field it shares with the backbone's output that it left None filled from there
    (hidden_states, attentions, global_attentions, the encoder's fields of a seq2seq output, ...)."""
    if result is backbone_out:
        return result
    carried = {f.name: getattr(backbone_out, f.name) for f in dataclasses.fields(result)
               if getattr(result, f.name) is None and getattr(backbone_out, f.name, None) is not None}
    return result.replace(**carried) if carried else result


def run_head(family: Family, head: Head, params, config, inputs: dict, *, deterministic=True, rng=None,
             output_hidden_states=False, output_attentions=False, **head_static):
    """The one path of every head: prepare -> backbone -> apply; the backbone's shared fields carried over.

    inputs: every array argument of the head function by name (None where not given), the family's static
    arguments included. The backbone draws dropout from fold(rng, 0), the head from fold(rng, 1)."""
    batch = head.prepare(config, dict(inputs)) if head.prepare is not None else inputs
    backbone_args = {name: batch[name] for name in family.inputs + family.static_args}
    out = family.backbone(params, config, **backbone_args, deterministic=deterministic, rng=fold_rng(rng, 0),
                          output_hidden_states=output_hidden_states, output_attentions=output_attentions)
    result = head.apply(params, config, out, inputs, deterministic=deterministic, rng=fold_rng(rng, 1),
                        **head_static)
    return with_backbone_fields(result, out)


@functools.lru_cache(maxsize=None)
def _head_function(family: Family, head: Head) -> Callable:
    """The generated head function (cached so each head has one function object: jit caches key on it)."""
    kind = inspect.Parameter
    arrays = family.inputs + head.inputs + family.static_args
    parameters = [kind("params", kind.POSITIONAL_OR_KEYWORD), kind("config", kind.POSITIONAL_OR_KEYWORD),
                  kind(arrays[0], kind.POSITIONAL_OR_KEYWORD)]
    parameters += [kind(name, kind.POSITIONAL_OR_KEYWORD, default=None) for name in arrays[1:]]
    parameters += [kind(name, kind.KEYWORD_ONLY, default=default) for name, default in RUN_FLAGS + head.static_args]
    signature = inspect.Signature(parameters)
    flags = tuple(name for name, _ in RUN_FLAGS + head.static_args)

    def forward(*args, **kwargs):
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        values = dict(given.arguments)
        params, config = values.pop("params"), values.pop("config")
        options = {name: values.pop(name) for name in flags}
        return run_head(family, head, params, config, values, **options)

    forward.__signature__ = signature
    forward.__name__ = forward.__qualname__ = f"{family.name}_{head.name}"
    forward.__doc__ = f"{head.hf_class}. {inspect.getdoc(head.apply) or ''}"
    return forward
