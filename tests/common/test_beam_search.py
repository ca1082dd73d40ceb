"""Beam search against transformers' generate(num_beams=N): token for token, same returned length."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import conversion
from common.generation import banned_ngram_tokens
from common.model import Model
from tests.factory import save_hf
from tests.llama.hf_llama import hf_model, left_padded_batch

NEW = 10  # max_new_tokens everywhere: few steps, but enough for hypotheses to finish at different lengths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """One tiny checkpoint for every test, a left-padded batch (lengths 7, 4, 5) and two EOS sets made of
    tokens the beams emit early, so that hypotheses finish at different steps and the settings matter."""
    # HF's step on a tiny model is microseconds of math; intra-op threads only add hand-off (and on a busy
    # 2-core machine, seconds per generate). One thread while this module runs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    hf = hf_model("causal_lm")
    ours = conversion.from_pretrained(save_hf(hf, tmp_path_factory.mktemp("beam")), progress=False)
    ids, mask = left_padded_batch()
    free = hf_generate(hf, ids, mask, num_beams=4, eos_token_id=None)[:, ids.shape[1]:]  # best beam per prompt
    eos = {"second": [int(free[r, 1]) for r in range(3)],
           "mixed": [int(free[1, 0]), int(free[0, 2]), int(free[2, 2])]}
    yield hf, ours, ids, mask, eos
    torch.set_num_threads(threads)


def hf_generate(hf, ids, mask, **kw):
    with torch.no_grad():
        return hf.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                           max_new_tokens=NEW, **kw).numpy()


def check(setup, eos, **kw):
    """Our generate equals HF's for these settings; returns HF's output. eos: a key of the EOS sets, ids, or
    [] for no EOS (HF's eos_token_id=None)."""
    hf, ours, ids, mask, eos_sets = setup
    kw["eos_token_id"] = eos_sets[eos] if isinstance(eos, str) else eos
    ref = hf_generate(hf, ids, mask, **dict(kw, eos_token_id=kw["eos_token_id"] or None))
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, **kw)
    np.testing.assert_array_equal(got, ref)
    return ref


# Each row compiles once (settings are static under jit), so the rows are chosen to differ where it counts.
@pytest.mark.parametrize("kw", [
    dict(num_beams=2, eos="second"),
    dict(num_beams=2, eos="second", early_stopping="never", num_return_sequences=2),
    dict(num_beams=4, eos="mixed", length_penalty=-1.0, num_return_sequences=2),
    dict(num_beams=4, eos="mixed", length_penalty=2.0, early_stopping=True, num_return_sequences=4),
    dict(num_beams=4, eos="mixed", length_penalty=2.0, early_stopping="never"),
    dict(num_beams=2, eos="second", no_repeat_ngram_size=3, length_penalty=1.5),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_beam_search_matches_hf(setup, kw):
    check(setup, **kw)


def test_early_stop_returns_hf_length_and_filler(setup):
    """All hypotheses finish early: the output is cut where HF cuts it, and finished ones are filled with
    HF's ``pad_token_id or eos_token_id[0]`` (the first EOS when the pad id is 0)."""
    _, _, ids, _, eos = setup
    ref = check(setup, num_beams=2, eos="second", early_stopping=True, num_return_sequences=2)
    assert ref.shape[1] < ids.shape[1] + NEW
    assert (ref[:, -2:] == eos["second"][0]).any()
    ref = check(setup, num_beams=2, eos="second", early_stopping=True, pad_token_id=7)
    assert (ref[:, -2:] == 7).any()


def test_beam_search_single_eos(setup):
    check(setup, num_beams=2, eos=setup[4]["mixed"][0])


def test_beam_search_without_eos_on_one_unpadded_prompt(setup):
    hf, ours, _, _, _ = setup
    ids, mask = left_padded_batch(lengths=(9,), seed=1)
    ref = hf_generate(hf, ids, mask, num_beams=3, eos_token_id=None, num_return_sequences=3)
    np.testing.assert_array_equal(
        ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, num_beams=3, eos_token_id=[],
                      num_return_sequences=3), ref)


def check_processors(setup, eos, min_new_tokens, no_repeat_ngram_size, **kw):
    """Parity with both processors on, on settings where each of them changes HF's output."""
    ref = check(setup, eos, min_new_tokens=min_new_tokens, no_repeat_ngram_size=no_repeat_ngram_size, **kw)
    hf, _, ids, mask, eos_sets = setup
    for one in (dict(min_new_tokens=min_new_tokens), dict(no_repeat_ngram_size=no_repeat_ngram_size)):
        alone = hf_generate(hf, ids, mask, eos_token_id=eos_sets[eos], **one, **kw)
        assert alone.shape != ref.shape or (alone != ref).any(), f"{one} alone gives the same output"
    return ref


def test_beam_search_processors_match_hf(setup):
    check_processors(setup, "second", 6, 2, num_beams=4, length_penalty=0.5)


def test_greedy_and_sampling_processors_match_hf(setup):
    """min_new_tokens and no_repeat_ngram_size apply before the warpers: top_k=1 sampling equals greedy."""
    _, ours, ids, mask, eos = setup
    ref = check_processors(setup, "mixed", 3, 2)
    sampled = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=1,
                            eos_token_id=eos["mixed"], min_new_tokens=3, no_repeat_ngram_size=2)
    np.testing.assert_array_equal(sampled, ref)


def test_settings_from_generation_config(setup):
    """Beam settings (and HF's prompt-inclusive min_length) are read from generation_config.json."""
    hf, ours, ids, mask, eos = setup
    gc = dict(num_beams=3, early_stopping=True, length_penalty=0.5, no_repeat_ngram_size=2,
              min_length=ids.shape[1] + 4, eos_token_id=eos["second"])
    from_json = Model(ours.config, ours.params, ours.spec, generation_config=gc)
    np.testing.assert_array_equal(from_json.generate(ids, attention_mask=mask, max_new_tokens=NEW),
                                  hf_generate(hf, ids, mask, **gc))


def test_no_repeat_ngram_mask_matches_hf():
    """The banned-token mask at every length of a repetitive sequence, against HF's processor."""
    from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor

    seqs = np.random.default_rng(0).integers(0, 4, (3, 12))  # 4 symbols: n-grams repeat often
    banned = jax.jit(banned_ngram_tokens, static_argnums=(2, 3))
    for n in (1, 2, 3):
        for cur_len in range(1, 12):
            scores = torch.zeros(3, 6)
            ref = torch.isinf(NoRepeatNGramLogitsProcessor(n)(torch.as_tensor(seqs[:, :cur_len]), scores)).numpy()
            got = np.asarray(banned(jnp.asarray(seqs), cur_len, n, 6))
            np.testing.assert_array_equal(got, ref, err_msg=f"n={n} cur_len={cur_len}")


@pytest.mark.parametrize("kw, message", [
    (dict(num_beams=0), r"num_beams = 0 is invalid: expected an integer >= 1"),
    (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences = 3 is invalid: expected an integer in "
                                                r"\[1, num_beams=2\]"),
    (dict(num_return_sequences=2), r"num_return_sequences = 2 is invalid: expected 1 for greedy search"),
    (dict(num_beams=2, do_sample=True), r"do_sample=True with num_beams = 2 \(beam sampling\) is not supported"),
    (dict(no_repeat_ngram_size=-1), r"no_repeat_ngram_size = -1 is invalid: expected an integer >= 0"),
    (dict(min_new_tokens=NEW + 1), rf"min_new_tokens = {NEW + 1} is invalid: expected an integer in "
                                   rf"\[0, max_new_tokens={NEW}\]"),
    (dict(num_beams=2, early_stopping="sometimes"), r"early_stopping = 'sometimes' is invalid"),
    (dict(num_beams=2, length_penalty=float("nan")), r"length_penalty = nan is invalid"),
])
def test_bad_beam_arguments(setup, kw, message):
    _, ours, ids, mask, _ = setup
    with pytest.raises(ValueError, match=message):
        ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, **kw)


def test_beam_search_needs_reorder_hook(setup):
    _, ours, ids, mask, _ = setup
    # The same head whose generation hooks lack reorder_cache (they live in the head's declaration).
    head = ours.spec.declaration
    no_reorder = dataclasses.replace(head, generation=dataclasses.replace(head.generation, reorder_cache=None))
    no_hook = Model(ours.config, ours.params, dataclasses.replace(ours.spec, declaration=no_reorder))
    with pytest.raises(ValueError, match=r"num_beams = 2 is not supported .* cannot be reordered"):
        no_hook.generate(ids, attention_mask=mask, num_beams=2)
