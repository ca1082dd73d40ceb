"""Longformer checkpoints as they exist in the wild: legacy names, a bias stored only under its tied name, a
backbone read from a head's file, and a new head started from a masked-LM checkpoint (opt-in)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import conversion
from conversion.api import CheckpointMismatchError
from tests.factory import save_hf, torch_out
from tests.longformer.hf_longformer import hf_model, qa_batch
from tests.parity import assert_close


def _rewrite(directory, edit):
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def test_legacy_layer_norm_names_and_decoder_bias_only(tmp_path):
    hf = hf_model("masked_lm")
    d = save_hf(hf, tmp_path / "m")

    def legacy(state):
        for name in [k for k in state if ".LayerNorm." in k]:
            state[name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")] = \
                state.pop(name)
        state["lm_head.decoder.bias"] = state.pop("lm_head.bias")

    _rewrite(d, legacy)
    names = load_file(d / "model.safetensors").keys()
    assert any(k.endswith("LayerNorm.gamma") for k in names) and "lm_head.bias" not in names
    ours = conversion.from_pretrained(d, progress=False)
    ids, mask = qa_batch()
    ref = torch_out(hf, input_ids=ids, attention_mask=mask).logits.numpy()
    assert_close(ours(input_ids=ids, attention_mask=mask).logits, ref, mask[..., None], "logits")
    # transformers reads the same rewritten file to the same model
    back = transformers.LongformerForMaskedLM.from_pretrained(d, attn_implementation="eager").eval()
    np.testing.assert_allclose(torch_out(back, input_ids=ids, attention_mask=mask).logits.numpy(), ref, atol=1e-6)


def test_backbone_from_a_head_checkpoint(tmp_path):
    """LongformerModel from a LongformerForMultipleChoice file (which has the pooler): the 'longformer.' prefix
    is stripped and the head's tensors are left out, as transformers does."""
    hf = hf_model("multiple_choice")
    d = save_hf(hf, tmp_path / "mc")
    ours = conversion.from_pretrained(d, architecture="LongformerModel", progress=False)
    assert "classifier" not in ours.params
    ids, mask = qa_batch()
    ref = torch_out(hf.longformer, input_ids=ids, attention_mask=mask)
    got = ours(input_ids=ids, attention_mask=mask)
    assert_close(got.last_hidden_state, ref.last_hidden_state.numpy(), mask[..., None], "last_hidden_state")
    assert_close(got.pooler_output, ref.pooler_output.numpy(), None, "pooler_output")


def test_new_head_from_masked_lm_checkpoint_is_opt_in(tmp_path):
    mlm = hf_model("masked_lm")
    d = save_hf(mlm, tmp_path / "mlm")
    with pytest.raises(CheckpointMismatchError) as e:
        conversion.from_pretrained(d, architecture="LongformerForSequenceClassification", progress=False)
    msg = str(e.value)
    assert "missing" in msg and "classifier.out_proj.weight" in msg and "init_missing" in msg
    assert "lm_head.dense.weight" in msg and "unexpected" in msg  # the MLM head is not silently dropped

    # Asked for: the classifier is initialised and the masked-LM head left out, each with a warning.
    with pytest.warns(UserWarning) as record:
        ours = conversion.from_pretrained(d, architecture="LongformerForSequenceClassification",
                                          init_missing=np.asarray([0, 7], np.uint32), progress=False)
    said = " | ".join(str(w.message) for w in record)
    assert re.search(r"initialised.*classifier\.dense\.weight.*classifier\.out_proj\.bias", said), said
    assert re.search(r"left out.*lm_head\.dense\.weight", said), said
    assert "lm_head" not in ours.params
    want = mlm.longformer.encoder.layer[1].output.dense.weight.detach().numpy().T
    np.testing.assert_array_equal(np.asarray(ours.params["layers"]["output"]["dense"]["kernel"][1]), want)
    w = np.asarray(ours.params["classifier"]["out_proj"]["kernel"])
    std = ours.config.initializer_range  # the checkpoint's (tests/hf_longformer.py: 0.2), as init_params
    assert w.shape == (32, 3) and 0.5 * std < w.std() < 1.5 * std, (w.std(), std)
    assert np.all(np.asarray(ours.params["classifier"]["out_proj"]["bias"]) == 0)
    ids, mask = qa_batch()
    assert np.isfinite(np.asarray(ours(input_ids=ids, attention_mask=mask).logits)).all()


def test_init_missing_does_not_cover_a_partly_missing_tensor(tmp_path):
    d = save_hf(hf_model("token_classification"), tmp_path / "tc")
    _rewrite(d, lambda s: s.pop("longformer.encoder.layer.1.intermediate.dense.weight"))
    with pytest.raises(CheckpointMismatchError, match=r"missing \(1\): longformer\.encoder\.layer\.1\.intermediate"):
        conversion.from_pretrained(d, init_missing=np.asarray([0, 1], np.uint32), progress=False)


def test_unknown_tensor_is_still_reported(tmp_path):
    d = save_hf(hf_model("model"), tmp_path / "base")
    _rewrite(d, lambda s: s.__setitem__("encoder.layer.0.surprise", torch.zeros(2)))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(1\): encoder\.layer\.0\.surprise"):
        conversion.from_pretrained(d, progress=False)
    # ... also inside the backbone when starting a new head
    d = save_hf(hf_model("masked_lm"), tmp_path / "mlm")
    _rewrite(d, lambda s: s.__setitem__("longformer.encoder.layer.0.surprise", torch.zeros(2)))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected \(1\): longformer\.encoder\.layer\.0\.surp"):
        conversion.from_pretrained(d, architecture="LongformerForTokenClassification",
                                   init_missing=np.asarray([0, 1], np.uint32), progress=False)
