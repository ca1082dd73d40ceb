"""LlamaConfig: the HF ``LlamaConfig`` fields the model uses, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.attention_impls import CAUSAL, DENSE, AttentionSite
from common.config import ZooConfig, check_positive_ints, check_rates, check_token_ids, config_error, labels_from_hf
from common.layers import ACTIVATIONS
from common.rope import RopeConfig


@dataclasses.dataclass(frozen=True)
class LlamaConfig(ZooConfig):
    model_type: ClassVar[str] = "llama"
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (CAUSAL, DENSE)  # DENSE: cached decoding steps

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None -> num_attention_heads
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    rope: RopeConfig = RopeConfig()
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | tuple[int, ...] | None = 2
    # Heads.
    num_labels: int = 2
    problem_type: str | None = None
    classifier_dropout: float | None = None
    hidden_dropout: float | None = None
    token_classification_bias: bool = True

    translated_fields: ClassVar[tuple[str, ...]] = ("rope", "num_labels", "num_key_value_heads", "head_dim")

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def token_dropout(self) -> float:
        """Dropout before the token-classification head: classifier_dropout, else hidden_dropout, else 0.1."""
        for rate in (self.classifier_dropout, self.hidden_dropout):
            if rate is not None:
                return rate
        return 0.1

    def validate(self) -> None:
        check_positive_ints(self, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "max_position_embeddings", "num_labels"))
        if self.hidden_size % self.num_attention_heads:
            # HF enforces this even when head_dim is given.
            raise config_error("hidden_size", self.hidden_size, f"a multiple of num_attention_heads={self.num_attention_heads}")
        if self.num_attention_heads % self.kv_heads:
            raise config_error("num_key_value_heads", self.kv_heads, f"a divisor of num_attention_heads={self.num_attention_heads}")
        if self.dim_per_head % 2:
            raise config_error("head_dim", self.dim_per_head, "an even number (rotary embeddings rotate pairs)")
        if self.hidden_act not in ACTIVATIONS:
            raise config_error("hidden_act", self.hidden_act, f"one of {sorted(ACTIVATIONS)}")
        check_rates(self, ("attention_dropout",))
        check_token_ids(self, ("pad_token_id", "bos_token_id"))
        self.rope.validate(self.dim_per_head)

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        max_pos = hf.get("max_position_embeddings", 2048)
        out["rope"] = RopeConfig.from_hf(hf.pop("rope_parameters", None) or hf.pop("rope_scaling", None),
                                         hf.pop("rope_theta", None), max_pos)
        hf.pop("rope_scaling", None)
        out.update(labels_from_hf(hf))
        for name in ("num_key_value_heads", "head_dim"):
            if hf.get(name) is not None:
                out[name] = hf.pop(name)
            else:
                hf.pop(name, None)
        return out

    def _fields_to_hf(self) -> dict[str, Any]:
        out = {
            "rope_parameters": self.rope.to_hf(),
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.dim_per_head,
        }
        out.update(self.labels_to_hf())
        return out
