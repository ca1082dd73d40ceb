"""Every XLM head against transformers (eager, float32) on the same tiny checkpoint.

Config options of the released checkpoints one at a time (causal, sinusoidal positions, one language, no
language embeddings, ReLU), right padding through attention_mask, lengths and the default (non-pad count),
several languages per batch, token types; outputs, hidden states and attentions; every loss; the SQuAD head's
beams (indices identical); the save_pretrained round trip; and the bad inputs JAX would get silently wrong.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import transformers

import conversion
from tests import parity
from tests.factory import save_hf, torch_out
from tests.xlm.hf_xlm import HF_CLASSES, PAD, PARITY_INIT, VARIANTS, batch, hf_model
from tests.parity import ATOL, assert_all_close, assert_close

FIELDS = {"model": ("last_hidden_state",), "with_lm_head": ("logits",), "sequence_classification": ("logits",),
          "multiple_choice": ("logits",), "token_classification": ("logits",),
          "question_answering_simple": ("start_logits", "end_logits"),
          "question_answering": ("start_top_log_probs", "end_top_log_probs", "cls_logits")}
SQUAD_INDICES = ("start_top_index", "end_top_index")


def load_pair(tmp_path, head, **overrides):
    return parity.load_pair(hf_model, save_hf, tmp_path, head, **{**PARITY_INIT, **overrides})


def inputs_for(head, **kw):
    """Multiple choice takes [B, C, T]: the batch with its rows reversed as a second choice."""
    if head == "multiple_choice":
        return {k: np.stack([v, v[::-1]], axis=1) for k, v in kw.items()}
    return kw


def compare(head, got, ref, flags=True):
    for name in FIELDS[head]:
        assert_close(getattr(got, name), getattr(ref, name).numpy(), None, name)
    if head == "question_answering":
        for name in SQUAD_INDICES:
            np.testing.assert_array_equal(np.asarray(getattr(got, name)), getattr(ref, name).numpy(), err_msg=name)
    if flags:
        assert len(got.hidden_states) == len(ref.hidden_states) == 3
        assert_all_close(got.hidden_states, ref.hidden_states, None, "hidden_states")
        assert len(got.attentions) == len(ref.attentions) == 2
        assert_all_close(got.attentions, ref.attentions, None, "attentions")


def squad_p_mask(mask):
    """Padding is never an answer; without it, the many equal pad probabilities tie and torch.topk and
    lax.top_k may order them differently (the one place the two can legitimately disagree)."""
    return (1 - mask).astype(np.float32)


@pytest.mark.parametrize("head", sorted(HF_CLASSES))
def test_head_parity(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    ids, mask, langs = batch()
    kw = dict(input_ids=ids, attention_mask=mask, langs=langs)
    if head == "question_answering":
        kw["p_mask"] = squad_p_mask(mask)
        kw["cls_index"] = np.array([0, 3, 7])
    kw = inputs_for(head, **kw)
    flags = dict(output_hidden_states=True, output_attentions=True)
    compare(head, ours(**kw, **flags), torch_out(hf, **kw, **flags))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_config_variants(tmp_path, variant):
    """Each option on the bare model and the LM head; three ways to give the padding; token types."""
    hf, ours = load_pair(tmp_path, "with_lm_head", **VARIANTS[variant])
    n_langs = ours.config.n_langs
    ids, mask, langs = batch(n_langs=n_langs)
    lengths = mask.sum(1)
    types = np.random.default_rng(1).integers(0, 99, ids.shape)
    flags = dict(output_hidden_states=True, output_attentions=True)
    for kw in (dict(attention_mask=mask, langs=langs), dict(lengths=lengths, langs=langs),
               dict(token_type_ids=types), {}):  # {}: the mask from the non-pad count
        got, ref = ours(input_ids=ids, **kw, **flags), torch_out(hf, input_ids=ids, **kw, **flags)
        compare("with_lm_head", got, ref)
        assert np.all(np.asarray(got.hidden_states[-1])[mask == 0] == 0)  # pad rows zeroed, as HF


def test_sinusoidal_init_and_languages_matter(tmp_path):
    """init_params' sinusoidal table is HF's; the language embedding reaches the output."""
    from xlm_jax import init_params

    hf = hf_model("model", sinusoidal_embeddings=True)
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "m"), progress=False)
    table = init_params(ours.config, jax.random.PRNGKey(0))["position_embeddings"]["embedding"]
    fresh = transformers.XLMModel(hf.config)  # its _init_weights writes the sinusoidal table
    np.testing.assert_allclose(np.asarray(table), fresh.position_embeddings.weight.detach().numpy(), atol=1e-7)
    ids, mask, langs = batch()
    a = np.asarray(ours(input_ids=ids, attention_mask=mask, langs=langs).last_hidden_state)
    b = np.asarray(ours(input_ids=ids, attention_mask=mask, langs=(langs + 1) % 3).last_hidden_state)
    assert np.abs(a - b).max() > 1e-2


@pytest.mark.parametrize("summary", [dict(summary_type="first"), dict(summary_type="mean"),
                                     dict(summary_type="cls_index", summary_activation="tanh"),
                                     dict(summary_proj_to_labels=False, summary_last_dropout=0.1),
                                     dict(summary_use_proj=False)])
def test_sequence_summary_options(tmp_path, summary):
    hf, ours = load_pair(tmp_path, "sequence_classification", **summary)
    ids, mask, langs = batch()
    kw = dict(input_ids=ids, attention_mask=mask, langs=langs)
    assert_close(ours(**kw).logits, torch_out(hf, **kw).logits.numpy(), None, "logits")


def test_losses(tmp_path):
    rng = np.random.default_rng(0)
    ids, mask, langs = batch()
    b, t = ids.shape
    base = dict(input_ids=ids, attention_mask=mask, langs=langs)
    cases = {
        "with_lm_head": dict(labels=np.where(mask == 1, rng.integers(0, 99, ids.shape), -100)),
        "sequence_classification": dict(labels=np.array([0, 2, 1])),
        "token_classification": dict(labels=np.where(mask == 1, rng.integers(0, 3, ids.shape), -100)),
        "multiple_choice": dict(labels=np.array([1, 0, 1])),
        "question_answering_simple": dict(start_positions=np.array([1, 3, 40]), end_positions=np.array([4, 5, 7])),
        "question_answering": dict(start_positions=np.array([1, 3, 2]), end_positions=np.array([4, 5, 7]),
                                   cls_index=np.array([0, 0, 1]), is_impossible=np.array([0.0, 1.0, 0.0]),
                                   p_mask=squad_p_mask(mask)),
    }
    for head, labels in cases.items():
        hf, ours = load_pair(tmp_path, head)
        kw = dict(inputs_for(head, **base), **labels)
        ref = torch_out(hf, **kw).loss.item()
        got = ours(**kw).loss
        assert abs(float(got) - ref) <= ATOL, (head, float(got), ref)
    # The SQuAD loss without the answer-class term, and its inference without p_mask on unpadded rows.
    hf, ours = load_pair(tmp_path, "question_answering")
    kw = dict(base, start_positions=np.array([1, 3, 2]), end_positions=np.array([4, 5, 7]))
    assert abs(float(ours(**kw).loss) - torch_out(hf, **kw).loss.item()) <= ATOL
    full = dict(input_ids=ids[:, :6], langs=langs[:, :6])
    compare("question_answering", ours(**full), torch_out(hf, **full), flags=False)
    del b, t


@pytest.mark.parametrize("head", ["with_lm_head", "question_answering", "multiple_choice"])
def test_save_pretrained_round_trip(tmp_path, head):
    hf, ours = load_pair(tmp_path, head)
    out_dir = conversion.save_pretrained(ours, tmp_path / "saved")
    back, info = getattr(transformers, HF_CLASSES[head]).from_pretrained(out_dir, output_loading_info=True,
                                                                         attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask, langs = batch()
    kw = inputs_for(head, input_ids=ids, attention_mask=mask, langs=langs)
    field = FIELDS[head][0]
    np.testing.assert_allclose(getattr(torch_out(back.eval(), **kw), field).numpy(),
                               getattr(torch_out(hf, **kw), field).numpy(), atol=1e-6)


def test_backbone_from_a_head_file_and_untied_head(tmp_path):
    hf, _ = load_pair(tmp_path, "with_lm_head")
    ours = conversion.from_pretrained(tmp_path / "with_lm_head", architecture="XLMModel", progress=False)
    ids, mask, langs = batch()
    assert_close(ours(input_ids=ids, attention_mask=mask, langs=langs).last_hidden_state,
                 torch_out(hf.transformer, input_ids=ids, attention_mask=mask, langs=langs).last_hidden_state.numpy(),
                 None, "last_hidden_state")
    hf, ours = load_pair(tmp_path / "untied", "with_lm_head", tie_word_embeddings=False)
    assert "weight" in ours.params["pred_layer"]
    assert_close(ours(input_ids=ids).logits, torch_out(hf, input_ids=ids).logits.numpy(), None, "logits")


def test_config_round_trip_and_validation():
    from xlm_jax.config import XLMConfig

    hf = transformers.XLMConfig(vocab_size=50, emb_dim=16, n_layers=1, n_heads=2, n_langs=2, causal=True,
                                lang2id={"de": 0, "en": 1}, id2lang={0: "de", 1: "en"})
    ours = XLMConfig.from_hf_dict(hf.to_dict())
    assert (ours.hidden_size, ours.num_hidden_layers, ours.causal, ours.n_langs) == (16, 1, True, 2)
    assert ours.extra("lang2id") == {"de": 0, "en": 1}
    again = transformers.XLMConfig(**ours.to_hf_dict())
    as_json = lambda c: json.loads(c.to_json_string()) | {"transformers_version": None}  # noqa: E731
    assert as_json(again) == as_json(hf)
    old = {"model_type": "xlm", "n_words": 50, "emb_dim": 16, "n_layers": 1, "n_heads": 2, "pad_index": 2}
    assert XLMConfig.from_hf_dict(old).vocab_size == 50  # the original XLM names
    for bad, match in ((dict(emb_dim=30, n_heads=4), "emb_dim"), (dict(is_encoder=False), "is_encoder"),
                       (dict(summary_type="attn"), "summary_type"), (dict(lang_id=3, n_langs=2), "lang_id"),
                       (dict(pad_token_id=99, vocab_size=50), "pad_token_id")):
        with pytest.raises(ValueError, match=match):
            XLMConfig(**bad)


def test_adaptive_softmax_is_refused_by_name(tmp_path):
    from xlm_jax.config import XLMConfig
    from xlm_jax import init_params

    config = XLMConfig(vocab_size=50, emb_dim=16, n_layers=1, n_heads=2, asm=True)
    with pytest.raises(ValueError, match="'asm'"):
        init_params(config, jax.random.PRNGKey(0), head="with_lm_head")
    init_params(config, jax.random.PRNGKey(0), head="model")  # the encoder itself has no output layer


def test_bad_inputs(tmp_path):
    _, ours = load_pair(tmp_path, "question_answering")
    ids, mask, langs = batch()
    t = ids.shape[1]
    cases = [
        (dict(input_ids=ids, langs=langs + 3), r"langs holds \d+, outside the allowed range \[0, 2\].*n_langs=3"),
        (dict(input_ids=ids, langs=-langs - 1), "langs holds -"),
        (dict(input_ids=ids, langs=langs[:, :-1]), "langs has shape"),
        (dict(input_ids=ids, lengths=np.array([t + 1, 1, 1])), rf"lengths holds {t + 1}, outside .*\[0, {t}\]"),
        (dict(input_ids=ids, lengths=np.array([1, 1])), r"lengths has shape \(2,\)"),
        (dict(input_ids=ids, token_type_ids=ids + 99), "token_type_ids holds .*word embeddings"),
        (dict(input_ids=ids, position_ids=ids + 64), "position_ids holds .*max_position_embeddings"),
        (dict(input_ids=np.full((1, 65), 5)), "65 tokens: positions 0..64 are past max_position_embeddings=64"),
        (dict(input_ids=ids + 99), "input_ids holds"),
        (dict(input_ids=ids, start_positions=np.array([0, t, 1]), end_positions=np.array([1, 1, 1])),
         rf"start_positions holds {t}, outside"),
        (dict(input_ids=ids, cls_index=np.array([0, -1, 0])), "cls_index holds -1"),
        (dict(input_ids=ids, is_impossible=np.array([0, 2, 0])), "is_impossible holds 2"),
        (dict(input_ids=ids, p_mask=np.full(ids.shape, 2.0)), r"p_mask must hold numbers in \[0, 1\]"),
        (dict(input_ids=ids[:, :3]), "fewer than the beams the SQuAD head keeps"),
        (dict(input_ids=ids, labels=np.zeros(3)), r"unexpected arguments \['labels'\]"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            ours(**kw)
    _, mc = load_pair(tmp_path, "multiple_choice")
    with pytest.raises(ValueError, match=r"XLMForMultipleChoice got unexpected arguments \['lengths'\]"):
        mc(input_ids=np.stack([ids, ids], 1), lengths=np.array([2, 2, 2]))
    with pytest.raises(ValueError, match=r"rank 3 \(\[batch, choices, seq\]\)"):
        mc(input_ids=ids)
    _, simple = load_pair(tmp_path, "question_answering_simple", num_labels=2)
    assert simple(input_ids=ids).start_logits.shape == ids.shape
    assert PAD == 2
