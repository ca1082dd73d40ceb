"""XLMConfig: the HF ``XLMConfig`` fields the model uses, frozen and hashable (a static jit argument)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

from common.attention_impls import DENSE, AttentionSite
from common.config import ZooConfig, check_positive_ints, check_rates, check_token_ids, config_error, labels_from_hf
from common.layers import ACTIVATIONS

SUMMARY_TYPES = ("first", "last", "mean", "cls_index")  # HF's "attn" was never implemented


@dataclasses.dataclass(frozen=True)
class XLMConfig(ZooConfig):
    model_type: ClassVar[str] = "xlm"
    attention_sites: ClassVar[tuple[AttentionSite, ...]] = (DENSE,)
    # transformers' attribute_map (and the original XLM names some checkpoints still carry).
    hf_aliases: ClassVar[Mapping[str, str]] = {
        "n_words": "vocab_size", "hidden_size": "emb_dim", "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers", "bos_index": "bos_token_id", "eos_index": "eos_token_id",
        "pad_index": "pad_token_id"}

    vocab_size: int = 30145
    emb_dim: int = 2048  # the feed-forward width is 4 * emb_dim (fixed in XLM)
    n_layers: int = 12
    n_heads: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.1
    gelu_activation: bool = True  # exact erf GELU, else ReLU
    sinusoidal_embeddings: bool = False  # only how the position table is initialised; checkpoints carry it
    causal: bool = False
    asm: bool = False  # adaptive softmax output layer: refused by the LM head (see xlm_jax.model.check_no_asm)
    n_langs: int = 1
    use_lang_emb: bool = True
    max_position_embeddings: int = 512
    embed_init_std: float = 2048 ** -0.5
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    unk_index: int = 3
    mask_index: int = 5
    is_encoder: bool = True
    summary_type: str = "first"
    summary_use_proj: bool = True
    summary_activation: str | None = None
    summary_proj_to_labels: bool = True
    summary_first_dropout: float = 0.1
    summary_last_dropout: float = 0.0
    start_n_top: int = 5
    end_n_top: int = 5
    mask_token_id: int = 0  # what generation appends as the slot to predict
    lang_id: int | None = 0  # the language generation gives every position
    pad_token_id: int = 2
    bos_token_id: int | None = 0
    eos_token_id: int | None = 1
    tie_word_embeddings: bool = True  # the LM head's weight is the word embedding (every released checkpoint)
    num_labels: int = 2
    problem_type: str | None = None

    # summary_last_dropout is not an XLMConfig field: transformers reads it only when present, so it is written
    # only when set.
    translated_fields: ClassVar[tuple[str, ...]] = ("num_labels", "summary_last_dropout")

    # ------------------------------------------------------------------------ transformers' names
    @property
    def hidden_size(self) -> int:
        return self.emb_dim

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layers

    @property
    def num_attention_heads(self) -> int:
        return self.n_heads

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return 4 * self.emb_dim

    @property
    def has_lang_embeddings(self) -> bool:
        """HF builds (and adds) the language table only for several languages with use_lang_emb."""
        return self.n_langs > 1 and self.use_lang_emb

    @property
    def summary_dim(self) -> int:
        """Width of SequenceSummary's output: its projection's, else the hidden size."""
        if self.summary_use_proj and self.summary_proj_to_labels and self.num_labels > 0:
            return self.num_labels
        return self.emb_dim

    def validate(self) -> None:
        check_positive_ints(self, ("vocab_size", "emb_dim", "n_layers", "n_heads", "n_langs",
                                   "max_position_embeddings", "num_labels", "start_n_top", "end_n_top"))
        if self.emb_dim % self.n_heads:
            raise config_error("emb_dim", self.emb_dim, f"a multiple of n_heads={self.n_heads}")
        if not self.is_encoder:
            raise config_error("is_encoder", self.is_encoder, "True (transformers' XLM is encoder-only)")
        check_rates(self, ("dropout", "attention_dropout", "summary_first_dropout", "summary_last_dropout"))
        check_token_ids(self, ("pad_token_id",), optional=False)
        check_token_ids(self, ("bos_token_id", "eos_token_id", "mask_token_id"))
        if self.summary_type not in SUMMARY_TYPES:
            raise config_error("summary_type", self.summary_type, f"one of {SUMMARY_TYPES}")
        if self.summary_activation is not None and self.summary_activation not in ACTIVATIONS:
            raise config_error("summary_activation", self.summary_activation,
                               f"None or one of {sorted(ACTIVATIONS)}")
        if self.lang_id is not None and not 0 <= self.lang_id < self.n_langs:
            raise config_error("lang_id", self.lang_id, f"None or in [0, n_langs={self.n_langs})")

    # ------------------------------------------------------------------------------ HF round trip
    @classmethod
    def _hf_to_fields(cls, hf: dict[str, Any]) -> dict[str, Any]:
        out = labels_from_hf(hf)
        if "summary_last_dropout" in hf:
            out["summary_last_dropout"] = hf.pop("summary_last_dropout")
        return out

    def _fields_to_hf(self) -> dict[str, Any]:
        extra = {"summary_last_dropout": self.summary_last_dropout} if self.summary_last_dropout else {}
        return {**self.labels_to_hf(), **extra}
