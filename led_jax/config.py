"""LEDConfig: the HF ``LEDConfig`` fields the model uses, frozen and hashable (a static jit argument).

The encoder is Longformer's layer stack; the properties with Longformer's field names (``hidden_size``,
``num_attention_heads``, ``windows``, ...) are HF's own ``attribute_map`` aliases, and let that stack read an
LEDConfig as it reads a LongformerConfig.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from common.config import ZooConfig, config_error
from common.layers import ACTIVATIONS


@dataclasses.dataclass(frozen=True)
class LEDConfig(ZooConfig):
    model_type: ClassVar[str] = "led"
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

    @property
    def windows(self) -> tuple[int, ...]:
        if isinstance(self.attention_window, int):
            return (self.attention_window,) * self.encoder_layers
        return tuple(self.attention_window)

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        e = self.eos_token_id
        return () if e is None else (tuple(e) if isinstance(e, tuple) else (e,))

    def validate(self) -> None:
        positive = ("vocab_size", "max_encoder_position_embeddings", "max_decoder_position_embeddings",
                    "encoder_layers", "encoder_ffn_dim", "encoder_attention_heads", "decoder_layers",
                    "decoder_ffn_dim", "decoder_attention_heads", "d_model", "num_labels")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise config_error(name, value, "a positive integer")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise config_error("d_model", self.d_model, f"a multiple of {name}={getattr(self, name)}")
        window = self.attention_window
        if isinstance(window, int) and not isinstance(window, bool):
            windows = (window,)
        elif isinstance(window, tuple):
            if len(window) != self.encoder_layers:
                raise config_error("attention_window", window,
                                   f"an int or a list of encoder_layers={self.encoder_layers} ints")
            windows = window
        else:
            raise config_error("attention_window", window, "an even positive int or a list of them, one per layer")
        for w in windows:
            if not isinstance(w, int) or isinstance(w, bool) or w < 2 or w % 2:
                raise config_error("attention_window", window, "even positive window sizes (each >= 2)")
        if any(max(windows) % w for w in windows):
            raise config_error("attention_window", window, "windows that each divide the largest one")
        if self.activation_function not in ACTIVATIONS:
            raise config_error("activation_function", self.activation_function, f"one of {sorted(ACTIVATIONS)}")
        for name in ("dropout", "attention_dropout", "activation_dropout", "classifier_dropout"):
            rate = getattr(self, name)
            if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
                raise config_error(name, rate, "a rate in [0, 1)")
        for name in ("pad_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise config_error(name, value, f"an id in [0, {self.vocab_size})")
        for e in self.eos_token_ids:
            if not isinstance(e, int) or not 0 <= e < self.vocab_size:
                raise config_error("eos_token_id", self.eos_token_id, f"ids in [0, {self.vocab_size})")

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
