"""Longformer, LED and Llama with ``attention="pallas"`` (the kernels, interpreted on CPU) against transformers,
and against our own dense / blocked implementations for gradients and for the sharded run.

The heads' outputs and hidden states are compared on non-pad positions (float32, 1e-5), with right padding and
global tokens at arbitrary positions (a different number per row) for the long-input families, left padding
for Llama. Attentions are not requested: the kernels return none, and such calls run the dense / blocked path
(checked separately below).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conversion
from common.longformer_attention import count_max_num_global
from common.sharding import make_mesh
from tests.led import hf_led
from tests.llama import hf_llama
from tests.longformer import hf_longformer
from tests.factory import save_hf, torch_out
from tests.parity import assert_all_close, assert_close
from tests.led.test_led_parity import decoder_batch, globals_for
from tests.longformer.test_longformer_parity import explicit_globals

LONGFORMER_FIELDS = {"model": ("last_hidden_state", "pooler_output"), "question_answering": ("start_logits",
                                                                                              "end_logits")}


def _load(family, tmp_path, head, attention="pallas", **overrides):
    hf = family.hf_model(head, **overrides)
    directory = save_hf(hf, tmp_path / head)
    return hf, conversion.from_pretrained(directory, attention=attention, progress=False), directory


def _rows(mask, arr):
    m = np.asarray(mask).astype(bool)
    return m.reshape(m.shape + (1,) * (np.ndim(arr) - m.ndim))


# Which heads run here: a head's own layers read the encoder's output with the same code under every attention
# implementation, and test_<family>_parity.py checks each head's mapping (blocked / reference attention). Here the
# kernels are what is tested, so each family runs the heads whose encoder inputs differ: the base model, a
# flattened [batch * choices] batch, the default question globals (Longformer); the causal LM (LED: encoder and
# decoder; Llama: with the variants' attention layouts).

# ----------------------------------------------------------------------------------------- Longformer
@pytest.mark.parametrize("head", ["model", "multiple_choice", "question_answering"])
def test_longformer_heads(tmp_path, head):
    hf, ours, _ = _load(hf_longformer, tmp_path, head, attention_window=[8, 4])
    ids, mask = hf_longformer.qa_batch()
    if head == "multiple_choice":
        ids2, mask2 = hf_longformer.qa_batch(lengths=(11, 13, 7), question=(2, 3, 1), seed=1)
        ids, mask = np.stack([ids, ids2], 1), np.stack([mask, mask2], 1)
    assert ours.config.attention_impl == "pallas"
    for gmask in (explicit_globals(mask), None):  # explicit globals, then the head's default (or none)
        kw = dict(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        if gmask is not None:
            kw["global_attention_mask"] = gmask
        ref, got = torch_out(hf, **kw), ours(**kw)
        flat = mask.reshape(-1, mask.shape[-1])
        for name in LONGFORMER_FIELDS.get(head, ("logits",)):
            per_token = name in ("last_hidden_state", "start_logits", "end_logits") or (
                name == "logits" and head in ("masked_lm", "token_classification"))
            a = getattr(got, name)
            assert_close(a, getattr(ref, name).numpy(), _rows(mask, a) if per_token else None, name)
        assert_all_close(got.hidden_states, ref.hidden_states, flat, "hidden_states")


def test_longformer_gradients_match_blocked(tmp_path):
    """d(loss)/d(params) through two layers of kernels == through the blocked XLA implementation."""
    _, ours, directory = _load(hf_longformer, tmp_path, "masked_lm", attention_window=[8, 4])
    blocked = conversion.from_pretrained(directory, attention="blocked", progress=False)
    ids, mask = hf_longformer.qa_batch()
    gmask = explicit_globals(mask)
    labels = np.where(mask == 1, ids, -100)
    kw = dict(input_ids=ids, attention_mask=mask, global_attention_mask=gmask, labels=labels,
              max_num_global=count_max_num_global(mask, gmask))  # static under jit

    def grads(model):
        fn = model.spec.forward
        return jax.jit(jax.grad(lambda p: fn(p, model.config, **kw).loss))(model.params)

    _assert_grads_close(grads(ours), grads(blocked))


def _assert_grads_close(got, want, rel=1e-4):
    chex.assert_trees_all_equal_shapes_and_dtypes(got, want)  # same tree: the zip below pairs every leaf
    chex.assert_tree_all_finite(got)
    leaves = jax.tree_util.tree_leaves_with_path(want)
    assert leaves
    for (path, w), g in zip(leaves, jax.tree_util.tree_leaves(got)):
        w, g = np.asarray(w), np.asarray(g)
        assert np.abs(g - w).max() <= rel * max(1.0, np.abs(w).max()), (jax.tree_util.keystr(path),
                                                                          np.abs(g - w).max())


def test_longformer_attentions_and_dropout_use_blocked(tmp_path):
    """What the kernels cannot give (probabilities, attention dropout) comes from the blocked path: the
    attentions equal blocked's, and a dropout step with the same rng equals blocked's step."""
    _, ours, directory = _load(hf_longformer, tmp_path, "model", attention_window=[8, 4],
                               attention_probs_dropout_prob=0.3)
    blocked = conversion.from_pretrained(directory, attention="blocked", progress=False)
    ids, mask = hf_longformer.qa_batch()
    kw = dict(input_ids=ids, attention_mask=mask, global_attention_mask=explicit_globals(mask), output_attentions=True)
    a, b = ours(**kw), blocked(**kw)
    assert_all_close(a.attentions + a.global_attentions, b.attentions + b.global_attentions, None, "attentions")
    fn = ours.spec.forward
    rng = jax.random.PRNGKey(0)
    drop = [fn(m.params, m.config, input_ids=ids, attention_mask=mask, deterministic=False, rng=rng).last_hidden_state
            for m in (ours, blocked)]
    assert np.abs(np.asarray(drop[0]) - np.asarray(fn(ours.params, ours.config, input_ids=ids, attention_mask=mask)
                                                   .last_hidden_state)).max() > 1e-3  # dropout did act
    assert_close(drop[0], drop[1], None, "dropout step")


# ----------------------------------------------------------------------------------------------- LED
@pytest.fixture(scope="module")
def led_pair(tmp_path_factory):
    """One LED checkpoint (encoder through the kernels) for the forward and the generate test."""
    hf, ours, _ = _load(hf_led, tmp_path_factory.mktemp("led"), "conditional_generation", attention_window=[8, 4])
    return hf, ours


def test_led_conditional_generation(led_pair):
    """Logits (on non-pad decoder positions) and every encoder hidden state equal transformers'."""
    hf, ours = led_pair
    ids, mask = hf_led.batch()
    dec_ids, dec_mask = decoder_batch(len(ids))
    kw = dict(input_ids=ids, attention_mask=mask, global_attention_mask=globals_for(mask), output_hidden_states=True,
              decoder_input_ids=dec_ids, decoder_attention_mask=dec_mask)
    ref, got = torch_out(hf, **kw), ours(**kw)
    assert_close(got.logits, ref.logits.numpy(), dec_mask, "logits")
    assert_close(got.encoder_last_hidden_state, ref.encoder_last_hidden_state.numpy(), mask,
                 "encoder_last_hidden_state")
    assert_all_close(got.encoder_hidden_states, ref.encoder_hidden_states, mask, "encoder_hidden_states")


def test_led_generate_with_kernels(led_pair):
    """Beam search over an encoder run through the kernels: the same tokens as transformers."""
    hf, ours = led_pair
    ids, mask = hf_led.batch()
    g = globals_for(mask)
    import torch
    with torch.no_grad():
        want = hf.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                           global_attention_mask=torch.as_tensor(g), max_new_tokens=6, num_beams=2, do_sample=False,
                           early_stopping=False).numpy()
    got = np.asarray(ours.generate(ids, attention_mask=mask, global_attention_mask=g, max_new_tokens=6, num_beams=2,
                                   early_stopping=False))
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------------------------- Llama
LLAMA_VARIANTS = {"gqa": {}, "mha_tied": {"num_key_value_heads": 4, "tie_word_embeddings": True},
                  "mqa_head_dim": {"head_dim": 16, "num_attention_heads": 4, "num_key_value_heads": 1}}


# GQA on the base model and the causal LM; each variant on the one head where all it changes shows: tied
# embeddings in the causal LM head (its MHA attention is the same kernel path under any head), MQA with a
# head_dim override in the base model.
LLAMA_CASES = [("causal_lm", "gqa"), ("model", "gqa"), ("causal_lm", "mha_tied"), ("model", "mqa_head_dim")]


@pytest.mark.parametrize("head,variant", LLAMA_CASES)
def test_llama_heads(tmp_path, head, variant):
    hf, ours, _ = _load(hf_llama, tmp_path, head, **LLAMA_VARIANTS[variant])
    ids, mask = hf_llama.left_padded_batch(lengths=(19, 4, 12))  # three query blocks, left padding
    ref = torch_out(hf, input_ids=ids, attention_mask=mask, output_hidden_states=True)
    got = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    names = {"model": ("last_hidden_state",), "question_answering": ("start_logits", "end_logits")}.get(
        head, ("logits",))
    for name in names:
        a = getattr(got, name)
        assert_close(a, getattr(ref, name).numpy(), None if head == "sequence_classification" else _rows(mask, a),
                     name)
    assert_all_close(got.hidden_states, ref.hidden_states, mask, "hidden_states")


def test_llama_gradients_and_generate(tmp_path):
    """Training gradients through the causal kernel == the dense reference's; generate (whose cached steps
    run the dense path) gives HF's tokens from a kernel-run model."""
    hf, ours, directory = _load(hf_llama, tmp_path, "causal_lm")
    dense = conversion.from_pretrained(directory, attention="reference", progress=False)
    ids, mask = hf_llama.left_padded_batch(lengths=(19, 4, 12))
    labels = np.where(mask == 1, ids, -100)

    def grads(model):
        fn = model.spec.forward
        return jax.jit(jax.grad(lambda p: fn(p, model.config, input_ids=ids, attention_mask=mask,
                                             labels=labels).loss))(model.params)

    _assert_grads_close(grads(ours), grads(dense))
    import torch
    with torch.no_grad():
        want = hf.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=5,
                           do_sample=False, pad_token_id=0).numpy()
    np.testing.assert_array_equal(np.asarray(ours.generate(ids, attention_mask=mask, max_new_tokens=5)), want)


# ------------------------------------------------------------------------------------- sharded, config
def test_sharded_kernels_equal_unsharded(tmp_path):
    """Under a 2x2x2 mesh the kernels run per shard (shard_map over batch and heads): same outputs."""
    kw = dict(hidden_size=64, num_attention_heads=4, intermediate_size=64, vocab_size=128)
    _, plain, directory = _load(hf_longformer, tmp_path, "model", attention_window=[8, 4], **kw)
    sharded = conversion.from_pretrained(directory, attention="pallas", mesh=make_mesh(2, 2, 2), progress=False)
    ids, mask = hf_longformer.qa_batch(lengths=(13, 9, 11, 12), question=(3, 2, 4, 3), vocab=128)
    g = np.zeros_like(mask)
    g[0, 2] = g[3, [0, 5]] = 1
    a = plain(input_ids=ids, attention_mask=mask, global_attention_mask=g)
    b = sharded(input_ids=ids, attention_mask=mask, global_attention_mask=g)
    np.testing.assert_allclose(np.asarray(a.last_hidden_state), np.asarray(b.last_hidden_state), atol=1e-5)


def test_attention_choice_is_checked(tmp_path):
    """Families without kernels refuse attention="pallas" by name; bad values name the field and the options."""
    from tests.xlm import hf_xlm
    d = save_hf(hf_xlm.hf_model("model"), tmp_path / "xlm")
    with pytest.raises(ValueError, match=r"attention_impl.*'pallas'.*\('reference', 'auto'\) for XLMConfig"):
        conversion.from_pretrained(d, attention="pallas", progress=False)
    d = save_hf(hf_llama.hf_model("model"), tmp_path / "llama")
    with pytest.raises(ValueError, match=r"attention_impl.*'blocked'.*for LlamaConfig"):
        conversion.from_pretrained(d, attention="blocked", progress=False)
    assert conversion.from_pretrained(d, progress=False).config.attention_impl == "auto"
    from common.attention_impls import CAUSAL, DENSE, SLIDING_WINDOW
    assert [s.resolve("auto") for s in (CAUSAL, SLIDING_WINDOW, DENSE)] == ["reference", "blocked", "reference"]  # CPU
    assert [s.resolve("pallas") for s in (CAUSAL, SLIDING_WINDOW, DENSE)] == ["pallas", "pallas", "reference"]
    with pytest.raises(ValueError, match=r"'flash' is unknown; expected one of \('reference', 'blocked', 'pallas', "
                       r"'auto'\)"):
        CAUSAL.resolve("flash")
    assert jnp.zeros(()).devices().pop().platform == "cpu"
