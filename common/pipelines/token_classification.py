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
as transformers gives them.

Texts longer than the tokenizer's model_max_length are cut to it, unless ``stride`` (an int >= 0) is given: then
the whole text is read in windows of model_max_length tokens (special tokens included), each sharing ``stride``
tokens with the one before, every window is labelled on its own (entities are formed and filtered per window),
and the windows' entities are merged: sorted by start, an entity starting inside the one kept before it replaces
that one when its span is longer (or as long, with a higher score). ``stride`` needs a fast tokenizer with a pad
token (transformers pads the windows of a text to one length; "index", the token's position in its window, then
counts the padding of a tokenizer that pads on the left), and refuses an explicit aggregation_strategy="none" (left
unset, the per-token entities are merged as above).

``is_split_into_words=True``: an input is a list of words (str), a call takes one such list or a list of them;
one list gives a list holding its one result, as transformers does. The words are tokenized each on its own (a
fast tokenizer's pre-tokenized input) and the text that start / end index and the word heuristic reads is the
words joined with ``delimiter`` (default " "). ``offset_mapping`` is not supported.
"""

from __future__ import annotations

import warnings

import numpy as np

from common.pipelines.base import Encoded, Pipeline
from common.pipelines.question_answering import _LOCK as TRUNCATION_LOCK  # one lock per shared tokenizer backend
from common.pipelines.scores import softmax
from common.tokenization import describe

STRATEGIES = ("none", "simple", "first", "average", "max")
WORD_STRATEGIES = ("first", "average", "max")  # those that need word boundaries, hence offsets


class TokenClassification(Pipeline):
    task = "token-classification"
    heads = ("token_classification",)
    options = {"aggregation_strategy": None, "ignore_labels": None, "delimiter": None,
               "stride": None, "is_split_into_words": False, "offset_mapping": None}

    def __call__(self, inputs, **options):
        opts = self.resolve_options({**self.defaults, **self._options(options, "call")})
        if opts["is_split_into_words"] and isinstance(inputs, list) and not all(isinstance(x, list) for x in inputs):
            # transformers 5.x: a list that is not a list of lists is one input, whose result comes back in a list
            with self.stats.timing(1):
                return self._results([inputs], ["inputs"], opts)
        return super().__call__(inputs, **options)

    def each(self, inputs, **options) -> list:
        """``[pipe(x, **options) for x in inputs]`` in shared batches; with is_split_into_words each x is a list of
        words, whose result (as ``pipe(x)`` gives it) is a list holding that input's entities."""
        opts = self.resolve_options({**self.defaults, **self._options(options, "call")})
        if not opts["is_split_into_words"]:
            return super().each(inputs, **options)
        with self.stats.timing(len(inputs)):
            results = self._results(list(inputs), [f"inputs[{i}]" for i in range(len(inputs))], opts)
        return [[result] for result in results]

    # ----------------------------------------------------------------------------------------- options
    def resolve_options(self, opts: dict) -> dict:
        opts = super().resolve_options(opts)
        if opts["offset_mapping"] is not None:
            raise ValueError("offset_mapping: not supported by this token-classification pipeline (caller-given "
                             f"offsets); got {opts['offset_mapping']!r:.60}")
        opts["strategy"] = self.strategy(opts["aggregation_strategy"])
        ignore = opts["ignore_labels"]
        if ignore is None:
            ignore = ["O"]
        elif not isinstance(ignore, (list, tuple, set, frozenset)) or not all(isinstance(x, str) for x in ignore):
            raise ValueError(f"ignore_labels: expected a list of label names (str), got {describe(ignore)}")
        opts["ignore"] = set(ignore)
        self.check_stride(opts["stride"], opts["aggregation_strategy"] is not None and opts["strategy"] == "none")
        self.check_split_into_words(opts["is_split_into_words"])
        if opts["delimiter"] is None:
            opts["delimiter"] = " "  # what joins pre-split words; unused for texts, as in transformers
        elif not isinstance(opts["delimiter"], str):
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

    def check_stride(self, stride, none_given: bool) -> None:
        """transformers' refusals, in its order: a stride not below model_max_length, an explicit "none"
        strategy, a slow tokenizer; then its tokenizer's: no room for the stride beside the special tokens, no pad
        token to pad the windows with."""
        if stride is None:
            return
        if isinstance(stride, (bool, np.bool_)) or not isinstance(stride, (int, np.integer)) or stride < 0:
            raise ValueError(f"stride: expected an int >= 0 (the tokens each window shares with the one before), "
                             f"got {stride!r:.60}")
        limit = self.limit()
        if limit is not None and stride >= limit:
            raise ValueError(f"stride: {stride} must be less than the tokenizer's model_max_length ({limit}), the "
                             "length of each window")
        if none_given:
            raise ValueError('stride: the windows\' entities are merged, which aggregation_strategy="none" does not '
                             f"allow (transformers refuses it); use one of {list(STRATEGIES[1:])}")
        if not self.tokenizer.is_fast:
            raise ValueError(f"stride: needs a fast tokenizer (windows with offsets into the text); this "
                             f"{type(self.tokenizer).__name__} is a slow one")
        room = None if limit is None else limit - self.special_count()
        if room is not None and stride >= room:
            raise ValueError(f"stride: {stride} must be less than the {room} text tokens each window holds "
                             f"(model_max_length {limit} less {limit - room} special tokens)")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("stride: the windows of a text are padded to one length (as transformers pads them), "
                             "and this tokenizer has no pad token; give it one (pad_token in tokenizer_config.json)")

    def check_split_into_words(self, value) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"is_split_into_words: expected True or False, got {value!r:.60}")
        if value and not self.tokenizer.is_fast:
            # transformers: "is_split_into_words=True is only supported with fast tokenizers."
            raise ValueError(f"is_split_into_words: only supported with fast tokenizers (offsets within each "
                             f"word); this {type(self.tokenizer).__name__} is a slow one")

    def special_count(self) -> int:
        """The special tokens a fast tokenizer adds around one text."""
        processor = self.tokenizer._tokenizer.post_processor
        return processor.num_special_tokens_to_add(False) if processor else 0

    def limit(self) -> int | None:
        """The tokenizer's model_max_length: transformers tokenizes with truncation=True, cutting texts to it."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        return int(limit) if isinstance(limit, (int, np.integer)) and 0 < limit < 10**15 else None

    # ------------------------------------------------------------------------------------ preprocess
    def check(self, item, where: str):
        return item  # what an input may be depends on is_split_into_words: checked in preprocess

    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        if opts["is_split_into_words"]:
            words = check_words(item, where)
            text, word_starts = join_words(words, opts["delimiter"])
            windows = self.fast_windows(words, opts["stride"], word_starts)
        else:
            if isinstance(item, list):
                raise ValueError(f"{where}: expected a str, got {describe(item)}; a list of words needs "
                                 "is_split_into_words=True")
            text = super().check(item, where)
            windows = self.fast_windows(text, opts["stride"]) if self.tokenizer.is_fast else [self.slow_window(text)]
        rows = [{"input_ids": w["ids"], "attention_mask": np.ones_like(w["ids"])} for w in windows]
        return Encoded(rows, {"text": text, "windows": windows})

    def fast_windows(self, source: str | list[str], stride: int | None, word_starts: list[int] | None = None
                     ) -> list[dict]:
        """The windows of a text (or of pre-split words) as transformers' fast tokenizers cut them with
        truncation=True at model_max_length (with ``stride``: the first window and its overflow; else the first
        only): {"ids" [seq] int32, "offsets" [(start, end)] into the text, "special" [seq], "first_index": the
        index transformers reports for the window's first token}. ``word_starts``: each word's first character in
        the joined text, which a word's offsets (relative to the word) are moved by."""
        backend, limit = self.tokenizer._tokenizer, self.limit()
        words = word_starts is not None
        if limit is None:
            first = backend.encode(source, is_pretokenized=words, add_special_tokens=True)
        else:
            lock = getattr(self.tokenizer, "_truncation_lock", TRUNCATION_LOCK)
            with lock:  # truncation is a setting of the shared backend: set for this one call
                backend.enable_truncation(limit, stride=stride or 0, strategy="longest_first", direction="right")
                try:
                    first = backend.encode(source, is_pretokenized=words, add_special_tokens=True)
                finally:
                    backend.no_truncation()
        encodings = [first] + (list(first.overflowing) if stride is not None else [])
        # transformers pads a text's windows to the longest; on the left that moves each token's "index"
        longest = max(len(enc.ids) for enc in encodings)
        left = stride is not None and getattr(self.tokenizer, "padding_side", "right") == "left"
        return [{"ids": np.asarray(enc.ids, dtype=np.int32), "special": enc.special_tokens_mask,
                 "offsets": enc.offsets if not words else shift_offsets(enc.offsets, enc.word_ids, word_starts),
                 "first_index": longest - len(enc.ids) if left else 0}
                for enc in encodings]

    def slow_window(self, text: str) -> dict:
        """transformers' slow tokenizers: no offsets; the special tokens are the ones added around the text."""
        ids = self.encode(text, **({"truncation": True} if self.limit() is not None else {}))["input_ids"]
        return {"ids": ids, "offsets": None, "special": [1] + [0] * (len(ids) - 2) + [1], "first_index": 0}

    # ----------------------------------------------------------------------------------- postprocess
    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict) -> list[dict]:
        entities = []
        for window, output in zip(encoded.meta["windows"], outputs):
            scores = softmax(output["logits"].astype(np.float32))
            tokens = self.gather(encoded.meta["text"], window, scores, opts["strategy"])
            entities += [e for e in self.aggregate(tokens, opts["strategy"])
                         if e.get("entity") not in opts["ignore"] and e.get("entity_group") not in opts["ignore"]]
        return merge_windows(entities) if len(outputs) > 1 else entities

    def gather(self, text: str, window: dict, scores: np.ndarray, strategy: str) -> list[dict]:
        """transformers' gather_pre_entities: each non-special token's piece, scores, span and whether it continues
        the word before it."""
        ids, offsets, special = window["ids"], window["offsets"], window["special"]
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
            out.append({"word": word, "scores": token_scores, "start": start, "end": end,
                        "index": window["first_index"] + idx, "is_subword": is_subword})
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


def check_words(item, where: str) -> list[str]:
    """A pre-split input: a non-empty list of str (transformers refuses tuples as well)."""
    if not isinstance(item, list):
        raise ValueError(f"{where}: is_split_into_words=True takes a list of words (str), got {describe(item)}")
    if not item:
        raise ValueError(f"{where}: the list of words is empty")
    for i, word in enumerate(item):
        if not isinstance(word, str):
            raise ValueError(f"{where}[{i}]: expected a word (str), got {describe(word)}")
    return item


def join_words(words: list[str], delimiter: str) -> tuple[str, list[int]]:
    """The text the words stand for (joined with ``delimiter``) and each word's first character in it."""
    starts, at = [], 0
    for word in words:
        starts.append(at)
        at += len(word) + len(delimiter)
    return delimiter.join(words), starts


def shift_offsets(offsets: list[tuple[int, int]], word_ids: list[int | None], word_starts: list[int]
                  ) -> list[tuple[int, int]]:
    """Offsets within each pre-split word -> offsets into the joined text (special tokens, of no word, kept)."""
    return [(s, e) if w is None else (s + word_starts[w], e + word_starts[w])
            for (s, e), w in zip(offsets, word_ids)]


def merge_windows(entities: list[dict]) -> list[dict]:
    """The entities of overlapping windows, by start: one that starts inside the entity kept before it replaces
    that one when its span is longer, or as long with a higher score; else it is kept after it. As transformers'
    pass, the first entity is met twice (a zero-width first entity, overlapping nothing, is kept twice)."""
    ordered = sorted(entities, key=lambda e: e["start"])  # stable: windows' order among equal starts
    kept = ordered[:1]
    for entity in ordered:
        last = kept[-1]
        if last["start"] <= entity["start"] < last["end"]:
            if outranks(entity, last):
                kept[-1] = entity
        else:
            kept.append(entity)
    return kept


def outranks(entity: dict, other: dict) -> bool:
    length, other_length = entity["end"] - entity["start"], other["end"] - other["start"]
    return length > other_length or (length == other_length and entity["score"] > other["score"])


def split_tag(label: str) -> tuple[str, str]:
    """("B" or "I", tag) of a label; one without a B-/I- prefix continues ("I") its own tag."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label
