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
    past_key_values: Any = None


@flax.struct.dataclass
class CausalLMOutput:
    logits: Array
    loss: Array | None = None
    hidden_states: tuple | None = None
    attentions: tuple | None = None
    past_key_values: Any = None


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
