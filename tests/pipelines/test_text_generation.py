"""text-generation against transformers 5.x's TextGenerationPipeline on the same directories (Llama, causal XLM).

Prompts of different lengths (the empty one included) run two to a batch, left-padded to one bucketed length, and
must give what transformers gives for each prompt alone (its pipeline runs one prompt at a time). Greedy and beam
search are compared token for token; sampling cannot draw torch's random numbers, so it is checked for
determinism, top_k=1 == greedy and shapes. Every prompt fits one bucket (8) and every batch has two rows, so each
generation setting compiles once.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest
import torch
from transformers.generation.stopping_criteria import StopStringCriteria

import conversion
from common.pipelines.stop_strings import first_stop, stops_as_matched, token_texts
from common.pipelines.text_generation import TextGeneration, continuous_queue
from tests.pipelines.checkpoints import checkpoint
from tests.pipelines.oracle import assert_same_result, hf_pipeline

VOCAB = 320  # tests.pipelines.checkpoints' tokenizers
HEADS = {"llama": "causal_lm", "xlm": "with_lm_head"}
# Llama's trained tokenizer puts <|begin_of_text|> and <|end_of_text|> last (checked in the fixture); XLM's
# text-generation checkpoints (xlm-clm-*) are causal.
OVERRIDES = {"llama": {"bos_token_id": VOCAB - 2, "eos_token_id": VOCAB - 1}, "xlm": {"causal": True}}
PROMPTS = ["If the", "The", "", "A list of"]  # 1 to 8 tokens in both tokenizers, all different lengths
NEW = 4
GREEDY = {"do_sample": False, "max_new_tokens": NEW}
LONGER = {"do_sample": False, "max_new_tokens": 2 * NEW, "eos_token_id": None}  # room to stop early (EOS off)
SAMPLE = {"max_new_tokens": NEW, "do_sample": True, "seed": 3}
# transformers 5.24's XLM generate with its default cache feeds the cache *and* the whole prefix at every step and
# drifts from the second new token on (a regression: see tests/xlm/test_xlm_generate.py); without the cache it
# runs XLM's own scheme (the prefix plus a mask token each step), which ours follows.
HF_EXTRA = {"llama": {}, "xlm": {"use_cache": False}}


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """family -> (directory, our pipeline (batch_size 2), transformers' pipeline, greedy settings with an EOS)."""
    out = {}
    for family, head in HEADS.items():
        directory = str(checkpoint(tmp_path_factory.mktemp(family), family, head, **OVERRIDES[family]))
        model = conversion.from_pretrained(directory, progress=False)
        tokenizer = model.spec.family.load_tokenizer(directory)
        if family == "llama":
            assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (VOCAB - 2, VOCAB - 1)
        lengths = [len(tokenizer(p)["input_ids"][0]) for p in PROMPTS]
        assert len(set(lengths)) == len(PROMPTS) and max(lengths) <= 8, lengths
        hf = hf_pipeline("text-generation", directory)
        out[family] = (directory, TextGeneration(model, tokenizer, batch_size=2), hf, greedy(hf, family, lengths))
    return out


def greedy(hf, family, prompt_lengths) -> dict:
    """Greedy settings whose EOS is a token the first prompt's continuation holds and another prompt's does not:
    rows stop at different steps, so a batch runs on after some of its prompts have stopped (transformers'
    one-prompt runs stop there). Chosen from transformers' continuations, as the tiny random model (its
    tokenizer's ids vary between trainings) gives them."""
    new = [hf(p, **GREEDY, return_tensors=True, **HF_EXTRA[family])[0]["generated_token_ids"][n:]
           for p, n in zip(PROMPTS, prompt_lengths)]
    eos = next((t for t in new[0] if any(t not in other for other in new[1:])), None)
    assert eos is not None, f"every prompt continues with the first prompt's tokens: {new}"
    return {**GREEDY, "eos_token_id": eos}


def compare(setup, family, inputs, **kwargs):
    _, ours, hf, _ = setup
    theirs = hf(inputs, **kwargs, **HF_EXTRA[family])
    assert_same_result(ours(inputs, **kwargs), theirs, str(kwargs))
    return theirs


@pytest.mark.parametrize("family", sorted(HEADS))
def test_greedy_equals_transformers(setups, family):
    settings = setups[family][3]
    out = compare(setups[family], family, PROMPTS, **settings, return_tensors=True)
    ids = [r[0]["generated_token_ids"] for r in out]
    assert len({len(x) for x in ids}) > 1 and len({tuple(x[-2:]) for x in ids}) > 1, ids  # EOS cut some rows
    compare(setups[family], family, PROMPTS, **settings)
    compare(setups[family], family, PROMPTS, **settings, return_full_text=False)


@pytest.mark.parametrize("family", sorted(HEADS))
def test_beam_search_equals_transformers(setups, family):
    out = compare(setups[family], family, PROMPTS, **setups[family][3], num_beams=2, num_return_sequences=2,
                  return_full_text=False)
    assert all(len(r) == 2 for r in out)


def test_one_prompt_prefix_and_pipeline_defaults(setups):
    _, ours, hf, settings = setups["llama"]
    compare(setups["llama"], "llama", PROMPTS[0], **settings, return_tensors=True)  # one prompt: one list
    compare(setups["llama"], "llama", PROMPTS[:2], **settings, prefix="A ")
    pipe = TextGeneration(ours.model, ours.tokenizer, batch_size=2, **settings)
    assert_same_result(pipe(PROMPTS), hf(PROMPTS, **settings))


def test_sampling_is_seeded_and_top_k_1_is_greedy(setups):
    _, ours, _, settings = setups["llama"]
    # do_sample unset: the pipeline's default (sampling at temperature 0.7, as transformers' pipeline)
    first = ours(PROMPTS, max_new_tokens=NEW, num_return_sequences=2, seed=3)
    assert all(len(r) == 2 and all(set(x) == {"generated_text"} for x in r) for r in first)
    assert ours(PROMPTS, max_new_tokens=NEW, num_return_sequences=2, seed=3) == first
    assert ours(PROMPTS, max_new_tokens=NEW, num_return_sequences=2, seed=3, do_sample=True,
                temperature=0.7) == first
    assert ours(PROMPTS, **{**settings, "do_sample": True}, top_k=1, seed=5) == ours(PROMPTS, **settings)


def printable_texts(tokenizer) -> dict:
    """id -> the token's text as stop strings are matched, where it is whole printable characters (the tiny models
    emit many raw bytes)."""
    out = {}
    for i, text in token_texts(tokenizer).items():
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        if text and text.isprintable() and "\ufffd" not in text:
            out[i] = text
    return out


def split_characters(rows, table) -> tuple:
    """The characters whose UTF-8 bytes two consecutive tokens of ``rows`` share (byte-level tables: the tiny
    Llama emits raw bytes), as stop strings over two tokens that no token's text holds."""
    found = []
    for row in rows:
        for a, b in zip(row, row[1:]):
            if isinstance(table[a], bytes) and table[a] and table[b]:
                try:
                    table[a].decode("utf-8")
                except UnicodeDecodeError:
                    try:
                        found.append((table[a] + table[b]).decode("utf-8"))
                    except UnicodeDecodeError:
                        pass
    return tuple(found)


@pytest.mark.parametrize("family", sorted(HEADS))
def test_stop_strings_equal_transformers(setups, family):
    """Stop strings taken from transformers' own continuations (a generated token's text, a proper suffix of one, a
    proper prefix of one (the stop string ends inside the token), one running over two tokens' texts and, for
    Llama's bytes, a character split over two tokens), so that rows stop mid-generation at different steps."""
    _, ours, hf, _ = setups[family]
    free = hf(PROMPTS, **LONGER, return_tensors=True, **HF_EXTRA[family])
    texts = printable_texts(ours.tokenizer)

    def printable(i):
        return texts.get(i)

    def letters(i):
        return printable(i) if printable(i) and printable(i).strip().isalpha() else None

    starts = [len(ours.tokenizer(p)["input_ids"][0]) for p in PROMPTS]
    new = [r[0]["generated_token_ids"][n:] for r, n in zip(free, starts)]
    one = next(letters(t).strip() for row in new for t in row[1:] if letters(t))
    long = [printable(t) for row in new for t in row[:-1] if printable(t) and len(printable(t)) >= 2]
    assert long, new
    suffix, inside = long[0][1:], long[-1][:-1]  # the token's text less its first / last character
    # the last character of one token and the whole text of the next: a stop string over two tokens
    two = next(printable(a)[-1] + letters(b) for row in new for a, b in zip(row, row[1:])
               if printable(a) and letters(b))
    for stop in (one, suffix, inside) + split_characters(new, token_texts(ours.tokenizer))[:1]:
        stopped = compare(setups[family], family, PROMPTS, **LONGER, stop_sequence=stop, return_tensors=True)
        cut = [len(r[0]["generated_token_ids"]) < len(f[0]["generated_token_ids"]) for r, f in zip(stopped, free)]
        assert any(cut), (stop, new)  # a row stopped early
    # generate's stop_strings: transformers needs its tokenizer passed along, ours takes it as given or not
    theirs = hf(PROMPTS, **LONGER, stop_strings=[two, "never seen"], tokenizer=hf.tokenizer, **HF_EXTRA[family])
    assert_same_result(ours(PROMPTS, **LONGER, stop_strings=[two, "never seen"]), theirs)
    assert_same_result(ours(PROMPTS, **LONGER, stop_strings=[two, "never seen"], tokenizer=hf.tokenizer), theirs)
    compare(setups[family], family, PROMPTS, **{**LONGER, "eos_token_id": setups[family][3]["eos_token_id"]},
            stop_sequence=[one, two])  # with an EOS too
    compare(setups[family], family, PROMPTS[3], **LONGER, stop_sequence=PROMPTS[3])  # the prompt's own text


def test_stop_string_rule_equals_transformers_criteria(setups):
    """Our token texts equal those transformers' StopStringCriteria matches on, and the first stop our rule finds
    is the first step at which the criteria (called as generate calls it, after each new token) says stop, for
    stop strings made of token texts, their suffixes and prefixes, over sequences rich in their tokens and in ids
    past the vocabulary."""
    rng = random.Random(0)
    for family in sorted(HEADS):
        _, ours, hf, _ = setups[family]
        mode = StopStringCriteria._get_stop_string_matching_mode(hf.tokenizer)
        theirs = dict(zip(*reversed(StopStringCriteria.clean_tokenizer_vocab(hf.tokenizer,
                                                                            stop_string_matching_mode=mode))))
        table = token_texts(ours.tokenizer)
        assert table == theirs
        texts = printable_texts(ours.tokenizer)
        words = sorted(t for t in texts.values() if len(t) >= 2)
        hits = 0
        for _ in range(40):
            a, b = rng.sample(words, 2)
            stops = [a[rng.randrange(len(a)):] + b[:rng.randrange(1, len(b) + 1)], a[1:], b[:-1]][:rng.randrange(1, 4)]
            pool = [i for i, t in texts.items() if any(t in x or x in t for x in stops)] or list(texts)
            ids = [rng.choice(pool) if rng.random() < 0.7 else rng.randrange(VOCAB + 3) for _ in range(10)]
            start = rng.randrange(5)
            criteria = StopStringCriteria(hf.tokenizer, stops)
            expected = next((k for k in range(start, len(ids)) if criteria(torch.tensor([ids[:k + 1]]), None)[0]),
                            None)
            assert first_stop(ids, start, stops_as_matched(stops, table), table) == expected, (stops, ids, start)
            hits += expected is not None
        assert 10 < hits < 40, hits
        # an id past the vocabulary has no text: a stop string does not run over it
        a, b = (next(i for i, t in texts.items() if t == w) for w in words[:2])
        ids, stop = [a, VOCAB + 2, b], stops_as_matched([words[0] + words[1]], table)
        assert first_stop(ids, 1, stop, table) is None
        assert first_stop([a, b], 1, stop, table) == 1


def test_stop_strings_and_eos_from_generation_config(setups, tmp_path):
    """generation_config.json's stop_strings apply when the call gives none (transformers applies them when its
    generate gets the tokenizer); the call's stop_strings=None switches them off and eos_token_id=None the file's
    EOS, as there."""
    directory, ours, _, settings = setups["llama"]
    texts = printable_texts(ours.tokenizer)
    free = ours(PROMPTS, **LONGER, return_tensors=True)
    new = [r[0]["generated_token_ids"][len(ours.tokenizer(p)["input_ids"][0]):] for r, p in zip(free, PROMPTS)]
    stop = next(texts[t] for row in new[1:] for t in row[1:] if t in texts)
    saved = shutil.copytree(directory, tmp_path / "saved")
    config = json.loads((saved / "generation_config.json").read_text())
    config.update(stop_strings=[stop], eos_token_id=settings["eos_token_id"])  # greedy()'s EOS: emitted mid-way
    (saved / "generation_config.json").write_text(json.dumps(config))
    model = conversion.from_pretrained(saved, progress=False)
    pipe = TextGeneration(model, model.spec.family.load_tokenizer(saved), batch_size=2)
    hf = hf_pipeline("text-generation", str(saved))
    for call in ({}, {"eos_token_id": None}, {"stop_strings": None}):
        kwargs = {"do_sample": False, "max_new_tokens": 2 * NEW, "return_tensors": True, **call}
        theirs = hf(PROMPTS, **kwargs, tokenizer=hf.tokenizer)
        assert_same_result(pipe(PROMPTS, **kwargs), theirs, str(call))
        assert theirs != free
    with pytest.raises(ValueError, match=r"generation_config.json's stop_strings: stop strings are supported with "
                                         r"greedy search and sampling, not with num_beams=2 \(stop_strings=None"):
        pipe(PROMPTS, do_sample=False, num_beams=2)


def test_a_stopped_row_is_padded_with_an_eos_and_runs_on_without(setups):
    """num_return_sequences=2: a row that meets a stop string while the other row of its prompt goes on gets the
    pad token after it when an EOS is set and keeps its own later tokens when EOS is off, as transformers (which
    pads finished rows only when it has an EOS criterion); up to its stop, it is what it is without stop strings."""
    _, ours, _, _ = setups["llama"]
    texts = printable_texts(ours.tokenizer)
    sample = {**SAMPLE, "num_return_sequences": 2, "return_tensors": True}
    free = ours(PROMPTS, **sample)  # the checkpoint's EOS (VOCAB - 1), which the tiny model does not emit
    assert all(VOCAB - 1 not in x["generated_token_ids"] for r in free for x in r)
    starts = [len(ours.tokenizer(p)["input_ids"][0]) for p in PROMPTS]
    stop = next(texts[t] for r, n in zip(free, starts) for t in r[0]["generated_token_ids"][n:-1] if t in texts)
    padded, running = ours(PROMPTS, **sample, stop_sequence=stop), ours(PROMPTS, **sample, eos_token_id=None,
                                                                        stop_sequence=stop)
    assert running == [[{"generated_token_ids": x["generated_token_ids"][:len(y["generated_token_ids"])]}
                        for x, y in zip(f, p)] for f, p in zip(free, padded)]
    filled = 0
    for group, kept in zip(padded, running):
        for row, whole in zip(group, kept):
            row, whole = row["generated_token_ids"], whole["generated_token_ids"]
            end = next((k for k in range(len(row)) if row[k:] == [VOCAB - 1] * (len(row) - k)), len(row))
            assert row[:end] == whole[:end]
            filled += end < len(row)
    assert filled, (stop, padded)


def test_continuous_batching_gives_static_batchings_texts_and_draws_per_prompt(setups):
    """Llama's prompts through two slots, refilled as rows end (continuous=True; the default for more prompts
    than batch_size, compared with transformers above) give static batching's texts (continuous=False), and
    sampled draws depend neither on the slot count nor on continuous batching."""
    _, ours, _, settings = setups["llama"]
    static = ours(PROMPTS, **settings, continuous=False)
    assert ours(PROMPTS, **settings, continuous=True) == ours(PROMPTS, **settings) == static
    assert ours(PROMPTS, **settings, continuous=True, return_tensors=True) == \
        ours(PROMPTS, **settings, continuous=False, return_tensors=True)
    one_slot = TextGeneration(ours.model, ours.tokenizer, batch_size=1, continuous=True)
    assert one_slot(PROMPTS, **SAMPLE) == ours(PROMPTS, **SAMPLE, continuous=True) == \
        ours(PROMPTS, **SAMPLE, continuous=False)
    for bad in ("yes", 1):
        with pytest.raises(ValueError, match="continuous: expected True or False or None, got"):
            ours(PROMPTS, **settings, continuous=bad)


@pytest.mark.parametrize("family", sorted(HEADS))
def test_each_prompt_stops_at_its_own_max_new_tokens(setups, family):
    """Prompts given as {"text", "max_new_tokens"} share batches that run to the largest (8, as LONGER's: the
    same programs) and each gets what transformers gives it alone with its own max; a plain prompt takes the
    call's. Llama also through continuous batching, and beam search (which batches prompts of one max)."""
    _, ours, hf, _ = setups[family]
    own = {"If the": 8, "The": 8, "": 2, "A list of": 5}
    inputs = [{"text": p, "max_new_tokens": own[p]} for p in PROMPTS[:3]] + [PROMPTS[3]]
    kwargs = {**LONGER, "max_new_tokens": own[PROMPTS[3]], "return_tensors": True}
    theirs = [hf(p, **{**kwargs, "max_new_tokens": own[p]}, **HF_EXTRA[family]) for p in PROMPTS]
    assert len({len(r[0]["generated_token_ids"]) - len(ours.tokenizer(p)["input_ids"][0])
                for r, p in zip(theirs, PROMPTS)}) == 3
    for continuous in ([False, True] if family == "llama" else [False]):
        assert_same_result(ours(inputs, **kwargs, continuous=continuous), theirs, f"continuous={continuous}")
    if family == "llama":
        beams = {**kwargs, "num_beams": 2}
        assert_same_result(ours(inputs[1:3], **beams), [hf(p, **{**beams, "max_new_tokens": own[p]})
                                                        for p in PROMPTS[1:3]], "beam search")


def test_continuous_queue_order():
    """The slots' first wave is the longest prompts; the rest enter longest max_new_tokens first (ties: longer
    prompts first)."""
    assert continuous_queue([0, 1, 2, 3, 4, 5], [5, 9, 1, 9, 3, 2], slots=2) == [5, 4, 3, 1, 0, 2]
    assert continuous_queue([0, 1], [3, 3], slots=4) == [1, 0]


def test_sampled_draws_do_not_depend_on_the_batch(setups):
    """XLM's static batches: each prompt draws from its own stream (the seed and its index in the call), so
    batch_size 1 and 2 give the same samples, and another seed others."""
    _, ours, _, _ = setups["xlm"]
    alone = TextGeneration(ours.model, ours.tokenizer, batch_size=1)
    samples = ours(PROMPTS, **SAMPLE)
    assert alone(PROMPTS, **SAMPLE) == samples
    assert ours(PROMPTS, **{**SAMPLE, "seed": 4}) != samples


def test_bad_streams(setups):
    """model.generate's streams (what the pipeline passes: each prompt's random stream) are checked, with or
    without slots."""
    model = setups["llama"][1].model
    ids = [[5, 6], [7, 8]]
    for slots in (None, 2):
        for bad, match in (([0], r"one int per prompt \(2\), got an array of shape \(1,\)"),
                           ([0.0, 1.0], "one int per prompt .* dtype float64"),
                           ([0, -1], r"ints in \[0, 2147483648\), got -1 .. 0")):
            with pytest.raises(ValueError, match=f"streams: expected {match}"):
                model.generate(ids, max_new_tokens=2, do_sample=True, slots=slots, streams=bad)


def test_bad_stop_strings(setups):
    _, ours, _, _ = setups["llama"]
    for name in ("stop_sequence", "stop_strings"):
        for bad in ("", [], [""], ["a", 3], 3, b"x"):
            with pytest.raises(ValueError, match=f"{name}: expected a non-empty str or a non-empty list"):
                ours("Hi", **GREEDY, **{name: bad})
    with pytest.raises(ValueError, match="stop_strings: stop strings are supported with greedy search and "
                                         "sampling, not with num_beams=2"):
        ours("Hi", **GREEDY, num_beams=2, stop_strings="x")


def test_bad_inputs(setups):
    _, ours, _, _ = setups["llama"]
    chat = [{"role": "user", "content": "Hi"}]
    with pytest.raises(ValueError, match=r"inputs: chat messages .* not supported.*expected a plain-text prompt"):
        ours(chat, **GREEDY)
    with pytest.raises(ValueError, match=r"inputs\[1\]: chat messages"):
        ours(["Hi", chat], **GREEDY)
    with pytest.raises(ValueError, match=r"inputs\[0\]: expected a str \(a prompt\) or a \{\"text\", "
                                         r"\"max_new_tokens\"\} dict \(a prompt with its own max\), got int 3"):
        ours([3], **GREEDY)
    for bad, match in (({"prompt": "Hi"}, r"inputs: expected a \{\"text\", \"max_new_tokens\"\} dict .* "
                                          r"got keys \['prompt'\]"),
                       ({"text": 3}, r"inputs\['text'\]: expected a str \(a prompt\), got int 3"),
                       ({"text": "Hi", "max_new_tokens": 0}, r"inputs\['max_new_tokens'\]: expected an int >= 1, "
                                                             r"got int 0")):
        with pytest.raises(ValueError, match=match):
            ours(bad, **GREEDY)
    with pytest.raises(ValueError, match=r"num_return_sequences = 3 is invalid: expected an integer in "
                                         r"\[1, num_beams=2\]"):
        ours("Hi", **GREEDY, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match=r"max_new_tokens: expected an int >= 1, got int 0"):
        ours("Hi", do_sample=False, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"return_text: mutually exclusive with return_full_text"):
        ours("Hi", **GREEDY, return_full_text=False, return_text=True)
    with pytest.raises(ValueError, match=r"return_full_text: mutually exclusive with return_tensors"):
        ours("Hi", **GREEDY, return_full_text=False, return_tensors=True)
    with pytest.raises(ValueError, match=r"text-generation: unexpected option \['max_tokens'\] \(call\)"):
        ours("Hi", max_tokens=3)


def test_a_head_that_cannot_generate_is_refused(tmp_path):
    directory = str(checkpoint(tmp_path, "llama", "sequence_classification"))
    model = conversion.from_pretrained(directory, progress=False)
    with pytest.raises(ValueError, match=r"task 'text-generation' cannot run on a LlamaForSequenceClassification: "
                                         r"it needs .*LlamaForCausalLM.*XLMWithLMHeadModel"):
        TextGeneration(model, model.spec.family.load_tokenizer(directory))
