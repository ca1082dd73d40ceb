"""text-generation: continue plain-text prompts, as transformers 5.x's TextGenerationPipeline.

One prompt -> [{"generated_text": ...}] (num_return_sequences entries); a list -> a list of those. As transformers
5.x: the prompt is tokenized with the tokenizer's special tokens, the new tokens (everything after the prompt's ids)
are decoded alone and, for return_full_text (the default), appended to the prompt text as given; return_tensors
gives {"generated_token_ids": prompt + new ids} instead. Chat messages are not supported. Ours: a prompt may come
as {"text": ..., "max_new_tokens": k}, its own max over the call's (a JSON Lines job's line can carry it): prompts
of different maxes share batches, each row stopping at its own as at an EOS (beam search batches prompts of one max).

Prompts of different lengths are left-padded to bucketed lengths (common.pipelines.batching.padded_length) and
generated together; the model's generate masks the padding and counts positions from each row's first real token,
so every prompt gets the tokens it gets alone. A call with more prompts than batch_size runs its greedy and sampled
prompts (Llama) through one continuous-batching loop of batch_size slots (``model.generate(..., slots=)``,
left-padded to the longest's bucketed length; a finished row's slot takes the next prompt at once; queue order:
continuous_queue): 1.8-2.2x the prompts/s of static batches on a 2-core CPU when rows stop at scattered points
(benchmarks/README.md). Our option ``continuous`` forces it (True) or static batches of batch_size (False); beam
search and XLM always run in static batches. The early stop transformers makes per prompt (when every returned sequence of that prompt has met
EOS or a stop string) is restored by cutting each prompt's group after its longest sequence.

Stop strings (``stop_sequence``, else generate's ``stop_strings``, else generation_config.json's; transformers'
``tokenizer=`` is accepted and not needed) stop a row after the token inside which one ends (the stop string stays
in the text), as transformers' StopStringCriteria (common.pipelines.stop_strings): a stop string the prompt holds
stops nothing, one a new token completes (or completes and runs past) does. A row's tokens up to its stop do not
depend on whether it stops, so rows are cut after generation; as transformers, a stopped row of a prompt whose other
returned sequences go on is padded when an EOS is set, and keeps its own later tokens when EOS is off
(``eos_token_id=None``). Greedy search and sampling only: beam search would finish other hypotheses, and
``num_beams`` > 1 with stop strings is refused.

Sampling draws each prompt's tokens from its own random stream (the seed and the prompt's index in the call), so a
prompt's samples do not depend on batch_size, continuous batching or the lengths of the other prompts.
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import UNSET, Encoded, Pipeline
from common.pipelines.batching import bucket, padded_length
from common.pipelines.stop_strings import first_stop, stops_as_matched, token_texts
from common.tokenization import describe, pad_rows

# transformers' TextGenerationPipeline._default_generation_config: what the pipeline uses where neither the call
# nor the checkpoint's generation_config.json sets it (temperature only when sampling).
PIPELINE_DEFAULTS = {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7}

# the options passed to model.generate as given (None there: generation_config.json, then HF's defaults)
GENERATE_OPTIONS = ("top_k", "top_p", "num_beams", "num_return_sequences", "min_new_tokens",
                    "no_repeat_ngram_size", "length_penalty", "early_stopping")


class TextGeneration(Pipeline):
    task = "text-generation"
    heads = ("causal_lm", "with_lm_head")
    options = {"max_new_tokens": UNSET, "do_sample": UNSET, "temperature": UNSET, "eos_token_id": UNSET,
               "pad_token_id": UNSET, **{name: UNSET for name in GENERATE_OPTIONS},
               "return_full_text": None, "return_text": None, "return_tensors": None, "prefix": "",
               "add_special_tokens": True, "skip_special_tokens": True, "stop_sequence": None, "stop_strings": UNSET,
               "tokenizer": None,  # what transformers' generate needs with stop_strings; ours has its own
               "seed": 0,  # sampling's random stream (ours is JAX's: it cannot equal torch's)
               # ours: continuous batching for greedy / sampling; None: when the call has more prompts than batch_size
               "continuous": None}
    input_description = 'a str (a prompt) or a {"text", "max_new_tokens"} dict (a prompt with its own max)'
    can_warm_up = False
    _token_texts = None  # each token's text as stop strings are matched (stop_strings.token_texts), when needed

    # ------------------------------------------------------------------------------------ options
    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        opts["return_type"] = return_type(opts["return_full_text"], opts["return_text"], opts["return_tensors"])
        if not isinstance(opts["prefix"], str):
            raise ValueError(f"prefix: expected a str, got {describe(opts['prefix'])}")
        for name in ("add_special_tokens", "skip_special_tokens"):
            if not isinstance(opts[name], bool):
                raise ValueError(f"{name}: expected True or False, got {describe(opts[name])}")
        if opts["continuous"] is not None and not isinstance(opts["continuous"], bool):
            raise ValueError(f"continuous: expected True or False or None, got {describe(opts['continuous'])}")
        opts["generate"] = self.generate_settings(opts)
        opts["stops"] = self.stop_strings(opts)
        return opts

    def stop_strings(self, opts: dict) -> list | None:
        """The call's stop strings (``stop_sequence`` wins over ``stop_strings``, as transformers; without either,
        generation_config.json's), in the unit the tokenizer's texts are matched in; None when there are none."""
        if opts["stop_sequence"] is not None:
            name, stops = "stop_sequence", opts["stop_sequence"]
        elif opts["stop_strings"] is not UNSET:
            name, stops = "stop_strings", opts["stop_strings"]
        else:
            name, stops = "generation_config.json's stop_strings", self.model.generation_config.get("stop_strings")
        if stops is None:
            return None
        stops = [stops] if isinstance(stops, str) else stops
        if not isinstance(stops, (list, tuple)) or not stops or not all(isinstance(x, str) and x for x in stops):
            raise ValueError(f"{name}: expected a non-empty str or a non-empty list of them, got {describe(stops)}")
        if self.beams(opts["generate"]) > 1:
            raise ValueError(f"{name}: stop strings are supported with greedy search and sampling, not with "
                             f"num_beams={self.beams(opts['generate'])}"
                             + ("" if name in opts else " (stop_strings=None drops the file's)"))
        if self._token_texts is None:
            self._token_texts = token_texts(self.tokenizer)
        return stops_as_matched(list(stops), self._token_texts)

    def fill_token(self, settings: dict) -> int:
        """The token model.generate writes after a finished row: the pad id (the call's, generation_config.json's,
        the config's), else the first EOS id."""
        gc = self.model.generation_config
        for pad in (settings["pad_token_id"], gc.get("pad_token_id"), getattr(self.config, "pad_token_id", None)):
            if pad is not None:
                return int(pad)
        eos = settings["eos_token_id"]
        eos = gc.get("eos_token_id", getattr(self.config, "eos_token_id", None)) if eos is None else eos
        eos = eos if isinstance(eos, (list, tuple)) else [eos]
        return int(eos[0]) if eos and eos[0] is not None else 0

    def beams(self, settings: dict) -> int:
        return settings["num_beams"] or self.model.generation_config.get("num_beams") or 1

    def generate_settings(self, opts: dict) -> dict:
        """model.generate's keyword arguments, with transformers' pipeline precedence: the call (and the
        pipeline's own options), then generation_config.json, then PIPELINE_DEFAULTS; max_new_tokens may stay
        None, when generation_config.json sets max_length instead (a total length: see max_new_tokens)."""
        given = {k: v for k, v in opts.items() if v is not UNSET}
        saved = self.model.generation_config

        def pick(name):
            return given[name] if name in given else saved.get(name, PIPELINE_DEFAULTS.get(name))

        sample = bool(pick("do_sample"))
        settings = {name: given.get(name) for name in GENERATE_OPTIONS}
        # eos_token_id=None switches EOS off, as in transformers' generate ([] in model.generate)
        eos = given.get("eos_token_id", UNSET)
        settings.update(do_sample=sample, temperature=pick("temperature") if sample else None,
                        eos_token_id=None if eos is UNSET else ([] if eos is None else eos), seed=opts["seed"])
        new = (given.get("max_new_tokens") if "max_length" in saved and "max_new_tokens" not in saved
               else pick("max_new_tokens"))
        if new is not None and (isinstance(new, bool) or not isinstance(new, (int, np.integer)) or new < 1):
            raise ValueError(f"max_new_tokens: expected an int >= 1, got {describe(new)}")
        settings["max_new_tokens"] = new
        # transformers' pipeline pads with the tokenizer's pad token unless the call or the checkpoint says
        pad = given.get("pad_token_id", saved.get("pad_token_id", self.tokenizer.pad_token_id))
        settings["pad_token_id"] = pad
        return settings

    # ------------------------------------------------------------------------------------- inputs
    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (str, dict)) or is_chat(inputs)  # a chat is one input (refused in check)

    def check(self, item, where: str) -> tuple[str, int | None]:
        """(prompt, its own max_new_tokens or None)."""
        if is_chat(item) or (isinstance(item, (list, tuple)) and item and all(is_chat(c) for c in item)):
            raise ValueError(f"{where}: chat messages (a list of {{'role', 'content'}} dicts) are not supported "
                             "by this text-generation pipeline; expected a plain-text prompt (a str)")
        if isinstance(item, dict):
            if "text" not in item or set(item) - {"text", "max_new_tokens"}:
                raise ValueError(f'{where}: expected a {{"text", "max_new_tokens"}} dict ("max_new_tokens" '
                                 f"optional), got keys {sorted(item)}")
            own = item.get("max_new_tokens")
            if own is not None and (isinstance(own, bool) or not isinstance(own, (int, np.integer)) or own < 1):
                raise ValueError(f"{where}['max_new_tokens']: expected an int >= 1, got {describe(own)}")
            if not isinstance(item["text"], str):
                raise ValueError(f"{where}['text']: expected a str (a prompt), got {describe(item['text'])}")
            return item["text"], own
        if not isinstance(item, str):
            raise ValueError(f"{where}: expected {self.input_description}, got {describe(item)}")
        return item, None

    def preprocess(self, item: tuple[str, int | None], where: str, opts: dict) -> Encoded:
        text, own = item
        ids = np.asarray(self.tokenizer(opts["prefix"] + text, add_special_tokens=opts["add_special_tokens"])
                         ["input_ids"][0], np.int32)
        cut = len(ids)
        if not cut:  # transformers generates from BOS alone and decodes it (input_ids=None: no prompt to cut)
            bos = self.model.generation_config.get("bos_token_id", getattr(self.config, "bos_token_id", None))
            if bos is None:
                raise ValueError(f"{where}: the prompt {text!r} gives no tokens and the model has no "
                                 "bos_token_id to start from")
            ids = np.array([bos], np.int32)
        new = own if own is not None else self.max_new_tokens(opts["generate"], len(ids) if cut else 1, where)
        return Encoded([{"input_ids": ids}], {"text": text, "cut": cut, "max_new_tokens": new})

    def max_new_tokens(self, settings: dict, prompt_length: int, where: str) -> int:
        """The call's / checkpoint's max_new_tokens, or generation_config.json's max_length less the prompt."""
        if settings["max_new_tokens"] is not None:
            return settings["max_new_tokens"]
        total = self.model.generation_config["max_length"]
        if total <= prompt_length:
            raise ValueError(f"{where}: the prompt has {prompt_length} tokens, generation_config.json's "
                             f"max_length={total} leaves none to generate; pass max_new_tokens")
        return total - prompt_length

    # ------------------------------------------------------------------------------- generation
    def _results(self, items: list, names: list[str], opts: dict) -> list:
        encoded = [self.preprocess(self.check(item, where), where, opts) for item, where in zip(items, names)]
        groups = self.generate_all(encoded, opts)
        return [self.postprocess(enc, group, opts) for enc, group in zip(encoded, groups)]

    def generate_all(self, encoded: list[Encoded], opts: dict) -> list[list[np.ndarray]]:
        """Each prompt's returned sequences (prompt + new ids). Prompts are sorted by length; with continuous
        batching (greedy or sampling) every prompt goes through one loop of batch_size slots (left-padded to the
        longest's bucketed length: a refill prefills one padded prompt, and more prompts share the loop), else
        prompts run in static batches of batch_size. Each row stops at its prompt's own max_new_tokens (beam search,
        which has one per call, batches prompts of one max_new_tokens together)."""
        settings = opts["generate"]
        wanted = len(encoded) > self.batch_size if opts["continuous"] is None else opts["continuous"]
        beams = self.beams(settings) > 1
        continuous = wanted and not beams and self.model.continuous_batching
        limit = self.position_limit
        keys = []
        for enc in encoded:
            new, n = enc.meta["max_new_tokens"], len(enc.rows[0]["input_ids"])
            width = padded_length(n, None if limit is None else max(limit - new, 1), self.buckets)
            keys.append((new if beams else 0, width, n))
        order = sorted(range(len(encoded)), key=keys.__getitem__)
        if continuous:  # every prompt in one loop: slots refill across prompt lengths and max_new_tokens
            chunks = [continuous_queue(order, [enc.meta["max_new_tokens"] for enc in encoded], self.batch_size)]
        else:
            chunks, start = [], 0
            while start < len(order):
                end = min(start + self.batch_size, len(order))
                end = next((j for j in range(start + 1, end) if keys[order[j]][0] != keys[order[start]][0]), end)
                chunks.append(order[start:end])
                start = end
        results: list = [None] * len(encoded)
        for chunk in chunks:
            prompts = [encoded[i].rows[0]["input_ids"] for i in chunk]
            news = [encoded[i].meta["max_new_tokens"] for i in chunk]
            width = max(keys[i][1] for i in chunk)
            for i, group in zip(chunk, self.generate_batch(prompts, chunk, news, width, opts, continuous)):
                results[i] = group
        return results

    def generate_batch(self, prompts: list[np.ndarray], indices: list[int], news: list[int], length: int,
                       opts: dict, continuous: bool) -> list[list[np.ndarray]]:
        """One generate call over prompts left-padded to ``length``, each with its own max_new_tokens ``news``:
        every prompt through batch_size slots (continuous batching: the prompt count bucketed by model.generate),
        or one batch whose row count is a power of two (filled with copies of the last prompt), so that any traffic
        compiles few programs. indices: the prompts' places in the call, their random streams when sampling."""
        settings = opts["generate"]
        lengths = [len(p) for p in prompts]
        filler = 0 if continuous else bucket(len(prompts), self.batch_size, smallest=1) - len(prompts)
        rows, streams = prompts + [prompts[-1]] * filler, list(indices) + [indices[-1]] * filler
        news = news + [news[-1]] * filler
        self.stats.record_batch(lengths, len(rows), length)
        ids = pad_rows(rows, length, "left", self.pad_values()["input_ids"])
        mask = pad_rows([np.ones(len(p), np.int32) for p in rows], length, "left", 0)
        slots = {"slots": self.batch_size} if continuous else {}
        new = news[0] if len(set(news)) == 1 else news  # one per row only where they differ
        out = self.model.generate(ids, attention_mask=mask, **{**settings, "max_new_tokens": new}, **slots,
                                  streams=np.asarray(streams))
        per_prompt = out.shape[0] // len(rows)
        eos = eos_ids(self.model, settings["eos_token_id"])
        # transformers pads a finished row only when an EOS is set; without, a stopped row runs on with the others
        fill = self.fill_token(settings) if eos else None
        stops = None if opts["stops"] is None else (opts["stops"], self._token_texts, fill)
        return [trim(out[r * per_prompt:(r + 1) * per_prompt, length - len(p):], len(p), n, eos, stops)
                for r, (p, n) in enumerate(zip(prompts, news))]

    # ------------------------------------------------------------------------------------ outputs
    def postprocess(self, encoded: Encoded, sequences: list[np.ndarray], opts: dict):
        records = []
        for seq in sequences:
            if opts["return_type"] == "tensors":
                records.append({"generated_token_ids": [int(t) for t in seq]})
                continue
            text = self.tokenizer.decode(seq[encoded.meta["cut"]:], skip_special_tokens=opts["skip_special_tokens"])
            if opts["return_type"] == "full_text":
                text = encoded.meta["text"] + text  # the prompt as given (without the prefix), as transformers
            records.append({"generated_text": text})
        return records


def eos_ids(model, given) -> set[int]:
    """The EOS ids model.generate stops at: the call's, else generation_config.json's, else the config's."""
    eos = given
    if eos is None:
        eos = model.generation_config.get("eos_token_id", getattr(model.config, "eos_token_id", None))
    return set(eos) if isinstance(eos, (list, tuple)) else (set() if eos is None else {eos})


def trim(group: np.ndarray, prompt_length: int, new: int, eos: set[int],
         stops: tuple | None = None) -> list[np.ndarray]:
    """One prompt's sequences [n, prompt + steps] cut where transformers' one-prompt run stops: after the longest
    of them, each ending at its first EOS among its first ``new`` tokens (the rest of a batch may have run on), at
    its ``new`` tokens (the prompt's max_new_tokens), or, with
    ``stops`` (the stop strings, the token texts they are matched in, the token generation fills a finished row
    with, None when EOS is off), after the token that ends a stop string, its later tokens replaced by that fill
    (kept as generated when there is none)."""
    ends = []
    group = group if stops is None else np.array(group)  # a copy: its rows are cut in place below
    for seq in group:
        hits = [k for k, t in enumerate(seq[prompt_length:]) if int(t) in eos]
        end = prompt_length + min(hits[0] + 1 if hits else len(seq) - prompt_length, new)
        if stops is not None:
            strings, texts, fill = stops
            stop = first_stop(seq[:end], prompt_length, strings, texts)
            if stop is not None and stop + 1 < end:
                end = stop + 1
                if fill is not None:
                    seq[end:] = fill
        ends.append(end)
    return list(group[:, :max(ends)])


def continuous_queue(by_length: list[int], news: list[int], slots: int) -> list[int]:
    """The order prompts enter a continuous-batching loop: the ``slots`` longest first (the first wave, prefilled
    together at the call's padded width, which they need anyway; a shorter prompt's refill is prefilled at its own
    narrower width), then the rest by descending max_new_tokens, longest first (ties: longer prompts first), so
    that the loop's tail, where slots drain and idle, is short. by_length: prompt indices by ascending length."""
    longest = by_length[::-1]
    return longest[:slots] + sorted(longest[slots:], key=lambda i: -news[i])


def is_chat(item) -> bool:
    """A chat: a non-empty list of {"role", "content"} dicts (transformers' chat input)."""
    return (isinstance(item, (list, tuple)) and bool(item)
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in item))


def return_type(return_full_text, return_text, return_tensors) -> str:
    """"full_text", "new_text" or "tensors", with transformers' rules (_sanitize_parameters): return_full_text
    and return_tensors exclude return_text and each other; any return_tensors that is not None (even False)
    means tensors, as there."""
    if return_full_text is not None:
        if return_text is not None:
            raise ValueError("return_text: mutually exclusive with return_full_text")
        if return_tensors is not None:
            raise ValueError("return_full_text: mutually exclusive with return_tensors")
        return "full_text" if return_full_text else "new_text"
    if return_tensors is not None:
        if return_text is not None:
            raise ValueError("return_text: mutually exclusive with return_tensors")
        return "tensors"
    return "full_text"
