"""Config base class: a frozen, hashable dataclass that round-trips HF ``config.json`` dicts.

A family config subclasses :class:`ZooConfig`, declares the HF fields it models as dataclass fields, and
may override ``_hf_to_fields`` / ``_fields_to_hf`` for keys that need translating. Everything in the HF
dict that the family does not model is kept verbatim in ``hf_extra`` (JSON-encoded, so the config stays
hashable and can be a static argument under ``jax.jit``), which makes ``from_hf_dict(d).to_hf_dict()``
give back every key of ``d``.

Four fields are runtime choices, not HF fields, and never reach ``config.json``:
``attention_impl`` (which attention implementation every layer uses), ``remat_policy`` (activation
checkpointing of the scanned layer body), ``compute_dtype`` (dtype of activations; ``None`` means the
parameters' dtype) and ``scan_layers`` (False unrolls the layer loop: same params and results, compile time
growing with depth; for measuring, and for backends that fuse better across layers).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Mapping

from common.attention_impls import DENSE, AttentionSite, accepted_choices

REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
COMPUTE_DTYPES = (None, "float32", "bfloat16", "float16")
RUNTIME_FIELDS = ("attention_impl", "remat_policy", "compute_dtype", "scan_layers", "hf_extra")


def config_error(name: str, value: Any, allowed: str) -> ValueError:
    """The one error shape for bad config values: names the field, the value and what is allowed."""
    return ValueError(f"config field {name!r} = {value!r} is invalid: expected {allowed}")


def check_positive_ints(config, names) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise config_error(name, value, "a positive integer")


def check_rates(config, names) -> None:
    """Dropout rates: each in [0, 1)."""
    for name in names:
        rate = getattr(config, name)
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
            raise config_error(name, rate, "a rate in [0, 1)")


def check_token_ids(config, names, *, optional: bool = True) -> None:
    """Special-token ids: each in [0, vocab_size) (or None, when ``optional``)."""
    for name in names:
        value = getattr(config, name)
        if (value is not None or not optional) and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < config.vocab_size):
            raise config_error(name, value, f"an id in [0, {config.vocab_size})")


def labels_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
    """``num_labels`` from an HF dict: the size of id2label (which transformers writes), else num_labels."""
    if "id2label" in hf:
        return {"num_labels": len(hf["id2label"])}
    if "num_labels" in hf:
        return {"num_labels": hf.pop("num_labels")}
    return {}


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    """Base of every family config. Subclasses set ``model_type`` and add their own fields."""

    model_type: ClassVar[str] = ""
    # The kinds of attention this family's layers run (common.attention_impls); ``attention_impl`` must be a
    # choice one of them runs.
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (DENSE,)
    # HF key -> our field name, for HF's attribute aliases (e.g. XLM's ``n_words`` -> ``vocab_size``).
    hf_aliases: ClassVar[Mapping[str, str]] = {}

    attention_impl: str = "auto"  # each attention site resolves it for the platform (common.attention_impls)
    remat_policy: str = "none"
    compute_dtype: str | None = None
    scan_layers: bool = True
    # Unmodelled HF keys, as sorted (key, json-encoded value) pairs.
    hf_extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.attention_impl not in self.attention_impls:
            raise config_error("attention_impl", self.attention_impl,
                               f"one of {self.attention_impls} for {type(self).__name__}")
        if self.remat_policy not in REMAT_POLICIES:
            raise config_error("remat_policy", self.remat_policy, f"one of {REMAT_POLICIES}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise config_error("compute_dtype", self.compute_dtype, f"one of {COMPUTE_DTYPES}")
        self.validate()

    @property
    def attention_impls(self) -> tuple[str, ...]:
        """The ``attention_impl`` values this family accepts."""
        return accepted_choices(self.attention_sites)

    def validate(self) -> None:
        """Family-specific checks; raise :func:`config_error` on a bad value."""

    # ----------------------------------------------------------------------------------- HF dicts
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        """Translate HF keys that do not map one-to-one onto fields. Pops what it consumes from ``hf``."""
        return {}

    def _fields_to_hf(self) -> dict[str, Any]:
        """Inverse of :meth:`_hf_to_fields`: HF keys for fields that are not written verbatim."""
        return {}

    # Fields written by _fields_to_hf (or not HF keys at all) rather than copied verbatim.
    translated_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any], **overrides: Any) -> "ZooConfig":
        """Build a config from a ``config.json`` dict; unknown keys are kept in ``hf_extra``."""
        hf = dict(hf)
        model_type = hf.get("model_type")
        if model_type is not None and cls.model_type and model_type != cls.model_type:
            raise ValueError(f"config.json has model_type {model_type!r}, expected {cls.model_type!r}")
        for alias, name in cls.hf_aliases.items():
            if alias in hf and name not in hf:
                hf[name] = hf.pop(alias)
        kwargs = cls._hf_to_fields(hf)
        names = {f.name for f in dataclasses.fields(cls)} - set(RUNTIME_FIELDS)
        for name in names - set(cls.translated_fields):
            if name in hf:
                value = hf.pop(name)
                kwargs[name] = tuple(value) if isinstance(value, list) else value
        hf.pop("model_type", None)
        kwargs["hf_extra"] = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in hf.items()))
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``config.json`` dict transformers reads back into the same configuration."""
        out: dict[str, Any] = {k: json.loads(v) for k, v in self.hf_extra}
        for f in dataclasses.fields(self):
            if f.name in RUNTIME_FIELDS or f.name in self.translated_fields:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out.update(self._fields_to_hf())
        out["model_type"] = self.model_type
        return out

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """The family's ``eos_token_id`` (an int, a tuple of them, or None / absent) as a tuple."""
        e = getattr(self, "eos_token_id", None)
        return () if e is None else (tuple(e) if isinstance(e, tuple) else (e,))

    def labels_to_hf(self) -> dict[str, Any]:
        """id2label / label2id for ``num_labels`` (transformers' LABEL_i names), unless the kept ones fit."""
        if self.extra("id2label") is not None and len(self.extra("id2label")) == self.num_labels:
            return {}
        return {"id2label": {str(i): f"LABEL_{i}" for i in range(self.num_labels)},
                "label2id": {f"LABEL_{i}": i for i in range(self.num_labels)}}

    @property
    def id2label(self) -> dict[int, str]:
        """Each label index's name: config.json's id2label when it has num_labels entries, else LABEL_i."""
        kept = self.extra("id2label")
        if kept is not None and len(kept) == self.num_labels:
            return {int(i): name for i, name in kept.items()}
        return {i: f"LABEL_{i}" for i in range(self.num_labels)}

    def extra(self, key: str, default: Any = None) -> Any:
        """An unmodelled HF key from ``hf_extra`` (decoded), or ``default``."""
        for k, v in self.hf_extra:
            if k == key:
                return json.loads(v)
        return default

    def replace(self, **changes: Any) -> "ZooConfig":
        return dataclasses.replace(self, **changes)
