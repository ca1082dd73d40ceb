"""token-classification (alias "ner"): a label for every token of a text, as transformers 5.x's
TokenClassificationPipeline.

A text gives a list of entities; a list of texts gives a list of those lists. ``aggregation_strategy``:

- "none" (default): one {"entity", "score", "index", "word", "start", "end"} per token (special tokens left out):
  the token's best label, its softmax probability, its position in the model input, the token string and its
  character span in the text.
- "simple": adjacent tokens whose labels share a tag (B-/I- prefixes stripped; a B- starts a new group) become one
  {"entity_group", "score", "word", "start", "end"}; score is the mean of their scores, word their decoded pieces.
- "first" / "average" / "max": as "simple", after the tokens of each word are given one label: the first token's,
  the best of the averaged probabilities, or the label of the most confident token. Words come from the
  tokenizer's offsets (transformers' heuristic: a token glued to the character before it continues a word), so
  these need a fast tokenizer (XLM's is not: there start / end are None and only "none" / "simple" work).

Entities whose label (or group) is in ``ignore_labels`` (default ["O"]) are dropped. Scores are numpy float32,
as transformers gives them. ``stride``, ``is_split_into_words`` and ``offset_mapping`` are not supported.
"""

from __future__ import annotations

import warnings

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.scores import softmax
from common.tokenization import describe

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")  # those that need word boundaries, hence offsets
UNSUPPORTED = {  # transformers' options this pipeline refuses, and why
    "stride": "windows over texts longer than the model",
    "is_split_into_words": "pre-split words as input",
    "offset_mapping": "caller-given offsets",
}


class TokenClassification(Pipeline):
    task = "token-classification"
    heads = ("token_classification",)
    options = {"aggregation_strategy": None, "ignore_labels": None, "delimiter": None,
               "stride": None, "is_split_into_words": False, "offset_mapping": None}

    # ----------------------------------------------------------------------------------------- options
    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        for name, what in UNSUPPORTED.items():
            if opts[name] not in (None, False):
                raise ValueError(f"{name}: not supported by this token-classification pipeline ({what}); "
                                 f"got {opts[name]!r:.60}")
        opts["strategy"] = self.strategy(opts["aggregation_strategy"])
        ignore = opts["ignore_labels"]
        if ignore is None:
            ignore = ["O"]
        elif not isinstance(ignore, (list, tuple, set, frozenset)) or not all(isinstance(x, str) for x in ignore):
            raise ValueError(f"ignore_labels: expected a list of label names (str), got {describe(ignore)}")
        opts["ignore"] = set(ignore)
        # delimiter only joins pre-split words (refused above); transformers ignores it otherwise
        if opts["delimiter"] is not None and not isinstance(opts["delimiter"], str):
            raise ValueError(f"delimiter: expected a str, got {describe(opts['delimiter'])}")
        return opts

    def strategy(self, value) -> str:
        """The aggregation strategy's name (any case, as transformers' ``AggregationStrategy[value.upper()]``)."""
        if value is None:
            return "none"
        name = value.lower() if isinstance(value, str) else None  # transformers' AggregationStrategy is a str
        if name not in STRATEGIES:
            raise ValueError(f"aggregation_strategy: expected one of {list(STRATEGIES)}, got {value!r:.60}")
        if name in WORD_STRATEGIES and not self.tokenizer.is_fast:
            # transformers: "Slow tokenizers cannot handle subwords. Please set the `aggregation_strategy`
            # option to `"simple"` or use a fast tokenizer."
            raise ValueError(f"aggregation_strategy: {name!r} needs word boundaries, which this tokenizer (not a "
                             "fast one: no offsets) cannot give; slow tokenizers cannot handle subwords. Use "
                             "'simple' or 'none', or a fast tokenizer")
        return name

    # ------------------------------------------------------------------------------------ preprocess
    def preprocess(self, text: str, where: str, opts: dict) -> Encoded:
        if self.tokenizer.is_fast:
            enc = self.fast_encoding(text)
            ids = np.asarray(enc.ids, dtype=np.int32)
            meta = {"offsets": enc.offsets, "special": enc.special_tokens_mask}
        else:
            # transformers' slow tokenizers: no offsets; the special tokens are the ones added around the text
            ids = self.encode(text, **self.truncation())["input_ids"]
            meta = {"offsets": None, "special": [1] + [0] * (len(ids) - 2) + [1]}
        row = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        return Encoded([row], {"text": text, **meta})

    def limit(self) -> int | None:
        """The tokenizer's model_max_length: transformers tokenizes with truncation=True, cutting texts to it."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, (int, np.integer)) and 0 < limit < 10**15 else None

    def truncation(self) -> dict:
        return {"truncation": True} if self.limit() is not None else {}

    def fast_encoding(self, text: str):
        """The text's ``tokenizers.Encoding``, cut as transformers' truncation=True cuts it: the text's tokens to
        model_max_length less the special tokens, then the special tokens added."""
        enc = self.tokenizer.encoding(text)
        limit = self.limit()
        if limit is None or len(enc.ids) <= limit:
            return enc
        backend = self.tokenizer._tokenizer
        bare = backend.encode(text, add_special_tokens=False)
        keep = limit - (backend.post_processor.num_special_tokens_to_add(False) if backend.post_processor else 0)
        bare.truncate(max(keep, 0))
        return backend.post_process(bare, None, add_special_tokens=True)

    # ----------------------------------------------------------------------------------- postprocess
    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict) -> list[dict]:
        scores = softmax(outputs[0]["logits"].astype(np.float32))
        tokens = self.gather(encoded, scores, opts["strategy"])
        entities = self.aggregate(tokens, opts["strategy"])
        ignore = opts["ignore"]
        return [e for e in entities if e.get("entity") not in ignore and e.get("entity_group") not in ignore]

    def gather(self, encoded: Encoded, scores: np.ndarray, strategy: str) -> list[dict]:
        """transformers' gather_pre_entities: each non-special token's piece, scores, span and whether it continues
        the word before it."""
        ids = encoded.rows[0]["input_ids"]
        text, offsets, special = encoded.meta["text"], encoded.meta["offsets"], encoded.meta["special"]
        word_aware = self.word_aware()
        if offsets is not None and not word_aware and strategy in WORD_STRATEGIES:
            warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning)
        unk = getattr(self.tokenizer, "unk_token_id", None)  # Llama's tokenizers may have no unknown token
        out = []
        for idx, token_scores in enumerate(scores):
            if special[idx]:
                continue
            word = self.piece(int(ids[idx]))
            start = end = None
            is_subword = False
            if offsets is not None:
                start, end = offsets[idx]
                ref = text[start:end]
                if word_aware:  # a BPE with a continuing-subword prefix: a piece longer than its span continues
                    is_subword = len(word) != len(ref)
                else:  # a token glued to the character before it continues a word
                    is_subword = start > 0 and " " not in text[start - 1:start + 1]
                if unk is not None and int(ids[idx]) == unk:
                    word, is_subword = ref, False
            out.append({"word": word, "scores": token_scores, "start": start, "end": end, "index": idx,
                        "is_subword": is_subword})
        return out

    def word_aware(self) -> bool:
        """transformers' test: the backend's model has a (non-empty) continuing_subword_prefix."""
        backend = getattr(self.tokenizer, "_tokenizer", None)
        return bool(backend is not None and getattr(backend.model, "continuing_subword_prefix", None))

    def piece(self, token_id: int) -> str:
        """The token string of an id (transformers' ``convert_ids_to_tokens(int)``)."""
        if self.tokenizer.is_fast:
            return self.tokenizer._tokenizer.id_to_token(token_id)
        return self.tokenizer.convert_ids_to_tokens([token_id])[0]

    def pieces_to_string(self, pieces: list[str]) -> str:
        """transformers' ``convert_tokens_to_string``: the backend's decoder over the pieces (fast tokenizers),
        else the tokenizer's own rule (the pieces' ids decoded, special tokens kept)."""
        convert = getattr(self.tokenizer, "convert_tokens_to_string", None)
        if convert is not None:
            return convert(pieces)
        if self.tokenizer.is_fast:
            decoder = self.tokenizer._tokenizer.decoder
            return decoder.decode(pieces) if decoder is not None else " ".join(pieces)
        return self.tokenizer.decode(self.tokenizer.convert_tokens_to_ids(pieces), skip_special_tokens=False)

    def label(self, index) -> str:
        return self.config.id2label[int(index)]

    def aggregate(self, tokens: list[dict], strategy: str) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = []
            for t in tokens:
                best = t["scores"].argmax()
                entities.append({"entity": self.label(best), "score": t["scores"][best], "index": t["index"],
                                 "word": t["word"], "start": t["start"], "end": t["end"]})
        else:
            entities = self.aggregate_words(tokens, strategy)
        return entities if strategy == "none" else self.group_entities(entities)

    def aggregate_words(self, tokens: list[dict], strategy: str) -> list[dict]:
        """One entity per word (a token and the subword tokens after it)."""
        words, group = [], []
        for t in tokens:
            if group and not t["is_subword"]:
                words.append(self.aggregate_word(group, strategy))
                group = []
            group.append(t)
        if group:
            words.append(self.aggregate_word(group, strategy))
        return words

    def aggregate_word(self, tokens: list[dict], strategy: str) -> dict:
        if strategy == "first":
            scores = tokens[0]["scores"]
        elif strategy == "max":
            scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
        best = scores.argmax()
        return {"entity": self.label(best), "score": scores[best],
                "word": self.pieces_to_string([t["word"] for t in tokens]),
                "start": tokens[0]["start"], "end": tokens[-1]["end"]}

    def group_entities(self, entities: list[dict]) -> list[dict]:
        """Adjacent entities of one tag form a group; a B- label starts a new one."""
        groups, current = [], []
        for entity in entities:
            if current:
                bi, tag = split_tag(entity["entity"])
                if not (tag == split_tag(current[-1]["entity"])[1] and bi != "B"):
                    groups.append(self.group(current))
                    current = []
            current.append(entity)
        if current:
            groups.append(self.group(current))
        return groups

    def group(self, entities: list[dict]) -> dict:
        return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
                "score": np.mean(np.nanmean([e["score"] for e in entities])),
                "word": self.pieces_to_string([e["word"] for e in entities]),
                "start": entities[0]["start"], "end": entities[-1]["end"]}


def split_tag(label: str) -> tuple[str, str]:
    """("B" or "I", tag) of a label; one without a B-/I- prefix continues ("I") its own tag."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label
