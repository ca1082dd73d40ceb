"""The user-facing model object: config + params + one head function, jit-compiled, inputs validated.

``conversion.from_pretrained`` builds it; it is also easy to build by hand from a family's ``init_params``::

    model = Model(config, params, llama_jax.FAMILY.spec("causal_lm"))
    out = model(input_ids=ids, attention_mask=mask)
    seqs = model.generate(ids, max_new_tokens=16)
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import jax
import numpy as np

from jax.sharding import NamedSharding, PartitionSpec

from common import continuous
from common.beam_search import beam_search
from common.family import HeadSpec
from common.generation import GenerationConfig, generate
from common.qarray import is_qarray
from common.quantization import float_dtype, quant_config_of
from common.sharding import batch_sharding
from common.validation import binary_mask

# Arguments that are static under jit (Python values that shape the program); a family and a head add their own
# (HeadSpec.static_args: e.g. max_num_global, which the input checks compute on the host, and logits_to_keep).
STATIC_ARGS = ("output_hidden_states", "output_attentions", "deterministic")


def per_prompt_limits(values, prompts: int) -> np.ndarray:
    """``generate``'s max_new_tokens given one per prompt, checked: [prompts] int32."""
    values = list(values)
    if len(values) != prompts:
        raise ValueError(f"max_new_tokens: expected one int or one per prompt ({prompts}), got {len(values)} values")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"max_new_tokens[{i}] = {v!r} is invalid: expected an integer >= 1")
    return np.asarray(values, np.int32)


def bucketed_static(flags: dict) -> dict:
    """Static arguments as they are compiled: Longformer / LED's number of global slots (``max_num_global``)
    rounded up to a power of two, so that batches with 3, 4 or 5 global tokens (question lengths, say) share one
    program; a slot no row fills is masked out exactly, so results do not change. Kept as counted when attentions
    are returned: their global columns are one per slot, as transformers'."""
    x = flags.get("max_num_global")
    if isinstance(x, int) and x > 0 and not flags.get("output_attentions"):
        return {**flags, "max_num_global": 1 << (x - 1).bit_length()}
    return flags


class Model:
    """A model ready to call: ``model(input_ids=..., ...)`` and, for generative heads, ``model.generate``."""

    def __init__(self, config, params, spec: HeadSpec, generation_config: dict[str, Any] | None = None, mesh=None):
        self.config = config
        self.mesh = mesh
        self.params = params
        self.spec = spec
        self.generation_config = dict(generation_config or {})
        sig = inspect.signature(spec.forward).parameters
        static = STATIC_ARGS + spec.static_args
        self._static = tuple(name for name in static if name in sig)
        self._inputs = tuple(name for name in sig if name not in ("params", "config", "rng") + static)
        self._forward = jax.jit(spec.forward, static_argnames=("config",) + self._static)
        self._generation = spec.generation
        if self._generation is not None and self._generation.encoder_context is not None:
            encoder_context = self._generation.encoder_context
            sig = inspect.signature(encoder_context).parameters
            self._encoder_static = tuple(name for name in static if name in sig)
            self._encoder_inputs = tuple(name for name in sig if name not in ("params", "config") + static)
            self._encoder = jax.jit(encoder_context, static_argnames=("config",) + self._encoder_static)

    @property
    def architecture(self) -> str:
        return self.spec.hf_class

    @property
    def continuous_batching(self) -> bool:
        """Whether ``generate(..., slots=k)`` (continuous batching) serves this model: a generative head whose
        cache rows can be replaced mid-loop, not on a mesh (beam search excepted, see generate)."""
        return self._generation is not None and self._generation.slot_cache and self.mesh is None

    @property
    def partition_rules(self) -> tuple:
        """The family's partition rules, e.g. for ``make_train_step(..., mesh=mesh, rules=model.partition_rules)``."""
        return self.spec.partition_rules

    def __repr__(self) -> str:
        # A quantized param counts as the weights it stands for (its scales are not parameters).
        leaves = jax.tree.leaves(self.params, is_leaf=is_qarray)
        n = sum(x.qvalue.size if is_qarray(x) else x.size for x in leaves)
        qc = quant_config_of(self.params)
        quantized = "" if qc is None else f", int{qc.bits} weights"
        return f"Model({self.architecture}, {n / 1e6:.2f}M params{quantized})"

    def accepts(self, name: str) -> bool:
        """Whether ``model(...)`` takes the input ``name`` (e.g. "token_type_ids", "bbox")."""
        return name in self._inputs

    def __call__(self, *, rng=None, **kwargs):
        unknown = set(kwargs) - set(self._inputs) - set(self._static)
        if unknown:
            raise ValueError(f"{self.architecture} got unexpected arguments {sorted(unknown)}; "
                             f"it takes {list(self._inputs) + list(self._static)}")
        flags = {k: kwargs.pop(k) for k in self._static if k in kwargs}
        arrays = self.spec.validate_inputs(self.config, kwargs)
        flags.update({k: arrays.pop(k) for k in list(arrays) if k in self._static})
        flags = bucketed_static(flags)
        if not flags.get("deterministic", True) and rng is None:
            raise ValueError("deterministic=False (dropout on) needs an `rng` key")
        extra = {"rng": rng} if rng is not None else {}
        if self.mesh is not None:
            arrays = {k: self._place_batch(v) for k, v in arrays.items()}
        with self._mesh_context():
            return self._forward(self.params, config=self.config, **arrays, **flags, **extra)

    def _mesh_context(self):
        """Inside it, the model's sharding constraints refer to this model's mesh."""
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def _place_batch(self, array: np.ndarray):
        """Split an input's batch dimension over data x fsdp when it divides evenly, else replicate it."""
        split = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        sharding = batch_sharding(self.mesh, array.ndim) if array.shape[0] % split == 0 else \
            NamedSharding(self.mesh, PartitionSpec())
        return jax.device_put(array, sharding)

    # ---------------------------------------------------------------------------------- generate
    def generate(self, input_ids, attention_mask=None, max_new_tokens=32, do_sample: bool | None = None,
                 num_beams: int | None = None, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None, eos_token_id: int | list[int] | None = None,
                 pad_token_id: int | None = None, min_new_tokens: int | None = None,
                 no_repeat_ngram_size: int | None = None, num_return_sequences: int | None = None,
                 length_penalty: float | None = None, early_stopping: bool | str | None = None,
                 forced_bos_token_id: int | None = None, forced_eos_token_id: int | list[int] | None = None,
                 decoder_start_token_id: int | None = None, seed: int = 0, slots: int | None = None,
                 streams=None, **encoder_inputs) -> np.ndarray:
        """HF-style ``generate``: returns the prompt followed by the new tokens,
        [batch * num_return_sequences, prompt + new] int32. For an encoder-decoder head (LED) ``input_ids`` /
        ``attention_mask`` (and ``encoder_inputs`` such as ``global_attention_mask``) are the encoder's, which
        runs once; the returned decoder sequences start with decoder_start_token_id, as HF's.

        Greedy, sampling (``do_sample=True``) or beam search (``num_beams > 1``, with ``length_penalty``,
        ``early_stopping`` True / False / "never" and ``num_return_sequences`` <= num_beams best hypotheses per
        prompt), each with HF's ``min_new_tokens``, ``no_repeat_ngram_size``, ``forced_bos_token_id`` and
        ``forced_eos_token_id``. Unset settings come from the
        checkpoint's generation_config.json, then from HF's built-in defaults (greedy; when sampling,
        temperature 1, top_k 50, top_p 1). The prompt may be left-padded; without an attention_mask, pad tokens
        are masked as HF does (decoder-only heads, when pad_token_id is set and differs from eos; an encoder
        then attends to every token).
        ``eos_token_id=[]`` switches EOS off, so exactly max_new_tokens tokens are generated.
        ``max_new_tokens`` is one int for every prompt or one per prompt (greedy and sampling): a row then stops
        at its own, as at an EOS (the result is as wide as the longest row; shorter rows are padded).

        ``slots=k`` (greedy or sampling; Llama and LED, not on a mesh: ``model.continuous_batching``) decodes the
        rows by continuous batching (common.continuous): k rows at a time, each finished row's slot refilled with
        the next waiting prompt at once, all in one compiled loop; the same result as without (greedy). With no more
        rows than slots nothing is refilled, and static batching runs them.

        Sampling draws each row's tokens from its own random stream, with or without slots: the j-th returned
        sequence of prompt i from (seed, ``streams[i] * num_return_sequences + j``, step). ``streams`` (one
        int >= 0 per prompt; default the prompt's index) lets a caller keep a prompt's draws when it batches
        prompts differently (the text-generation pipeline passes each prompt's index in its call).
        """
        hooks = self._generation
        if hooks is None:
            raise ValueError(f"{self.architecture} is not a generative head; generate() needs a causal LM or "
                             "a conditional-generation head")
        seq2seq = hooks.encoder_context is not None
        allowed = tuple(n for n in self._encoder_inputs if n not in ("input_ids", "attention_mask")) if seq2seq else ()
        unknown = sorted(set(encoder_inputs) - set(allowed))
        if unknown:
            raise ValueError(f"{self.architecture}.generate got unexpected arguments {unknown}"
                             + (f"; its encoder also takes {list(allowed)}" if allowed else ""))
        gc, cfg = self.generation_config, self.config

        def setting(name, value, default):  # HF's precedence: the call, generation_config.json, the default
            for v in (value, gc.get(name)):
                if v is not None:
                    return v
            return default

        if seq2seq:
            start = setting("decoder_start_token_id", decoder_start_token_id,
                            getattr(cfg, "decoder_start_token_id", None))
            if start is None:
                raise ValueError(f"{self.architecture}.generate needs decoder_start_token_id (in the config or "
                                 "generation_config.json)")
            # The decoder's prompt is checked as the decoder's input, so that the head's checks of the decoder
            # length apply to it rather than to input_ids.
            rows = np.shape(input_ids)[0] if np.ndim(input_ids) == 2 else 1
            encoder_arrays = self.spec.validate_inputs(cfg, dict(
                encoder_inputs, input_ids=input_ids, attention_mask=attention_mask,
                decoder_input_ids=np.full((rows, 1), start, np.int32)))
            ids = encoder_arrays.pop("decoder_input_ids")
            mask = np.ones_like(ids)
        else:
            ids = self.spec.validate_inputs(cfg, {"input_ids": input_ids})["input_ids"]
        eos = eos_token_id if eos_token_id is not None else gc.get("eos_token_id", getattr(cfg, "eos_token_id", None))
        eos = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        pad = pad_token_id if pad_token_id is not None else gc.get("pad_token_id", getattr(cfg, "pad_token_id", None))
        if pad is None:
            pad = eos[0] if eos else 0  # HF falls back to the first eos
        # HF 5.x infers a missing mask from pad tokens for decoder-only models only (an encoder then attends to
        # every token).
        if not seq2seq and attention_mask is None:
            mask = (ids != pad) if (pad in ids and pad not in eos) else np.ones_like(ids)
        elif not seq2seq:
            mask = binary_mask("attention_mask", attention_mask, ids.shape)
        limits = None
        if isinstance(max_new_tokens, (list, tuple, np.ndarray)):  # one per prompt (traced)
            limits = per_prompt_limits(max_new_tokens, np.shape(ids)[0])
            # The compiled bound: the largest rounded up to a power of two, so that calls with other limits share
            # programs (the loop still ends when every row has met its own; only the buffers are longer).
            max_new_tokens = 1 << (int(limits.max()) - 1).bit_length()
        forced_eos = setting("forced_eos_token_id", forced_eos_token_id, getattr(cfg, "forced_eos_token_id", None))
        sample = bool(setting("do_sample", do_sample, False))
        min_new = setting("min_new_tokens", min_new_tokens, None)
        if min_new is None:  # HF's min_length counts the prompt; min_new_tokens, when set, takes precedence
            min_new = min(max(int(gc.get("min_length") or 0) - ids.shape[1], 0), max_new_tokens)
        settings = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sample,
            temperature=float(setting("temperature", temperature, 1.0)),
            top_k=int(setting("top_k", top_k, 50)) if sample else 0,
            top_p=float(setting("top_p", top_p, 1.0)) if sample else 1.0,
            eos_token_ids=tuple(int(e) for e in eos), pad_token_id=int(pad), min_new_tokens=min_new,
            no_repeat_ngram_size=setting("no_repeat_ngram_size", no_repeat_ngram_size, 0),
            num_beams=setting("num_beams", num_beams, 1),
            num_return_sequences=setting("num_return_sequences", num_return_sequences, 1),
            length_penalty=float(setting("length_penalty", length_penalty, 1.0)),
            early_stopping=setting("early_stopping", early_stopping, False),
            forced_bos_token_id=setting("forced_bos_token_id", forced_bos_token_id,
                                        getattr(cfg, "forced_bos_token_id", None)),
            forced_eos_token_id=tuple(forced_eos) if isinstance(forced_eos, (list, tuple)) else
            (() if forced_eos is None else (forced_eos,)),
        )
        settings.validate(cfg.vocab_size)
        if limits is not None and settings.num_beams > 1:
            raise ValueError(f"max_new_tokens: one per prompt is supported with greedy search and sampling, not "
                             f"with num_beams = {settings.num_beams}: expected one int")
        if limits is not None and min_new > limits.min():
            row = int(np.argmin(limits))
            raise ValueError(f"min_new_tokens = {min_new} is invalid: expected at most every prompt's "
                             f"max_new_tokens (prompt {row}'s is {limits[row]})")
        if settings.num_beams > 1 and hooks.reorder_cache is None:
            raise ValueError(f"num_beams = {settings.num_beams} is not supported for {self.architecture} (its cache "
                             "cannot be reordered): expected 1")
        limit = self.spec.max_positions(cfg) if self.spec.max_positions else None
        # Positions count from each row's first real token, so a row's own length and max_new_tokens are what
        # must fit the position table (not the padded width).
        lengths = np.sum(mask, axis=1)
        news = np.full(len(lengths), max_new_tokens) if limits is None else limits
        if limit is not None and np.max(lengths + news) > limit:
            row = int(np.argmax(lengths + news))
            table = "the decoder's max_decoder_position_embeddings" if seq2seq else "max_position_embeddings"
            raise ValueError(f"{'decoder ' if seq2seq else ''}prompt length {lengths[row]} + max_new_tokens "
                             f"{news[row]} is past {table}={limit}" + (f" (prompt {row})" if len(news) > 1 else "")
                             + f"; the total must be <= {limit}")
        # The cache holds keys/values in the compute dtype (the params' dtype unless the config overrides it).
        dtype = getattr(cfg, "compute_dtype", None) or float_dtype(self.params)
        steps = dict(init_cache=hooks.init_cache, cached_step=hooks.cached_step,
                     decoding_params=hooks.decoding_params)
        if slots is not None:
            out = self._generate_continuous(ids, mask, settings, slots, seed, dtype,
                                            encoder_arrays if seq2seq else None, steps, streams, limits)
            if out is not None:
                return out
        context = self._encoder_context(encoder_arrays) if seq2seq else None
        with self._mesh_context():
            if settings.num_beams > 1:
                return beam_search(self.params, cfg, ids, mask.astype(np.int32), reorder_cache=hooks.reorder_cache,
                                   settings=settings, cache_dtype=dtype, context=context, **steps)
            return generate(self.params, cfg, ids, mask.astype(np.int32), settings=settings, seed=seed,
                            cache_dtype=dtype, context=context, reorder_cache=hooks.reorder_cache, streams=streams,
                            limits=limits,
                            **steps)

    def _generate_continuous(self, ids, mask, settings, slots, seed, dtype, encoder_arrays, steps,
                             streams, limits) -> np.ndarray | None:
        """``generate(..., slots=k)``: continuous batching (common.continuous); None where static batching serves
        (no more rows than slots)."""
        if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or slots < 1:
            raise ValueError(f"slots = {slots!r} is invalid: expected an integer >= 1 (rows decoded at a time)")
        if settings.num_beams > 1 or self.mesh is not None or not self._generation.slot_cache:
            why = ("beam search" if settings.num_beams > 1 else "a model on a mesh" if self.mesh is not None
                   else f"{self.architecture}'s cache")
            raise ValueError(f"slots (continuous batching) is not supported for {why}: expected slots=None")
        if len(ids) * settings.num_return_sequences <= slots:
            # Every row has a slot from the start, so nothing is refilled: static batching gives the same tokens
            # (and the same draws when sampling) in a smaller program; and a one-row continuous loop runs ~10x
            # slower a step than the one-row static step on XLA:CPU (measured, jax 0.10), not understood yet.
            return None
        encoder = {}
        if encoder_arrays is not None:
            arrays = dict(encoder_arrays)
            static = tuple(bucketed_static({k: arrays.pop(k) for k in list(arrays) if k in self._encoder_static})
                           .items())
            encoder = dict(encoder_context=self._generation.encoder_context, encoder_inputs=arrays,
                           encoder_static=static)
        return continuous.generate(self.params, self.config, ids, mask.astype(np.int32), settings=settings,
                                   slots=int(slots), seed=seed, cache_dtype=dtype, streams=streams, limits=limits,
                                   **steps,
                                   **encoder)

    def _encoder_context(self, arrays: dict):
        """Run the head's ``encoder_context`` once on the validated encoder inputs."""
        arrays = dict(arrays)
        flags = bucketed_static({k: arrays.pop(k) for k in list(arrays) if k in self._encoder_static})
        if self.mesh is not None:
            arrays = {k: self._place_batch(v) for k, v in arrays.items()}
        with self._mesh_context():
            return self._encoder(self.params, config=self.config, **arrays, **flags)
