"""Every LED head against transformers (eager, float32) on the same tiny checkpoint.

Right padding in the encoder batch, odd lengths that need window padding, global tokens at arbitrary
positions (a different number per row), a uniform and a per-layer window, an encoder and a decoder of
different depths (each way round), explicit decoder inputs with padding, and the default decoder inputs
(shift_tokens_right). Compared: the head outputs, the decoder and encoder hidden states and attentions on
non-pad positions, cross attentions, encoder global attentions in full.
LEDForSequenceClassification is checked against transformers 4.x's definition (tests/led/hf_led.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import conversion
from conversion.api import CheckpointMismatchError
from tests import parity
from tests.factory import save_hf, torch_out
from tests.led.hf_led import HF_CLASSES, batch, hf_model
from tests.parity import assert_close

# A uniform and a per-layer window, each with the two stacks at different depths (the decoder deeper, then
# shallower): a depth read from the wrong stack breaks conversion, the forward or the outputs' layer counts.
CONFIGS = {"uniform-enc2-dec3": dict(attention_window=4, encoder_layers=2, decoder_layers=3),
           "per_layer-enc3-dec1": dict(attention_window=[4, 8, 4], encoder_layers=3, decoder_layers=1)}
FIELDS = {"model": ("last_hidden_state",), "conditional_generation": ("logits",),
          "sequence_classification": ("logits",), "question_answering": ("start_logits", "end_logits")}


def load_pair(tmp_path, head, **overrides):
    return parity.load_pair(hf_model, save_hf, tmp_path, head, **overrides)


def globals_for(mask):
    g = np.zeros_like(mask)
    g[0, [3, 7]] = 1
    g[2, 0] = 1  # row 1: none
    return g


def decoder_batch(b, seed=1):
    """Explicit decoder inputs [B, 7] starting with decoder_start_token_id, the last row right-padded."""
    rng = np.random.default_rng(seed)
    dec = np.concatenate([np.full((b, 1), 2), rng.integers(3, 99, (b, 6))], axis=1)
    dmask = np.ones_like(dec)
    dec[-1, 5:], dmask[-1, 5:] = 1, 0
    return dec, dmask


def compare(head, got, ref, enc_mask, dec_mask):
    enc_rows, dec_rows = enc_mask.astype(bool), dec_mask.astype(bool)
    for name in FIELDS[head]:
        rows = None if head == "sequence_classification" else dec_rows
        assert_close(getattr(got, name), getattr(ref, name).numpy(), rows, name)
    if head != "model":  # HF's head outputs have no last_hidden_state: the decoder's state is not carried over
        assert got.last_hidden_state is None
    assert_close(got.encoder_last_hidden_state, ref.encoder_last_hidden_state.numpy(), enc_rows, "encoder_last")
    for ours_name, ref_name, rows in (("encoder_hidden_states", "encoder_hidden_states", enc_rows),
                                      ("decoder_hidden_states", "decoder_hidden_states", dec_rows)):
        a, b = getattr(got, ours_name), getattr(ref, ref_name)
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y.numpy(), rows, f"{ours_name}[{i}]")
    for name, rows in (("encoder_attentions", enc_rows), ("decoder_attentions", dec_rows),
                       ("cross_attentions", dec_rows)):
        a, b = getattr(got, name), getattr(ref, name)
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y.numpy(), rows[:, None, :], f"{name}[{i}]")
    if ref.encoder_global_attentions is None:
        assert got.encoder_global_attentions is None
    else:
        for i, (x, y) in enumerate(zip(got.encoder_global_attentions, ref.encoder_global_attentions)):
            assert_close(x, y.numpy(), None, f"encoder_global_attentions[{i}]")


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_head_parity(tmp_path, head, config):
    hf, ours = load_pair(tmp_path, head, **CONFIGS[config])
    ids, mask = batch()
    kw = dict(input_ids=ids, attention_mask=mask, global_attention_mask=globals_for(mask), output_hidden_states=True,
              output_attentions=True)
    if head != "sequence_classification":  # it reads the decoder at input_ids' eos: decoder as long as input_ids
        kw["decoder_input_ids"], kw["decoder_attention_mask"] = decoder_batch(len(ids))
    ref, got = torch_out(hf, **kw), ours(**kw)
    compare(head, got, ref, mask, kw.get("decoder_attention_mask", mask))


@pytest.mark.parametrize("head", ["model", "question_answering"])
def test_default_decoder_inputs_are_shifted_input_ids(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    ids, mask = batch(lengths=(7, 5))
    ref, got = torch_out(hf, input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask)
    name = FIELDS[head][0]
    assert_close(getattr(got, name), getattr(ref, name).numpy(), mask, name)


def test_losses(tmp_path):
    hf, ours = load_pair(tmp_path, "conditional_generation")
    ids, mask = batch()
    labels = np.random.default_rng(3).integers(3, 99, (3, 6))
    labels[1, 4:] = -100
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, labels=labels)
    got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert_close(got.logits, ref.logits.numpy(), None, "logits (decoder from shifted labels)")
    assert abs(float(got.loss) - ref.loss.item()) <= parity.ATOL

    hf, ours = load_pair(tmp_path, "question_answering")
    start, end = np.array([1, 3, 20]), np.array([4, 3, 2])  # 20: past the end, clamped and ignored (HF)
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    got = ours(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    assert abs(float(got.loss) - ref.loss.item()) <= parity.ATOL

    hf, ours = load_pair(tmp_path, "sequence_classification")
    logits = torch_out(hf, input_ids=ids, attention_mask=mask).logits
    want = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2, 1])).item()
    assert abs(float(ours(input_ids=ids, attention_mask=mask, labels=np.array([0, 2, 1])).loss) - want) <= 1e-5


@pytest.mark.parametrize("head, config", [("conditional_generation", "uniform-enc2-dec3"),
                                          ("question_answering", "per_layer-enc3-dec1")])
def test_save_pretrained_round_trip(tmp_path, head, config):
    hf, ours = load_pair(tmp_path, head, **CONFIGS[config])
    out_dir = conversion.save_pretrained(ours, tmp_path / "saved")
    back, info = getattr(transformers, HF_CLASSES[head]).from_pretrained(out_dir, output_loading_info=True,
                                                                         attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask = batch()
    name = FIELDS[head][0]
    ref = getattr(torch_out(hf, input_ids=ids, attention_mask=mask), name).numpy()
    np.testing.assert_allclose(getattr(torch_out(back.eval(), input_ids=ids, attention_mask=mask), name).numpy(),
                               ref, atol=1e-6)
    reloaded = conversion.from_pretrained(out_dir, progress=False)
    for field in ("windows", "encoder_layers", "decoder_layers"):
        assert getattr(reloaded.config, field) == getattr(ours.config, field), field
    assert_close(getattr(reloaded(input_ids=ids, attention_mask=mask), name), ref, mask, "reloaded")


def test_sequence_classification_saves_4x_key_names(tmp_path):
    hf, ours = load_pair(tmp_path, "sequence_classification", **CONFIGS["uniform-enc2-dec3"])
    out_dir = conversion.save_pretrained(ours, tmp_path / "saved")
    want = {k for k in hf.state_dict() if ".embed_tokens." not in k}
    assert set(load_file(out_dir / "model.safetensors")) == want
    assert json.loads((out_dir / "config.json").read_text())["architectures"] == ["LEDForSequenceClassification"]


def test_final_logits_bias_may_be_absent(tmp_path):
    """Some files lack the buffer: transformers makes it zeros, and so do we (no error, no warning)."""
    hf = hf_model("conditional_generation")
    with torch.no_grad():
        hf.final_logits_bias.zero_()
    d = save_hf(hf, tmp_path / "m")
    state = load_file(d / "model.safetensors")
    state.pop("final_logits_bias")
    save_file(state, d / "model.safetensors", metadata={"format": "pt"})
    ours = conversion.from_pretrained(d, progress=False)
    assert np.all(np.asarray(ours.params["final_logits_bias"]) == 0)
    ids, mask = batch()
    assert_close(ours(input_ids=ids, attention_mask=mask).logits,
                 torch_out(hf, input_ids=ids, attention_mask=mask).logits.numpy(), mask, "logits")


def test_each_stack_is_matched_by_its_own_depth(tmp_path):
    """A config.json whose depth disagrees with the file names that stack's layers, and only those."""
    d = save_hf(hf_model("model", **CONFIGS["uniform-enc2-dec3"]), tmp_path / "m")
    saved = json.loads((d / "config.json").read_text())
    for edit, want, other in ((dict(decoder_layers=4), r"missing \(26\): decoder\.layers\.3\.", "encoder"),
                              (dict(encoder_layers=1, attention_window=[4]),
                               r"unexpected \(22\): encoder\.layers\.1\.", "decoder")):
        (d / "config.json").write_text(json.dumps(dict(saved, **edit)))
        with pytest.raises(CheckpointMismatchError, match=want) as err:
            conversion.from_pretrained(d, progress=False)
        assert f"{other}.layers" not in str(err.value)


def test_bad_inputs(tmp_path):
    _, ours = load_pair(tmp_path, "conditional_generation")
    ids, mask = batch()
    on_pad = np.zeros_like(mask)
    on_pad[mask == 0] = 1
    with pytest.raises(ValueError, match="global_attention_mask marks padding position"):
        ours(input_ids=ids, attention_mask=mask, global_attention_mask=on_pad)
    with pytest.raises(ValueError, match=r"max_encoder_position_embeddings=64"):
        ours(input_ids=np.full((1, 65), 5))
    with pytest.raises(ValueError, match=r"decoder_input_ids has length 41: past max_decoder_position_embeddings=40"):
        ours(input_ids=ids, decoder_input_ids=np.full((3, 41), 5))
    with pytest.raises(ValueError, match=r"input_ids \(shifted, as decoder_input_ids\) has length 48"):
        ours(input_ids=np.full((1, 48), 5))
    with pytest.raises(ValueError, match="decoder_input_ids"):
        ours(input_ids=ids, decoder_input_ids=np.full((3, 4), 99))
    with pytest.raises(ValueError, match="decoder_attention_mask"):
        ours(input_ids=ids, decoder_input_ids=np.full((3, 4), 5), decoder_attention_mask=np.ones((3, 5)))
    with pytest.raises(ValueError, match="labels"):
        ours(input_ids=ids, labels=np.full((3, 4), 120))
    _, cls = load_pair(tmp_path, "sequence_classification")
    two_eos = ids.copy()
    two_eos[0, 1] = 2
    with pytest.raises(ValueError, match=r"same number \(>= 1\) of them, got \[2, 1, 1\]"):
        cls(input_ids=two_eos, attention_mask=mask)


def test_config_validation_and_round_trip():
    from led_jax.config import LEDConfig

    for bad in ({"attention_window": 5}, {"attention_window": (4, 8, 8)}, {"d_model": 30},
                {"dropout": 1.5}, {"decoder_start_token_id": 60000}):
        with pytest.raises(ValueError, match=list(bad)[0] if "d_model" not in bad else "d_model"):
            LEDConfig(**{**dict(encoder_layers=2, decoder_layers=2, d_model=32, encoder_attention_heads=4,
                                decoder_attention_heads=4), **bad})
    hf = transformers.LEDConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                                decoder_attention_heads=4, attention_window=[8, 4])
    ours = LEDConfig.from_hf_dict(hf.to_dict())
    assert ours.windows == (8, 4) and ours.hidden_size == 32 and ours.num_labels == 2
    back = transformers.LEDConfig(**ours.to_hf_dict())
    for key in ("d_model", "encoder_layers", "attention_window", "decoder_start_token_id", "num_labels"):
        assert getattr(back, key) == getattr(hf, key), key
