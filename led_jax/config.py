"""LEDConfig: the HF ``LEDConfig`` fields the model uses, frozen and hashable (a static jit argument).

The encoder is Longformer's layer stack; the properties with Longformer's field names (``hidden_size``,
``num_attention_heads``, ``windows``, ...) are HF's own ``attribute_map`` aliases, and let that stack read an
LEDConfig as it reads a LongformerConfig.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.attention_impls import DENSE, SLIDING_WINDOW, AttentionSite
from common.config import (ZooConfig, check_positive_ints, check_rates, check_token_ids, config_error,
                           labels_from_hf)
from common.layers import ACTIVATIONS
from common.longformer_stack import SlidingWindowConfig


@dataclasses.dataclass(frozen=True)
class LEDConfig(SlidingWindowConfig, ZooConfig):
    model_type: ClassVar[str] = "led"
    # The encoder's layers run the chosen implementation; the decoder's self- and cross-attention are dense.
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (SLIDING_WINDOW, DENSE)
    hf_aliases: ClassVar[dict[str, str]] = {"hidden_size": "d_model", "num_attention_heads": "encoder_attention_heads",
                                            "attention_probs_dropout_prob": "attention_dropout",
                                            "initializer_range": "init_std", "num_hidden_layers": "encoder_layers"}

    vocab_size: int = 50265
    max_encoder_position_embeddings: int = 16384
    max_decoder_position_embeddings: int = 1024
    encoder_layers: int = 12
    encoder_ffn_dim: int = 4096
    encoder_attention_heads: int = 16
    decoder_layers: int = 12
    decoder_ffn_dim: int = 4096
    decoder_attention_heads: int = 16
    activation_function: str = "gelu"
    d_model: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    decoder_start_token_id: int = 2
    classifier_dropout: float = 0.0
    pad_token_id: int = 1
    bos_token_id: int | None = 0
    eos_token_id: int | tuple[int, ...] | None = 2
    # An int (every encoder layer) or a tuple with one even, positive window per encoder layer.
    attention_window: int | tuple[int, ...] = 512
    tie_word_embeddings: bool = True
    num_labels: int = 2
    problem_type: str | None = None

    translated_fields: ClassVar[tuple[str, ...]] = ("num_labels",)

    # -------------------------------------------- Longformer's names (HF's attribute_map) for the encoder stack
    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def num_attention_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def num_hidden_layers(self) -> int:
        return self.encoder_layers

    @property
    def intermediate_size(self) -> int:
        return self.encoder_ffn_dim

    @property
    def hidden_act(self) -> str:
        return self.activation_function

    @property
    def hidden_dropout_prob(self) -> float:
        return self.dropout

    @property
    def attention_probs_dropout_prob(self) -> float:
        return self.attention_dropout

    @property
    def initializer_range(self) -> float:
        return self.init_std

    @property
    def layer_norm_eps(self) -> float:
        return 1e-5  # every LED LayerNorm is nn.LayerNorm(d_model) with torch's default eps

    def validate(self) -> None:
        check_positive_ints(self, ("vocab_size", "max_encoder_position_embeddings", "max_decoder_position_embeddings",
                                   "encoder_layers", "encoder_ffn_dim", "encoder_attention_heads", "decoder_layers",
                                   "decoder_ffn_dim", "decoder_attention_heads", "d_model", "num_labels"))
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise config_error("d_model", self.d_model, f"a multiple of {name}={getattr(self, name)}")
        self.check_attention_window("encoder_layers")
        if self.activation_function not in ACTIVATIONS:
            raise config_error("activation_function", self.activation_function, f"one of {sorted(ACTIVATIONS)}")
        check_rates(self, ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout"))
        check_token_ids(self, ("pad_token_id", "decoder_start_token_id"), optional=False)
        for e in self.eos_token_ids:
            if not isinstance(e, int) or not 0 <= e < self.vocab_size:
                raise config_error("eos_token_id", self.eos_token_id, f"ids in [0, {self.vocab_size})")

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        return labels_from_hf(hf)

    def _fields_to_hf(self) -> dict[str, Any]:
        return {"attention_window": list(self.windows), **self.labels_to_hf()}
