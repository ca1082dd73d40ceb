"""Continuous batching (common.continuous, ``model.generate(..., slots=k)``): each prompt's tokens equal
transformers' generate of that prompt alone, whatever the slot count, with rows stopping at different steps,
refills, and the cache's shifts (more steps than its margin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conversion
from common.continuous import prefill_widths
from common.generation import generate_tokens
from tests.factory import save_hf
from tests.llama.hf_llama import hf_model

NEW = 12
# Nine prompts, left-padded to 20: a refill is prefilled at width 8, 16 or 20 (continuous.prefill_widths), the
# narrowest that holds its prompt.
LENGTHS = (3, 17, 1, 5, 20, 2, 9, 4, 12)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    hf = hf_model("causal_lm", initializer_range=0.2)
    ours = conversion.from_pretrained(save_hf(hf, tmp_path_factory.mktemp("cb")), progress=False)
    rng = np.random.default_rng(0)
    width = max(LENGTHS)
    ids, mask = np.zeros((len(LENGTHS), width), np.int32), np.zeros((len(LENGTHS), width), np.int32)
    for i, n in enumerate(LENGTHS):
        ids[i, width - n:], mask[i, width - n:] = rng.integers(3, 99, n), 1
    # EOS: two tokens that the prompts' free continuations hold at different steps, so rows stop apart
    free = [alone(hf, ids[i, width - n:], eos=None) for i, n in enumerate(LENGTHS)]
    eos = sorted({int(f[n + 2]) for f, n in zip(free[:3], LENGTHS)})
    expected = [alone(hf, ids[i, width - n:], eos=eos) for i, n in enumerate(LENGTHS)]
    stops = [len(e) - n for e, n in zip(expected, LENGTHS)]
    assert len(set(stops)) > 2 and max(stops) == NEW, stops  # early stops at different steps, and a full row
    return hf, ours, ids, mask, eos, expected


def alone(hf, prompt, eos, new=NEW, **kwargs):
    with torch.no_grad():
        out = hf.generate(input_ids=torch.as_tensor(prompt[None]), do_sample=False, max_new_tokens=new,
                          eos_token_id=eos, pad_token_id=0, **kwargs).numpy()[0]
    return out


@pytest.mark.parametrize("slots", [2, 3, 8, 16])  # 16: every row has a slot (static batching serves)
def test_each_prompt_gets_what_it_gets_alone(setup, slots):
    _, ours, ids, mask, eos, expected = setup
    assert prefill_widths(ids.shape[1]) == (8, 16, 20)
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0,
                        slots=slots)
    static = ours.generate(ids, attention_mask=mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0)
    np.testing.assert_array_equal(got, static)  # the same result as static batching, pads and all
    width = ids.shape[1]
    for row, n, want in zip(got, LENGTHS, expected):
        np.testing.assert_array_equal(row[width - n:width - n + len(want)], want)
        assert (row[width - n + len(want):] == 0).all()


# Each prompt's own max_new_tokens (traced; the compiled bound is the largest rounded up to a power of two)
OWN = (12, 3, 7, 1, 12, 5, 9, 2, 4)


@pytest.mark.parametrize("forced_eos", [None, 7])  # transformers forces it at each prompt's own last step
def test_each_row_stops_at_its_own_max_new_tokens(setup, forced_eos):
    hf, ours, ids, mask, eos, _ = setup
    width = ids.shape[1]
    expected = [alone(hf, ids[i, width - n:], eos=eos, new=k, forced_eos_token_id=forced_eos)
                for i, (n, k) in enumerate(zip(LENGTHS, OWN))]
    kwargs = dict(attention_mask=mask, max_new_tokens=list(OWN), eos_token_id=eos, pad_token_id=0,
                  forced_eos_token_id=forced_eos)
    static = ours.generate(ids, **kwargs)
    np.testing.assert_array_equal(ours.generate(ids, slots=3, **kwargs), static)
    programs = generate_tokens._cache_size()
    ours.generate(ids, **{**kwargs, "max_new_tokens": [min(k, 9) for k in OWN]})  # bound 16 again
    assert generate_tokens._cache_size() == programs  # other limits, the same program
    stops = []
    for row, n, want in zip(static, LENGTHS, expected):
        np.testing.assert_array_equal(row[width - n:width - n + len(want)], want)
        assert (row[width - n + len(want):] == 0).all()
        stops.append(len(want) - n)
    assert sum(s == k for s, k in zip(stops, OWN)) > 2 and stops != list(OWN), stops  # own maxes and EOS both end rows


def test_sampling_draws_do_not_depend_on_the_slots(setup):
    _, ours, ids, mask, eos, _ = setup
    kwargs = dict(attention_mask=mask, max_new_tokens=NEW, do_sample=True, top_k=0, eos_token_id=eos,
                  pad_token_id=0, seed=3)
    two, four = ours.generate(ids, slots=2, **kwargs), ours.generate(ids, slots=4, **kwargs)
    np.testing.assert_array_equal(two, four)
    assert not np.array_equal(two, ours.generate(ids, slots=2, **{**kwargs, "seed": 4}))


def test_what_continuous_batching_refuses(setup, tmp_path):
    _, ours, ids, mask, _, _ = setup
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="slots = .* is invalid: expected an integer >= 1"):
            ours.generate(ids, attention_mask=mask, max_new_tokens=2, slots=bad)
    with pytest.raises(ValueError, match="slots .continuous batching. is not supported for beam search"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=2, num_beams=2, slots=2)
    for bad, match in (([2] * 8, r"max_new_tokens: expected one int or one per prompt \(9\), got 8 values"),
                       ([2] * 8 + [0], r"max_new_tokens\[8\] = 0 is invalid: expected an integer >= 1"),
                       ([2] * 8 + [1.5], r"max_new_tokens\[8\] = 1.5 is invalid")):
        with pytest.raises(ValueError, match=match):
            ours.generate(ids, attention_mask=mask, max_new_tokens=bad)
    with pytest.raises(ValueError, match="max_new_tokens: one per prompt is supported with greedy search and "
                                         "sampling, not with num_beams = 2"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=list(OWN), num_beams=2)
    with pytest.raises(ValueError, match=r"min_new_tokens = 2 is invalid: expected at most every prompt's "
                                         r"max_new_tokens \(prompt 3's is 1\)"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=list(OWN), min_new_tokens=2)


def test_an_encoder_decoder_refills_its_slots_with_each_documents_encoding(tmp_path):
    """LED: a refilled slot runs the encoder on its document inside the loop; every summary equals static
    batching's (itself compared with transformers in tests/led), with rows stopping at different steps."""
    from tests.led import hf_led

    model = conversion.from_pretrained(save_hf(hf_led.hf_model("conditional_generation", init_std=0.2), tmp_path),
                                       progress=False)
    ids, mask = hf_led.batch(lengths=(13, 9, 11, 5, 12, 7, 3))
    first = np.zeros_like(ids)
    first[:, 0] = 1  # global attention on the first token, as LED's summaries
    kwargs = dict(attention_mask=mask, global_attention_mask=first, max_new_tokens=8, pad_token_id=1)
    free = model.generate(ids, eos_token_id=[], **kwargs)[:, 1:]
    eos = sorted({int(free[0, 1]), int(free[1, 3])})
    static = model.generate(ids, eos_token_id=eos, **kwargs)
    assert len({int((row != 1).sum()) for row in static}) > 1  # rows stop at different steps
    for slots in (2, 3):
        np.testing.assert_array_equal(model.generate(ids, eos_token_id=eos, slots=slots, **kwargs), static)
