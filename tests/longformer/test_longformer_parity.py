"""Every Longformer head against transformers (eager, float32) on the same tiny checkpoint.

Odd lengths that need window padding, right padding in the batch, a uniform and a per-layer window, several
global tokens at arbitrary positions (a different number per row), and
the default global masks of QA / sequence classification / multiple choice. Compared: the head outputs,
hidden_states and attentions on non-pad positions, global_attentions in full (HF keeps them padded).
Tolerance: float32 max abs difference 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import conversion
from tests import parity
from tests.parity import assert_all_close, assert_close
from tests.factory import save_hf, torch_out
from tests.longformer.hf_longformer import HF_CLASSES, PARITY_INIT, hf_model, qa_batch

ATOL = parity.ATOL
WINDOWS = {"uniform": {"attention_window": 4}, "per_layer": {"attention_window": [8, 4]}}
FIELDS = {"model": ("last_hidden_state", "pooler_output"), "question_answering": ("start_logits", "end_logits")}


def load_pair(tmp_path, head, **overrides):
    return parity.load_pair(hf_model, save_hf, tmp_path, head, **{**PARITY_INIT, **overrides})


def batch(head):
    """ids/mask: [3, 13] (lengths 13, 9, 11), or [3, 2, 13] for multiple choice."""
    ids, mask = qa_batch()
    if head == "multiple_choice":
        ids2, mask2 = qa_batch(lengths=(11, 13, 7), question=(2, 3, 1), seed=1)
        ids, mask = np.stack([ids, ids2], 1), np.stack([mask, mask2], 1)
    return ids, mask


def explicit_globals(mask):
    """Globals at arbitrary positions, a different count per row (a global flag on padding is rejected: see
    test_bad_inputs; the attention layer's own tests cover HF's handling of it)."""
    g = np.zeros_like(mask)
    flat = g.reshape(-1, g.shape[-1])
    for r in range(flat.shape[0]):
        flat[r, [(3 * r + 1) % 7, 5 + r % 4][: 1 + r % 2]] = 1
    return g


def compare(head, ours_out, ref, mask):
    flat_mask = mask.reshape(-1, mask.shape[-1])
    for name in FIELDS.get(head, ("logits",)):
        m = mask if name in ("last_hidden_state", "start_logits", "end_logits") or (
            name == "logits" and head in ("masked_lm", "token_classification")) else None
        if m is not None and name == "last_hidden_state":
            m = m[..., None]
        if m is not None and name == "logits":
            m = m[..., None]
        assert_close(getattr(ours_out, name), getattr(ref, name).numpy(), m, name)
    assert len(ref.hidden_states) == 3  # embeddings and 2 layers (the tiny config), each compared
    assert_all_close(ours_out.hidden_states, ref.hidden_states, flat_mask[..., None], "hidden_states")
    assert_all_close(ours_out.attentions, ref.attentions, flat_mask[:, None, :, None], "attentions")
    if ref.global_attentions is None:
        assert ours_out.global_attentions is None
    else:
        assert_all_close(ours_out.global_attentions, ref.global_attentions, None, "global_attentions")


# Every head on per-layer windows; the uniform window (a backbone setting: the heads read its output as any
# other) on the base model.
CASES = [(head, "per_layer") for head in sorted(HF_CLASSES)] + [("model", "uniform")]
NO_DEFAULT_GLOBALS = ("masked_lm", "token_classification")  # HF adds global tokens for the other heads but "model"


@pytest.mark.parametrize("head,windows", CASES)
def test_head_parity(tmp_path, head, windows):
    hf, ours = load_pair(tmp_path, head, **WINDOWS[windows])
    ids, mask = batch(head)
    flags = dict(output_hidden_states=True, output_attentions=True)
    gmask = explicit_globals(mask)
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, global_attention_mask=gmask, **flags)
    compare(head, ours(input_ids=ids, attention_mask=mask, global_attention_mask=gmask, **flags), ref, mask)
    # No global mask: the heads' defaults (QA, sequence classification, multiple choice) or none at all ("model"
    # runs the no-global encoder the heads without defaults share; their head mapping is checked above).
    if head in NO_DEFAULT_GLOBALS:
        return
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, **flags)
    compare(head, ours(input_ids=ids, attention_mask=mask, **flags), ref, mask)


def test_default_global_masks():
    from longformer_jax import FAMILY

    def default_global_attention_mask(cfg, head, ids):
        return FAMILY.head(head).prepare.rule(cfg, ids)

    hf = hf_model("model")
    ids, _ = batch("model")
    cfg = conversion.ARCHITECTURES["LongformerModel"].config_class.from_hf_dict(hf.config.to_dict())
    from transformers.models.longformer.modeling_longformer import _compute_global_attention_mask
    for head, before in (("question_answering", True), ("multiple_choice", False)):
        ref = _compute_global_attention_mask(torch.as_tensor(ids), 2, before_sep_token=before).numpy()
        np.testing.assert_array_equal(default_global_attention_mask(cfg, head, ids), ref)
    assert default_global_attention_mask(cfg, "sequence_classification", ids)[:, 0].all()


def test_no_attention_mask_and_token_types(tmp_path):
    hf, ours = load_pair(tmp_path, "model")
    ids, _ = qa_batch(lengths=(13, 13, 13))
    tt = (np.arange(13) > 5).astype(np.int64)[None].repeat(3, 0)
    ref = torch_out(hf, input_ids=ids, token_type_ids=tt, global_attention_mask=explicit_globals(ids * 0 + 1))
    out = ours(input_ids=ids, token_type_ids=tt, global_attention_mask=explicit_globals(ids * 0 + 1))
    assert_close(out.last_hidden_state, ref.last_hidden_state.numpy(), None, "no mask")
    assert_close(out.pooler_output, ref.pooler_output.numpy(), None, "pooler")


@pytest.mark.parametrize("head", ["masked_lm", "sequence_classification", "multiple_choice", "token_classification",
                                  "question_answering"])
def test_losses(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    ids, mask = batch(head)
    rng = np.random.default_rng(0)
    if head == "masked_lm":
        kw = {"labels": np.where((mask == 1) & (rng.random(ids.shape) < 0.5), ids, -100)}
    elif head == "sequence_classification":
        kw = {"labels": rng.integers(0, 3, (ids.shape[0],))}
    elif head == "multiple_choice":
        kw = {"labels": np.array([0, 1, 1])}
    elif head == "token_classification":
        kw = {"labels": np.where(mask == 1, rng.integers(0, 3, ids.shape), -100)}
    else:
        kw = {"start_positions": np.array([6, 3, 40]), "end_positions": np.array([8, 5, 7])}
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, **kw).loss.item()
    got = float(ours(input_ids=ids, attention_mask=mask, **kw).loss)
    assert abs(got - ref) <= ATOL, (got, ref)


@pytest.mark.parametrize("head", ["masked_lm", "multiple_choice"])
def test_save_pretrained_round_trip(tmp_path, head):
    hf, ours = load_pair(tmp_path, head, attention_window=[8, 4])
    out_dir = conversion.save_pretrained(ours, tmp_path / "saved")
    back, info = getattr(transformers, HF_CLASSES[head]).from_pretrained(out_dir, output_loading_info=True,
                                                                         attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    back.eval()
    ids, mask = batch(head)
    ref = torch_out(hf, input_ids=ids, attention_mask=mask).logits.numpy()
    np.testing.assert_allclose(torch_out(back, input_ids=ids, attention_mask=mask).logits.numpy(), ref, atol=1e-6)
    reloaded = conversion.from_pretrained(out_dir, progress=False)
    assert reloaded.config.windows == (8, 4)
    assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, ref, None, "reloaded")


def test_config_validation():
    from longformer_jax.config import LongformerConfig

    for bad in ({"attention_window": 5}, {"attention_window": (4, 8, 8)}, {"attention_window": (4, 6)},
                {"attention_window": 0}):
        with pytest.raises(ValueError, match="attention_window"):
            LongformerConfig(num_hidden_layers=2, **bad)
    cfg = LongformerConfig(num_hidden_layers=2, attention_window=(8, 4))
    back = LongformerConfig.from_hf_dict(cfg.to_hf_dict())
    assert back.windows == (8, 4) and back.to_hf_dict() == cfg.to_hf_dict()


def test_bad_inputs(tmp_path):
    _, ours = load_pair(tmp_path, "question_answering")
    ids, mask = batch("question_answering")
    with pytest.raises(ValueError, match="sep tokens"):
        ours(input_ids=np.where(ids == 2, 5, ids), attention_mask=mask)
    with pytest.raises(ValueError, match="input_ids"):
        ours(input_ids=ids + 200, attention_mask=mask)
    with pytest.raises(ValueError, match="global_attention_mask"):
        ours(input_ids=ids, global_attention_mask=mask[:, :5])
    on_pad = np.zeros_like(mask)
    on_pad[mask == 0] = 1
    with pytest.raises(ValueError, match=r"global_attention_mask marks padding position"):
        ours(input_ids=ids, attention_mask=mask, global_attention_mask=on_pad)
    with pytest.raises(ValueError, match=r"must have rank 2"):
        ours(input_ids=ids[0], attention_mask=mask[0])
    long = np.full((1, ours.config.max_position_embeddings), 5)
    with pytest.raises(ValueError, match=r"past max_position_embeddings"):
        ours(input_ids=long)
