"""Every LiLT head against transformers (eager, float32) on the same tiny checkpoint.

Right padding, token types, boxes over the whole 0..1000 range (0, 1000, full-page and zero-size boxes), default
(all-zero) boxes and no attention mask; outputs, hidden states and attentions; losses; the save_pretrained
round trip; and the checks on boxes that JAX would otherwise wrap or clamp silently.
"""

from __future__ import annotations

import numpy as np
import pytest
import transformers

import conversion
from tests import parity
from tests.factory import save_hf, torch_out
from tests.lilt.hf_lilt import HF_CLASSES, batch, hf_model
from tests.parity import ATOL, assert_all_close, assert_close

FIELDS = {"model": ("last_hidden_state", "pooler_output"), "sequence_classification": ("logits",),
          "token_classification": ("logits",), "question_answering": ("start_logits", "end_logits")}


def load_pair(tmp_path, head, **overrides):
    return parity.load_pair(hf_model, save_hf, tmp_path, head, **overrides)


def compare(head, got, ref, mask):
    for name in FIELDS[head]:
        assert_close(getattr(got, name), getattr(ref, name).numpy(), None, name)
    assert len(got.hidden_states) == len(ref.hidden_states) == 3
    assert_all_close(got.hidden_states, ref.hidden_states, None, "hidden_states")
    assert len(got.attentions) == len(ref.attentions) == 2
    assert_all_close(got.attentions, ref.attentions, None, "attentions")


@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_head_parity(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    ids, mask, boxes, types = batch()
    flags = dict(output_hidden_states=True, output_attentions=True)
    inputs = dict(input_ids=ids, bbox=boxes, attention_mask=mask, token_type_ids=types)
    compare(head, ours(**inputs, **flags), torch_out(hf, **inputs, **flags), mask)
    # Defaults: no boxes (zeros), no mask, no token types; a <pad> id inside a row shifts the positions (HF).
    ids[0, 4] = 1
    compare(head, ours(input_ids=ids, **flags), torch_out(hf, input_ids=ids, **flags), mask)


def test_layout_stream_matters(tmp_path):
    """The boxes reach the output (a comparison blind to the layout stream would pass with any boxes)."""
    _, ours = load_pair(tmp_path, "model")
    ids, mask, boxes, _ = batch()
    a = np.asarray(ours(input_ids=ids, bbox=boxes, attention_mask=mask).last_hidden_state)
    b = np.asarray(ours(input_ids=ids, bbox=boxes // 2, attention_mask=mask).last_hidden_state)
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("head", ["sequence_classification", "token_classification", "question_answering"])
def test_losses(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    ids, mask, boxes, _ = batch()
    rng = np.random.default_rng(0)
    if head == "sequence_classification":
        kw = {"labels": rng.integers(0, 3, (ids.shape[0],))}
    elif head == "token_classification":
        kw = {"labels": np.where(mask == 1, rng.integers(0, 3, ids.shape), -100)}
    else:
        kw = {"start_positions": np.array([6, 3, 40]), "end_positions": np.array([8, 5, 7])}
    ref = torch_out(hf, input_ids=ids, bbox=boxes, attention_mask=mask, **kw).loss.item()
    got = float(ours(input_ids=ids, bbox=boxes, attention_mask=mask, **kw).loss)
    assert abs(got - ref) <= ATOL, (got, ref)


@pytest.mark.parametrize("head", ["model", "token_classification"])
def test_save_pretrained_round_trip(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    out_dir = conversion.save_pretrained(ours, tmp_path / "saved")
    back, info = getattr(transformers, HF_CLASSES[head]).from_pretrained(out_dir, output_loading_info=True,
                                                                         attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    back.eval()
    ids, mask, boxes, _ = batch()
    field = FIELDS[head][0]
    ref = getattr(torch_out(hf, input_ids=ids, bbox=boxes, attention_mask=mask), field).numpy()
    np.testing.assert_allclose(getattr(torch_out(back, input_ids=ids, bbox=boxes, attention_mask=mask), field).numpy(),
                               ref, atol=1e-6)


def test_backbone_from_a_head_file(tmp_path):
    """LiltModel from a token-classification file: the head is left out; the pooler, which head files lack,
    is an error unless the caller asks for it to be initialised."""
    import jax

    hf, _ = load_pair(tmp_path, "token_classification")
    with pytest.raises(ValueError, match="pooler"):
        conversion.from_pretrained(tmp_path / "token_classification", architecture="LiltModel", progress=False)
    with pytest.warns(UserWarning, match="pooler"):
        ours = conversion.from_pretrained(tmp_path / "token_classification", architecture="LiltModel",
                                          init_missing=jax.random.PRNGKey(0), progress=False)
    assert "classifier" not in ours.params
    ids, mask, boxes, _ = batch()
    ref = torch_out(hf.lilt, input_ids=ids, bbox=boxes, attention_mask=mask)
    assert_close(ours(input_ids=ids, bbox=boxes, attention_mask=mask).last_hidden_state,
                 ref.last_hidden_state.numpy(), None, "last_hidden_state")


def test_config_validation_and_round_trip():
    from lilt_jax.config import LiltConfig

    for bad, field in (({"hidden_size": 30, "num_attention_heads": 4}, "hidden_size"),
                       ({"channel_shrink_ratio": 3}, "channel_shrink_ratio"),
                       ({"hidden_size": 32, "num_attention_heads": 4}, "hidden_size")):
        with pytest.raises(ValueError, match=field):
            LiltConfig(**dict(dict(hidden_size=24, num_attention_heads=6, intermediate_size=36), **bad))
    hf = hf_model("model").config.to_dict()
    cfg = LiltConfig.from_hf_dict(hf)
    assert cfg.layout_size == 6 and cfg.layer_norm_eps == 1e-5
    assert LiltConfig.from_hf_dict(cfg.to_hf_dict()) == cfg


def test_bad_inputs(tmp_path):
    _, ours = load_pair(tmp_path, "token_classification")
    ids, mask, boxes, types = batch()

    def with_box(box, where=(1, 2)):
        b = boxes.copy()
        b[where] = box
        return b

    cases = [
        (dict(bbox=with_box([0, 0, 1001, 5])), r"bbox holds -?[0-9]+, outside the allowed range \[0, 1000\]"),
        (dict(bbox=with_box([-1, 0, 3, 5])), r"bbox holds -?[0-9]+, outside the allowed range \[0, 1000\]"),
        (dict(bbox=with_box([10, 0, 3, 5])), r"bbox at \(batch, token\) \(1, 2\) is \[10, 0, 3, 5\]: x1 < x0"),
        (dict(bbox=with_box([0, 9, 3, 5])), r"y1 < y0"),
        (dict(bbox=boxes[:, :-1]), r"bbox has shape \(3, 12, 4\): expected \(3, 13, 4\)"),
        (dict(bbox=boxes[..., :3]), r"bbox has shape"),
        (dict(bbox=boxes + 0.5), r"bbox"),
        (dict(token_type_ids=types + 16), r"token_type_ids"),
        (dict(labels=np.full(ids.shape, 3)), r"labels"),
        (dict(attention_mask=mask * 2), r"attention_mask"),
    ]
    for kw, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            ours(**dict(dict(input_ids=ids, bbox=boxes, attention_mask=mask), **kw))
    with pytest.raises(ValueError, match="past max_position_embeddings"):
        ours(input_ids=np.full((1, 63), 5))
    with pytest.raises(ValueError, match=r"LiltModel got unexpected arguments \['labels'\]"):
        load_pair(tmp_path, "model")[1](input_ids=ids, labels=ids)
