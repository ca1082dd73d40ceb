"""LongformerConfig: the HF ``LongformerConfig`` fields the model uses, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.config import ZooConfig, config_error
from common.layers import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class LongformerConfig(ZooConfig):
    model_type: ClassVar[str] = "longformer"

    # An int (every layer) or a tuple with one even, positive window per layer (HF's full window, 2w).
    attention_window: int | tuple[int, ...] = 512
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    bos_token_id: int | None = 0
    eos_token_id: int | tuple[int, ...] | None = 2
    sep_token_id: int = 2
    tie_word_embeddings: bool = True
    # Heads. HF's Longformer heads use hidden_dropout_prob (there is no classifier_dropout).
    num_labels: int = 2
    problem_type: str | None = None

    translated_fields: ClassVar[tuple[str, ...]] = ("num_labels",)

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

    def validate(self) -> None:
        positive = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "max_position_embeddings", "type_vocab_size", "num_labels")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise config_error(name, value, "a positive integer")
        if self.hidden_size % self.num_attention_heads:
            raise config_error("hidden_size", self.hidden_size, f"a multiple of num_attention_heads={self.num_attention_heads}")
        window = self.attention_window
        if isinstance(window, int) and not isinstance(window, bool):
            windows = (window,)
        elif isinstance(window, tuple):
            if len(window) != self.num_hidden_layers:
                raise config_error("attention_window", window,
                                   f"an int or a list of num_hidden_layers={self.num_hidden_layers} ints")
            windows = window
        else:
            raise config_error("attention_window", window, "an even positive int or a list of them, one per layer")
        for w in windows:
            if not isinstance(w, int) or isinstance(w, bool) or w < 2 or w % 2:
                raise config_error("attention_window", window, "even positive window sizes (each >= 2)")
        if any(max(windows) % w for w in windows):
            # HF pads to a multiple of max(window) and asserts every layer's window divides the padded length.
            raise config_error("attention_window", window, "windows that each divide the largest one")
        if self.hidden_act not in ACTIVATIONS:
            raise config_error("hidden_act", self.hidden_act, f"one of {sorted(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise config_error(name, rate, "a rate in [0, 1)")
        for name in ("pad_token_id", "sep_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise config_error(name, value, f"an id in [0, {self.vocab_size})")
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise config_error("max_position_embeddings", self.max_position_embeddings,
                               f"more than pad_token_id + 1 = {self.pad_token_id + 1} (positions start after it)")

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "id2label" in hf:
            out["num_labels"] = len(hf["id2label"])
        elif "num_labels" in hf:
            out["num_labels"] = hf.pop("num_labels")
        return out

    def _fields_to_hf(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attention_window": list(self.windows)}
        if self.extra("id2label") is None or len(self.extra("id2label")) != self.num_labels:
            out["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            out["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        return out
