"""LongformerConfig: the HF ``LongformerConfig`` fields the model uses, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.attention_impls import SLIDING_WINDOW, AttentionSite
from common.config import (ZooConfig, check_positive_ints, check_rates, check_token_ids, config_error,
                           labels_from_hf)
from common.layers import ACTIVATIONS
from common.longformer_stack import SlidingWindowConfig


@dataclasses.dataclass(frozen=True)
class LongformerConfig(SlidingWindowConfig, ZooConfig):
    model_type: ClassVar[str] = "longformer"
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (SLIDING_WINDOW,)

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

    def validate(self) -> None:
        check_positive_ints(self, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "max_position_embeddings", "type_vocab_size", "num_labels"))
        if self.hidden_size % self.num_attention_heads:
            raise config_error("hidden_size", self.hidden_size, f"a multiple of num_attention_heads={self.num_attention_heads}")
        self.check_attention_window()
        if self.hidden_act not in ACTIVATIONS:
            raise config_error("hidden_act", self.hidden_act, f"one of {sorted(ACTIVATIONS)}")
        check_rates(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        check_token_ids(self, ("pad_token_id", "sep_token_id"), optional=False)
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise config_error("max_position_embeddings", self.max_position_embeddings,
                               f"more than pad_token_id + 1 = {self.pad_token_id + 1} (positions start after it)")

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        return labels_from_hf(hf)

    def _fields_to_hf(self) -> dict[str, Any]:
        return {"attention_window": list(self.windows), **self.labels_to_hf()}
