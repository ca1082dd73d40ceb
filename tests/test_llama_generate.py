"""Generation against transformers' generate() and the sampling rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import conversion
from common.generation import GenerationConfig, warp_logits
from tests.hf_llama import ROPES, hf_model, left_padded_batch, save_hf


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    hf = hf_model("causal_lm")
    return hf, conversion.from_pretrained(save_hf(hf, tmp_path_factory.mktemp("gen")), progress=False)


def hf_generate(hf, ids, mask, **kw):
    with torch.no_grad():
        return hf.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                           **kw).numpy()


@pytest.mark.parametrize("lengths", [(7, 4, 5), (1, 6), (9,)])
def test_greedy_matches_hf_left_padded(pair, lengths):
    hf, ours = pair
    ids, mask = left_padded_batch(lengths=lengths)
    ref = hf_generate(hf, ids, mask, max_new_tokens=12)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False)
    np.testing.assert_array_equal(got, ref)


def test_greedy_eos_stops_and_pads_like_hf(pair):
    """Pick an EOS the model emits mid-way: finished rows get pad, and the loop stops when all are done."""
    hf, ours = pair
    ids, mask = left_padded_batch()
    free = hf_generate(hf, ids, mask, max_new_tokens=12, eos_token_id=None)
    eos = int(free[0, ids.shape[1] + 2])  # the third new token of row 0
    ref = hf_generate(hf, ids, mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("rope", ["dynamic", "longrope", "llama3"])
def test_greedy_rope_types(tmp_path, rope):
    """Decoding across original_max_position_embeddings (longrope) changes frequencies mid-generation, as in HF."""
    hf = hf_model("causal_lm", rope_parameters=ROPES[rope])
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / rope), progress=False)
    ids, mask = left_padded_batch(lengths=(6, 3))
    np.testing.assert_array_equal(ours.generate(ids, attention_mask=mask, max_new_tokens=10),
                                  hf_generate(hf, ids, mask, max_new_tokens=10))


def test_mask_inferred_from_pad_like_hf(pair):
    hf, ours = pair
    ids, mask = left_padded_batch()
    with torch.no_grad():
        ref = hf.generate(input_ids=torch.as_tensor(ids), do_sample=False, max_new_tokens=6).numpy()
    np.testing.assert_array_equal(ours.generate(ids, max_new_tokens=6), ref)


def test_sampling_is_seeded_and_bounded(pair):
    _, ours = pair
    ids, mask = left_padded_batch()
    a = ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, seed=3)
    b = ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, seed=3)
    c = ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, seed=4, temperature=5.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy = ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    np.testing.assert_array_equal(ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_k=1),
                                  greedy)
    np.testing.assert_array_equal(
        ours.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_p=1e-6), greedy)


def test_warpers_match_hf():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    logits = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32) * 3
    s = GenerationConfig(do_sample=True, temperature=0.7, top_k=10, top_p=0.8)
    ref = torch.as_tensor(logits)
    for w in (TemperatureLogitsWarper(0.7), TopKLogitsWarper(10), TopPLogitsWarper(0.8)):
        ref = w(None, ref)
    got = np.asarray(warp_logits(jnp.asarray(logits), s))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref.numpy()))
    finite = ~np.isinf(got)
    np.testing.assert_allclose(got[finite], ref.numpy()[finite], rtol=1e-6)


def test_sampling_distribution():
    """Draws from the warped distribution: frequencies track softmax within sampling error."""
    from common.generation import select_tokens

    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    s = GenerationConfig(do_sample=True, top_k=3)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = np.asarray(jax.vmap(lambda k: select_tokens(logits, s, k))(keys)).ravel()
    freq = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(freq, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0], atol=0.03)


def test_generation_config_defaults(tmp_path):
    """generation_config.json settings are used when the call leaves them unset (HF's precedence)."""
    import json

    hf = hf_model("causal_lm")
    d = save_hf(hf, tmp_path / "m")
    (d / "generation_config.json").write_text(json.dumps({"do_sample": True, "top_k": 1, "eos_token_id": 2}))
    ours = conversion.from_pretrained(d, progress=False)
    ids, mask = left_padded_batch()
    sampled_topk1 = ours.generate(ids, attention_mask=mask, max_new_tokens=5)
    greedy = ours.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
    np.testing.assert_array_equal(sampled_topk1, greedy)
