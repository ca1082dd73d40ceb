"""XLMWithLMHeadModel.generate against transformers' generate(): token for token.

HF generates with XLM by rerunning the model over the prefix plus one mask token each step (the language of
every position set to config.lang_id); ours runs the same computation through the common generation loop,
for bidirectional (mlm) and causal (clm) configs, greedy and beam search. EOS sets are tokens the model emits
mid-way, so rows stop at different steps and get HF's pad filler.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conversion
from tests.factory import save_hf
from tests.xlm.hf_xlm import VARIANTS, hf_model

NEW = 10
PROMPTS = np.array([[0, 5, 17, 33, 8], [0, 44, 12, 9, 71], [0, 3, 3, 60, 90]])


@pytest.fixture(scope="module", params=["base", "causal", "one_language"])
def setup(request, tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # At the default init a tiny random XLM repeats one token whatever the prompt; larger weights give varied,
    # prompt-dependent continuations (checked), so the comparison can fail.
    hf = hf_model("with_lm_head", seed=3, embed_init_std=1.0, init_std=1.0, **VARIANTS[request.param])
    ours = conversion.from_pretrained(save_hf(hf, tmp_path_factory.mktemp("xlm_gen")), progress=False)
    free = hf_generate(hf, eos_token_id=None)[:, PROMPTS.shape[1]:]
    assert len(np.unique(free)) >= 4 and len({tuple(row) for row in free}) == 3, free
    eos = sorted({int(free[0, 2]), int(free[1, 4])})
    yield hf, ours, eos, request.param
    torch.set_num_threads(threads)


def hf_generate(hf, **kw):
    """transformers' generate without its cache. From 5.24 on, XLM's generate with the default cache feeds the
    cache *and* the whole prefix + mask slot at every step, and drifts from the second new token on (a regression
    in transformers: XLM's own forward reruns the prefix each step and has no incremental path). With
    use_cache=False it runs exactly XLM's scheme, the prefix plus a mask token every step, which ours follows."""
    kw.setdefault("max_new_tokens", NEW)
    kw.setdefault("use_cache", False)
    with torch.no_grad():
        return hf.generate(torch.as_tensor(PROMPTS), do_sample=False, **kw).numpy()


def check(model, hf, **kw):
    ref = hf_generate(hf, **kw)
    got = model.generate(PROMPTS, max_new_tokens=kw.pop("max_new_tokens", NEW), **kw)
    np.testing.assert_array_equal(got, ref)
    return ref


def test_greedy(setup):
    hf, ours, eos, variant = setup
    if variant == "base":  # the checkpoint's own EOS (host-side settings, the same under any config)
        check(ours, hf, eos_token_id=None)
    out = check(ours, hf, eos_token_id=eos)
    assert (out == ours.config.pad_token_id).any()  # some rows stopped early and were padded


def test_beam_search(setup):
    """More beams than returned sequences, and a length penalty, in one compiled search: what is XLM's own in
    beam search (the prefix rerun, the cache reorder) is the same under any beam settings, which
    test_beam_search.py varies one by one."""
    hf, ours, eos, _ = setup
    check(ours, hf, eos_token_id=eos, num_beams=3, num_return_sequences=2, length_penalty=2.0)


def test_left_padding_and_sampling(setup):
    """A left-padded prompt continues as it does alone (HF's XLM has no padded generation to compare with:
    it infers a right-padded mask), and the rows beside it are unaffected; top_k=1 sampling is greedy. No EOS,
    so every row runs all NEW steps; the padded batch has PROMPTS' shape, so the greedy run reuses its loop."""
    _, ours, _, variant = setup
    alone = ours.generate(PROMPTS[1:2, 2:], max_new_tokens=NEW, eos_token_id=[])
    padded = PROMPTS.copy()
    padded[1, :2] = ours.config.pad_token_id
    mask = (np.arange(5)[None] >= np.array([[0], [2], [0]])).astype(np.int32)
    both = ours.generate(padded, attention_mask=mask, max_new_tokens=NEW, eos_token_id=[])
    np.testing.assert_array_equal(both[1, 5:], alone[0, 3:])
    greedy = ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=[])
    np.testing.assert_array_equal(both[[0, 2]], greedy[[0, 2]])
    if variant == "base":  # sampling shares greedy's model steps: its XLM path is the same under any config
        np.testing.assert_array_equal(ours.generate(PROMPTS, max_new_tokens=NEW, eos_token_id=[], do_sample=True,
                                                    top_k=1, seed=7), greedy)


def test_generate_bounds(setup):
    _, ours, _, _ = setup
    with pytest.raises(ValueError, match="max_position_embeddings|max_new_tokens"):
        ours.generate(PROMPTS, max_new_tokens=64)
