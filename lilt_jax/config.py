"""LiltConfig: the HF ``LiltConfig`` fields the model uses, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.attention_impls import DENSE, AttentionSite
from common.config import ZooConfig, check_positive_ints, check_rates, check_token_ids, config_error, labels_from_hf
from common.layers import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class LiltConfig(ZooConfig):
    model_type: ClassVar[str] = "lilt"
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (DENSE,)

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
    pad_token_id: int = 0
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    # The layout stream is hidden_size // channel_shrink_ratio wide (heads of head_dim // ratio, feed-forward
    # intermediate_size // ratio).
    channel_shrink_ratio: int = 4
    max_2d_position_embeddings: int = 1024
    classifier_dropout: float | None = None
    num_labels: int = 2
    problem_type: str | None = None

    translated_fields: ClassVar[tuple[str, ...]] = ("num_labels",)

    @property
    def layout_size(self) -> int:
        return self.hidden_size // self.channel_shrink_ratio

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        check_positive_ints(self, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "max_position_embeddings", "type_vocab_size",
                                   "channel_shrink_ratio", "max_2d_position_embeddings", "num_labels"))
        heads, ratio = self.num_attention_heads, self.channel_shrink_ratio
        if self.hidden_size % heads:
            raise config_error("hidden_size", self.hidden_size, f"a multiple of num_attention_heads={heads}")
        if self.head_dim < ratio or self.hidden_size // ratio != heads * (self.head_dim // ratio):
            # The layout stream is hidden_size // ratio wide and splits into heads of head_dim // ratio (HF).
            raise config_error("channel_shrink_ratio", ratio, f"a divisor of the head size {self.head_dim} (the "
                               "layout stream's heads are head_dim / channel_shrink_ratio wide)")
        if self.hidden_size % 6:
            # The box embedding concatenates six hidden_size // 6 wide tables back to hidden_size.
            raise config_error("hidden_size", self.hidden_size, "a multiple of 6 (six box-coordinate embeddings)")
        if self.hidden_act not in ACTIVATIONS:
            raise config_error("hidden_act", self.hidden_act, f"one of {sorted(ACTIVATIONS)}")
        check_rates(self, ("hidden_dropout_prob", "attention_probs_dropout_prob"))
        if self.classifier_dropout is not None:
            check_rates(self, ("classifier_dropout",))
        check_token_ids(self, ("pad_token_id",), optional=False)
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise config_error("max_position_embeddings", self.max_position_embeddings,
                               f"more than pad_token_id + 1 = {self.pad_token_id + 1} (positions start after it)")

    @property
    def classifier_rate(self) -> float:
        """HF's heads drop out at classifier_dropout, else hidden_dropout_prob."""
        return self.hidden_dropout_prob if self.classifier_dropout is None else self.classifier_dropout

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        return labels_from_hf(hf)

    def _fields_to_hf(self) -> dict[str, Any]:
        return self.labels_to_hf()
