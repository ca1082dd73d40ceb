"""Tiny random transformers LED checkpoints for tests (built locally; nothing from the Hub).

LEDForSequenceClassification is gone from transformers 5.x: ``SeqClsReference`` rebuilds it as 4.x defined
it (LEDModel + a classification head pooling the decoder state at the last eos of input_ids), and
its ``save_pretrained`` writes the checkpoint under 4.x's key names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import transformers

from safetensors.torch import save_file

from tests.factory import TinyCheckpoints

HF_CLASSES = {
    "model": "LEDModel",
    "conditional_generation": "LEDForConditionalGeneration",
    "sequence_classification": "LEDForSequenceClassification",
    "question_answering": "LEDForQuestionAnswering",
}

# A window of 4 (w = 2) and BART's special ids; small position tables so length errors are reachable.
TINY = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=29, attention_window=4,
            max_encoder_position_embeddings=64, max_decoder_position_embeddings=40, dropout=0.1,
            attention_dropout=0.1, activation_dropout=0.1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=2, num_labels=3)


class SeqClsReference(torch.nn.Module):
    """transformers 4.x LEDForSequenceClassification, from 5.x's LEDModel and the 4.x head definition."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.led = transformers.LEDModel(config)
        self.classification_head = transformers.models.led.modeling_led.LEDClassificationHead(
            config.d_model, config.d_model, config.num_labels, config.classifier_dropout)

    def forward(self, input_ids, attention_mask=None, global_attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, **kw):
        out = self.led(input_ids=input_ids, attention_mask=attention_mask, global_attention_mask=global_attention_mask,
                       decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask, **kw)
        hidden = out.last_hidden_state
        eos_mask = input_ids.eq(self.config.eos_token_id)
        rep = hidden[eos_mask, :].view(hidden.size(0), -1, hidden.size(-1))[:, -1, :]
        out.logits = self.classification_head(rep)
        return out

    def save_pretrained(self, directory: Path, **kwargs) -> None:
        """4.x's files: the state dict without the tied embedding copies, architectures = the 4.x class."""
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items() if ".embed_tokens." not in k}
        save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
        cfg = self.config.to_dict()
        cfg["architectures"] = ["LEDForSequenceClassification"]
        (directory / "config.json").write_text(json.dumps(cfg, indent=2))


TINY_CHECKPOINTS = TinyCheckpoints("LEDConfig", HF_CLASSES, TINY,
                                   builders={"sequence_classification": SeqClsReference})
hf_config, hf_model = TINY_CHECKPOINTS.hf_config, TINY_CHECKPOINTS.hf_model


def batch(lengths=(13, 9, 11), vocab: int = 99, pad: int = 1, eos: int = 2, seed: int = 0):
    """Right-padded encoder inputs, one eos at the end of each row: ids [B, S], mask [B, S] int64."""
    rng = np.random.default_rng(seed)
    s = max(lengths)
    ids = np.full((len(lengths), s), pad, np.int64)
    mask = np.zeros((len(lengths), s), np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = list(rng.integers(3, vocab, n - 1)) + [eos]
        mask[b, :n] = 1
    return ids, mask
