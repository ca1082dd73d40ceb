"""LEDForConditionalGeneration.generate against transformers' generate(): token for token.

The encoder batch is right-padded, with a different number of global tokens per row. EOS sets are made of
tokens the model emits early (from an EOS-free run), so hypotheses finish at different steps and the stopping
rules, the pad filler and the length penalty all decide the output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import conversion
from common.sharding import make_mesh
from tests.factory import save_hf
from tests.led.hf_led import batch, hf_model

NEW = 10


def globals_for(mask):
    g = np.zeros_like(mask)
    g[0, [0, 5]] = 1
    g[2, 3] = 1  # row 1: none
    return g


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # A tiny model's step is microseconds of math: torch's intra-op threads only add hand-off.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # At the default init_std a tiny random LED repeats one token whatever the input; a larger one gives
    # inputs-dependent, varied continuations (checked below), so the comparison can fail.
    hf = hf_model("conditional_generation", seed=3, init_std=1.0)
    directory = save_hf(hf, tmp_path_factory.mktemp("led_gen"))
    ours = conversion.from_pretrained(directory, progress=False)
    ids, mask = batch()
    inputs = dict(input_ids=ids, attention_mask=mask, global_attention_mask=globals_for(mask))
    free = hf_generate(hf, inputs, num_beams=4, eos_token_id=None)[:, 1:]
    assert len(np.unique(free)) >= 5 and len({tuple(row) for row in free}) == 3
    eos = {"second": sorted({int(free[r, 1]) for r in range(3)}),
           "mixed": sorted({int(free[1, 0]), int(free[0, 2]), int(free[2, 3])})}
    yield hf, ours, inputs, eos, directory
    torch.set_num_threads(threads)


def hf_generate(hf, inputs, **kw):
    kw.setdefault("max_new_tokens", NEW)
    with torch.no_grad():
        return hf.generate(**{k: torch.as_tensor(v) for k, v in inputs.items()}, do_sample=False, **kw).numpy()


def check(model, hf, inputs, **kw):
    ref = hf_generate(hf, inputs, **kw)
    got = model.generate(**inputs, max_new_tokens=kw.pop("max_new_tokens", NEW), **kw)
    np.testing.assert_array_equal(got, ref)
    return ref


@pytest.mark.parametrize("eos", [None, "second"])
def test_greedy_matches_hf(setup, eos):
    hf, ours, inputs, eos_sets, _ = setup
    kw = {} if eos is None else dict(eos_token_id=eos_sets[eos], pad_token_id=0)
    ref = check(ours, hf, inputs, **kw)
    assert (ref[:, 0] == 2).all()  # decoder_start_token_id leads, as in HF
    if eos is not None:
        assert ref.shape[1] < 1 + NEW  # every row stopped early


@pytest.mark.parametrize("kw", [
    dict(num_beams=2, eos="second"),
    dict(num_beams=4, eos="mixed"),
    dict(num_beams=4, eos="mixed", length_penalty=-1.0, num_return_sequences=2),
    dict(num_beams=4, eos="second", early_stopping=True, length_penalty=2.0),
    dict(num_beams=2, eos="mixed", no_repeat_ngram_size=2, min_new_tokens=4, early_stopping="never"),
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_beam_search_matches_hf(setup, kw):
    hf, ours, inputs, eos_sets, _ = setup
    kw = dict(kw, eos_token_id=eos_sets[kw.pop("eos")])
    check(ours, hf, inputs, **kw)


def test_forced_tokens_and_min_length_from_generation_config(setup, tmp_path):
    """forced_bos / forced_eos (BART-style checkpoints set them) and min_length (counting the decoder start),
    read from generation_config.json as HF reads them."""
    hf, _, inputs, _, directory = setup
    settings = {"forced_bos_token_id": 0, "forced_eos_token_id": 2, "min_length": 4}
    (tmp_path / "m").mkdir()
    for f in directory.iterdir():
        (tmp_path / "m" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps(settings))
    ours = conversion.from_pretrained(tmp_path / "m", progress=False)
    for beams in (1, 3):
        for new in (NEW, 5):
            ref = hf_generate(hf, inputs, num_beams=beams, max_new_tokens=new, **settings)
            np.testing.assert_array_equal(ours.generate(**inputs, num_beams=beams, max_new_tokens=new), ref)
            assert (ref[:, 1] == 0).all()  # forced bos
            assert not (ref[:, 1:4] == 2).any()  # no eos before min_length


def test_per_layer_windows_deeper_decoder_and_inferred_mask(tmp_path):
    """A per-layer window list and a decoder deeper than the encoder (the cache and the cross keys have a layer
    the encoder lacks); without attention_mask every encoder token is attended, pads included (HF 5.x infers the
    mask from pad tokens for decoder-only models only)."""
    hf = hf_model("conditional_generation", seed=3, init_std=1.0, attention_window=[8, 4], decoder_layers=3)
    ours = conversion.from_pretrained(save_hf(hf, tmp_path / "m"), progress=False)
    ids, _ = batch(lengths=(45, 6))  # past the decoder's 40 positions: only the encoder's 64 bound it
    check(ours, hf, dict(input_ids=ids), num_beams=2)
    check(ours, hf, dict(input_ids=ids))


def test_sampling_returns_seeded_rows_per_prompt(setup):
    _, ours, inputs, _, _ = setup
    a = ours.generate(**inputs, max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=1)
    b = ours.generate(**inputs, max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape[0] == 9
    greedy = ours.generate(**inputs, max_new_tokens=6)
    top1 = ours.generate(**inputs, max_new_tokens=6, do_sample=True, top_k=1, num_return_sequences=2)
    np.testing.assert_array_equal(top1, np.repeat(greedy, 2, axis=0))


def test_sharded_generate_equals_unsharded(setup):
    hf, ours, inputs, _, directory = setup
    sharded = conversion.from_pretrained(directory, mesh=make_mesh(1, 2, 4), progress=False)
    for beams in (1, 2):
        np.testing.assert_array_equal(sharded.generate(**inputs, num_beams=beams, max_new_tokens=6),
                                      ours.generate(**inputs, num_beams=beams, max_new_tokens=6))


def test_bad_generate_inputs(setup, tmp_path):
    hf, ours, inputs, _, _ = setup
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    on_pad = np.zeros_like(mask)
    on_pad[1, -1] = 1
    with pytest.raises(ValueError, match="global_attention_mask marks padding"):
        ours.generate(ids, attention_mask=mask, global_attention_mask=on_pad)
    with pytest.raises(ValueError, match="unexpected arguments \\['decoder_mask'\\].*global_attention_mask"):
        ours.generate(ids, decoder_mask=mask)
    with pytest.raises(ValueError, match="decoder prompt length 1 \\+ max_new_tokens 40 is past the decoder's "
                       "max_decoder_position_embeddings=40"):
        ours.generate(ids, attention_mask=mask, max_new_tokens=40)
    with pytest.raises(ValueError, match="input_ids has length 70, padded to 72 .* past max_encoder_position"):
        ours.generate(np.full((1, 70), 5))
    with pytest.raises(ValueError, match="global_attention_mask has shape"):
        ours.generate(ids, attention_mask=mask, global_attention_mask=mask[:, :-1])
    with pytest.raises(ValueError, match="forced_eos_token_id = 99"):
        ours.generate(ids, attention_mask=mask, forced_eos_token_id=99)
    classifier = conversion.from_pretrained(save_hf(hf_model("question_answering"), tmp_path / "qa"),
                                            progress=False)
    with pytest.raises(ValueError, match="not a generative head"):
        classifier.generate(ids)
