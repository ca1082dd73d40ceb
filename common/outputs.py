"""Output pytrees. Field names are HF's, so ``out.logits`` reads the same as in transformers.

Fields a call does not produce stay ``None`` (a pytree leaf-less node), so outputs pass through jit,
vmap and grad unchanged.
"""

from __future__ import annotations

from typing import Any

import flax.struct

Array = Any


@flax.struct.dataclass
class BaseModelOutput:
    last_hidden_state: Array
    pooler_output: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


@flax.struct.dataclass
class CausalLMOutput:
    logits: Array
    loss: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None


@flax.struct.dataclass
class SequenceClassifierOutput:
    logits: Array
    loss: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


# Token classification and masked LM carry the same fields.
TokenClassifierOutput = SequenceClassifierOutput
MaskedLMOutput = SequenceClassifierOutput


@flax.struct.dataclass
class QuestionAnsweringOutput:
    start_logits: Array
    end_logits: Array
    loss: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    global_attentions: tuple | None = None


@flax.struct.dataclass
class Seq2SeqOutput:
    """Encoder-decoder outputs (HF's ``LEDSeq2Seq*Output`` classes in one): the head's own fields (those a head
    does not produce stay None), then the decoder's and the encoder's."""

    last_hidden_state: Array | None = None  # decoder output (LEDModel)
    logits: Array | None = None
    start_logits: Array | None = None
    end_logits: Array | None = None
    loss: Array | None = None
    decoder_hidden_states: tuple | None = None
    decoder_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    encoder_last_hidden_state: Array | None = None
    encoder_hidden_states: tuple | None = None
    encoder_attentions: tuple | None = None
    encoder_global_attentions: tuple | None = None


@flax.struct.dataclass
class SquadHeadOutput:
    """XLM's SQuAD head (HF's ``XLMForQuestionAnsweringOutput``): the loss when start and end positions are given,
    else the beam outputs (``*_log_probs`` hold probabilities, as HF's)."""

    loss: Array | None = None
    start_top_log_probs: Array | None = None  # [B, start_n_top]
    start_top_index: Array | None = None  # [B, start_n_top]
    end_top_log_probs: Array | None = None  # [B, start_n_top * end_n_top], index e * start_n_top + s
    end_top_index: Array | None = None
    cls_logits: Array | None = None  # [B]
    hidden_states: tuple | None = None
    attentions: tuple | None = None
