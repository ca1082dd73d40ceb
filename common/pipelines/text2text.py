"""summarization and text2text-generation: an encoder-decoder (LED) writes a text from a text, as transformers
4.57's Text2TextGenerationPipeline / SummarizationPipeline (5.x removed both).

One text -> [{"summary_text": ...}] ("generated_text" for text2text-generation; num_return_sequences entries);
a list of texts -> a list of {"summary_text"} when each gives one, else a list of lists (4.57's rule).
``return_tensors=True`` gives "summary_token_ids" (the decoder's ids, from its start token) instead.

Generation settings, as 4.57's pipeline: the call's, then the checkpoint's generation_config.json, then the
pipeline's own defaults (max_new_tokens 256, num_beams 4). ``max_length`` / ``min_length`` count the decoder's
start token, as transformers' generate; a call's ``max_length`` is honoured (4.57's pipeline lets its own
max_new_tokens default win over it, so there it has no effect: a departure on purpose). Global attention: on the first token by default, as LED's documentation does
for summarization (transformers' pipeline sets none: ``global_attention=None`` gives exactly its outputs).
Texts are right-padded into bucketed lengths and generated together; each row's sequences are cut where a
one-text run stops. With our option ``continuous=True``, greedy and sampled texts of one padded length go through
one continuous-batching loop (``model.generate(..., slots=batch_size)``: a slot whose summary is done takes the
next text at once); by default, and always for beam search, texts run in static batches.
"""

from __future__ import annotations

import numpy as np

from common.pipelines.base import UNSET, Encoded, Pipeline
from common.pipelines.batching import bucket, padded_length
from common.pipelines.text_generation import eos_ids, trim
from common.tokenization import describe, pad_rows

PIPELINE_DEFAULTS = {"max_new_tokens": 256, "num_beams": 4}
GENERATE_OPTIONS = ("do_sample", "temperature", "top_k", "top_p", "num_return_sequences", "no_repeat_ngram_size",
                    "length_penalty", "early_stopping", "eos_token_id")


class Text2TextGeneration(Pipeline):
    task = "text2text-generation"
    heads = ("conditional_generation",)
    return_name = "generated"
    can_warm_up = False
    options = {"max_new_tokens": UNSET, "max_length": UNSET, "min_length": UNSET, "min_new_tokens": UNSET,
               "num_beams": UNSET, **{name: UNSET for name in GENERATE_OPTIONS}, "truncation": False,
               "return_tensors": False, "return_text": True, "global_attention": "first", "seed": 0,
               "continuous": False}  # ours: continuous batching for greedy / sampling (opt-in)

    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name in ("truncation", "return_tensors", "return_text", "continuous"):
            if not isinstance(opts[name], bool):
                raise ValueError(f"{name}: expected True or False, got {describe(opts[name])}")
        if opts["global_attention"] not in ("first", None):
            raise ValueError(f"global_attention: expected 'first' (the first token attends globally, as LED's "
                             f"documentation) or None (no global attention), got {describe(opts['global_attention'])}")
        opts["generate"] = self.generate_settings(opts)
        return opts

    def generate_settings(self, opts: dict) -> dict:
        """model.generate's arguments: the call's, then generation_config.json's, then PIPELINE_DEFAULTS."""
        given = {k: v for k, v in opts.items() if v is not UNSET}
        saved = self.model.generation_config
        settings = {name: given.get(name) for name in GENERATE_OPTIONS}
        settings["num_beams"] = given.get("num_beams", saved.get("num_beams", PIPELINE_DEFAULTS["num_beams"]))
        if "max_new_tokens" in given:
            new = given["max_new_tokens"]
        elif "max_length" in given:
            new = _count(given["max_length"], "max_length", 2) - 1  # the decoder's start token counts
        elif "max_new_tokens" in saved or "max_length" not in saved:
            new = saved.get("max_new_tokens", PIPELINE_DEFAULTS["max_new_tokens"])
        else:
            new = saved["max_length"] - 1
        settings["max_new_tokens"] = _count(new, "max_new_tokens", 1)
        if "min_new_tokens" in given:
            settings["min_new_tokens"] = _count(given["min_new_tokens"], "min_new_tokens", 0)
        elif "min_length" in given or "min_length" in saved:
            settings["min_new_tokens"] = max(_count(given.get("min_length", saved.get("min_length")),
                                                    "min_length", 0) - 1, 0)
        settings["seed"] = opts["seed"]
        return settings

    def encoder_positions(self) -> int:
        return self.config.max_encoder_position_embeddings

    def preprocess(self, text: str, where: str, opts: dict) -> Encoded:
        row = self.encode(text, **({"truncation": True} if opts["truncation"] else {}))
        limit = self.encoder_positions()
        if len(row["input_ids"]) > limit:
            raise ValueError(f"{where}: the text is {len(row['input_ids'])} tokens, more than the encoder's {limit} "
                             "positions; pass truncation=True to cut it")
        return Encoded([row])

    def _results(self, items: list, names: list[str], opts: dict) -> list:
        encoded = [self.preprocess(self.check(item, where), where, opts) for item, where in zip(items, names)]
        rows = [enc.rows[0] for enc in encoded]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
        if self.continuous(opts):
            # one continuous-batching loop per padded length: batch_size slots, each refilled as its text is done
            width = [padded_length(len(rows[i]["input_ids"]), self.encoder_positions(), self.buckets)
                     for i in range(len(rows))]
            chunks = [[i for i in order if width[i] == w] for w in sorted(set(width))]
        else:
            chunks = [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        groups: list = [None] * len(rows)
        for chunk in chunks:
            for i, group in zip(chunk, self.generate_batch([rows[i] for i in chunk], opts)):
                groups[i] = group
        return [self.postprocess(group, opts) for group in groups]

    def continuous(self, opts: dict) -> bool:
        """Continuous batching: asked for (the default), greedy or sampling, and served by the model."""
        return opts["continuous"] and opts["generate"]["num_beams"] == 1 and self.model.continuous_batching

    def generate_batch(self, rows: list[dict], opts: dict) -> list[list[np.ndarray]]:
        """One generate call: texts right-padded to a bucketed length; with continuous batching every row of
        the call through batch_size slots, else one batch, the row count a power of two."""
        settings = opts["generate"]
        continuous = self.continuous(opts)
        lengths = [len(r["input_ids"]) for r in rows]
        length = padded_length(max(lengths), self.encoder_positions(), self.buckets)
        filled = rows if continuous else rows + [rows[-1]] * (bucket(len(rows), self.batch_size, smallest=1) -
                                                             len(rows))
        self.stats.record_batch(lengths, len(filled), length)
        ids = pad_rows([r["input_ids"] for r in filled], length, "right", self.pad_values()["input_ids"])
        mask = pad_rows([np.ones(len(r["input_ids"]), np.int32) for r in filled], length, "right", 0)
        extra = {}
        if opts["global_attention"] == "first":
            extra["global_attention_mask"] = np.zeros_like(mask)
            extra["global_attention_mask"][:, 0] = 1
        slots = {"slots": self.batch_size} if continuous else {}
        out = self.model.generate(ids, attention_mask=mask, **settings, **extra, **slots)
        per_row = out.shape[0] // len(filled)
        eos = eos_ids(self.model, settings["eos_token_id"])
        return [trim(out[r * per_row:(r + 1) * per_row], 1, out.shape[1] - 1, eos) for r in range(len(rows))]

    def postprocess(self, sequences: list[np.ndarray], opts: dict) -> list[dict]:
        if opts["return_tensors"]:
            return [{f"{self.return_name}_token_ids": [int(t) for t in seq]} for seq in sequences]
        return [{f"{self.return_name}_text": self.tokenizer.decode(seq, skip_special_tokens=True)}
                for seq in sequences]

    def arrange(self, inputs, single: bool, results: list, opts: dict):
        if single:
            return results[0]
        return [r[0] for r in results] if all(len(r) == 1 for r in results) else results


class Summarization(Text2TextGeneration):
    task = "summarization"
    return_name = "summary"


def _count(value, name: str, smallest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
        raise ValueError(f"{name}: expected an int >= {smallest}, got {describe(value)}")
    return int(value)
