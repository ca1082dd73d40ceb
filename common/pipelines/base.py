"""What every task pipeline shares: the head check, options, one-vs-many inputs, and the batched model call.

A task subclasses ``Pipeline`` and fills in four steps, each per input::

    check(item, where)      -> the item, validated (ValueError naming ``where``: "inputs[3]" or "inputs")
    preprocess(item, where, opts) -> an Encoded: the model rows of that input (one, or several windows) + what
                               postprocess needs (offsets, the text, ...)
    (the model runs over every row of every input in padded batches: common.pipelines.batching)
    postprocess(encoded, outputs, opts) -> the input's result, as transformers' pipeline gives it
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import numpy as np
from tqdm.auto import tqdm

from common.pipelines.batching import check_ladder, ladder_steps, run_batched
from common.pipelines.stats import BatchStats
from common.tokenization import describe

UNSET = object()  # an option the caller did not give (transformers tells "not given" from None for some)


@dataclasses.dataclass
class Encoded:
    """One input after pre-processing: its model rows, and whatever its postprocess reads."""

    rows: list[dict[str, np.ndarray]]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


class Pipeline:
    """A task over a loaded ``common.model.Model`` and its tokenizer; ``pipe(inputs, **options)``."""

    task: ClassVar[str]
    heads: ClassVar[tuple[str, ...]]  # the Head names (common.family.Head.name) this task runs on
    options: ClassVar[dict[str, Any]] = {}  # every option a call (or the pipeline) takes, with its default
    output_fields: ClassVar[tuple[str, ...]] = ("logits",)  # the model outputs postprocess reads
    token_fields: ClassVar[tuple[str, ...]] = ("logits",)  # those with a sequence axis, cut to each row's length
    can_warm_up: ClassVar[bool] = True  # False for the generation tasks, whose programs depend on the call

    def __init__(self, model, tokenizer, *, batch_size: int = 8, buckets=None, **defaults):
        if model.spec.head not in self.heads:
            raise ValueError(f"task {self.task!r} cannot run on a {model.architecture}: it needs "
                             f"{' or '.join(supported_classes(self.heads))}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.buckets = check_ladder(buckets)  # the padded lengths (None: batching.padded_length's default)
        self.stats = BatchStats()
        self.config = model.config
        head = model.spec.declaration
        self.padding = head.padding(model.config) if head.padding else model.spec.family.padding_side
        self.defaults = self._options(defaults, "pipeline")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task!r}, {self.model.architecture})"

    # ------------------------------------------------------------------------------------- calling
    def __call__(self, inputs, **options):
        opts = self.resolve_options({**self.defaults, **self._options(options, "call")})
        single = self.is_single(inputs)
        if single:
            with self.stats.timing(1):
                return self.arrange(inputs, True, self._results([inputs], ["inputs"], opts), opts)
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError(f"inputs: expected {self.input_description} or a non-empty list of them, "
                             f"got {describe(inputs)}")
        with self.stats.timing(len(inputs)):
            results = self._results(list(inputs), [f"inputs[{i}]" for i in range(len(inputs))], opts)
        return self.arrange(inputs, False, results, opts)

    def each(self, inputs: Sequence, **options) -> list:
        """``[pipe(x, **options) for x in inputs]`` (each result as for one input), run in shared batches."""
        opts = self.resolve_options({**self.defaults, **self._options(options, "call")})
        names = [f"inputs[{i}]" for i in range(len(inputs))]
        for item, where in zip(inputs, names):
            if not self.is_single(item):
                raise ValueError(f"{where}: expected {self.input_description}, got {describe(item)}")
        with self.stats.timing(len(inputs)):
            results = self._results(list(inputs), names, opts)
        return [self.arrange(item, True, [result], opts) for item, result in zip(inputs, results)]

    def _results(self, items: list, names: list[str], opts: dict) -> list:
        encoded = [self.preprocess(self.check(item, where), where, opts) for item, where in zip(items, names)]
        for enc, where in zip(encoded, names):
            self.check_rows(enc.rows, where)
        outputs = self.run([row for enc in encoded for row in enc.rows])
        results, at = [], 0
        for enc in encoded:
            results.append(self.postprocess(enc, outputs[at:at + len(enc.rows)], opts))
            at += len(enc.rows)
        return results

    def check_rows(self, rows: list[dict], where: str) -> None:
        """The model's own input checks on each row of one input (too many tokens for its positions, ...), so that
        a bad input is named before any batch runs, not found inside a batch."""
        for row in rows:
            try:
                self.model.spec.validate_inputs(self.config, {k: v[None] for k, v in row.items()})
            except ValueError as e:
                hint = "; pass truncation=True to cut it" if "truncation" in self.options else ""
                raise ValueError(f"{where}: {e}{hint}") from None

    def _options(self, given: dict, where: str) -> dict:
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise ValueError(f"{self.task}: unexpected {'options' if len(unknown) > 1 else 'option'} {unknown} "
                             f"({where}); it takes {sorted(self.options)}")
        return dict(given)

    def warmup(self, example, *, max_length: int | None = None, progress: bool = False, **options) -> list[int]:
        """Compile, before traffic comes, the model's program at every padded length from ``example``'s (one input
        of the task) up to ``max_length`` (default: the model's position limit), for full batches; a later call
        whose batches fit these shapes compiles nothing (with the persistent compile cache, neither does a later
        process). Returns the lengths compiled."""
        if not self.can_warm_up:
            raise ValueError(f"warmup: {self.task!r} compiles its generation loop per call settings at its first "
                             f"call; it has no warmup")
        opts = self.resolve_options({**self.defaults, **self._options(options, "call")})
        row = self.preprocess(self.check(example, "example"), "example", opts).rows[0]
        limit = self.position_limit
        top = max_length if max_length is not None else limit
        if top is None or isinstance(top, bool) or not isinstance(top, int) or top < len(row["input_ids"]):
            raise ValueError(f"max_length: expected an int >= the example's {len(row['input_ids'])} tokens"
                             + ("" if limit is not None else " (this model has no position limit to default to)")
                             + f", got {max_length!r}")
        lengths = ladder_steps(len(row["input_ids"]), top, limit, self.buckets)
        for length in tqdm(lengths, desc=f"compiling {self.task}", unit="shape", disable=not progress):
            self.run([row] * self.rows_per_call(), min_length=length, record=False)
        return lengths

    def run(self, rows: Sequence[dict], min_length: int = 0, record: bool = True) -> list[dict]:
        """The model's ``output_fields`` for each row (numpy), batched in bounded shapes (recorded in ``stats``
        unless ``record`` is False; every batch at least ``min_length`` long)."""
        if not rows:
            return []
        limit = self.position_limit
        if self.padding == "left":  # positions count from each row's first real token, as unpadded
            rows = [{"position_ids": np.arange(len(row["input_ids"]), dtype=np.int32), **row} for row in rows]

        def call(arrays):
            out = self.model(**arrays)
            return {field: getattr(out, field) for field in self.output_fields}

        return run_batched(call, rows, batch_size=self.rows_per_call(), pad_values=self.pad_values(),
                           padding=self.padding, limit=limit, token_fields=self.token_fields, ladder=self.buckets,
                           stats=self.stats if record else None, min_length=min_length)

    @property
    def position_limit(self) -> int | None:
        """The model's largest position + 1 (None where it has no limit): what padded lengths are capped at."""
        return self.model.spec.max_positions(self.config) if self.model.spec.max_positions else None

    def rows_per_call(self) -> int:
        return self.batch_size

    def pad_values(self) -> dict:
        """The fill of each model input a row may carry (input_ids: the model's pad id, which a classifier
        reading the last non-pad token skips; else the tokenizer's pad, else its eos)."""
        ids = (getattr(self.config, "pad_token_id", None), self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)
        pad = next((i for i in ids if i is not None), 0)
        return {"input_ids": pad, "attention_mask": 0, "token_type_ids": 0, "langs": 0, "global_attention_mask": 0,
                "position_ids": 0, "bbox": np.zeros(4, np.int32)}

    # ------------------------------------------------------------------ what a task fills in
    input_description: ClassVar[str] = "a str"

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, str)

    def resolve_options(self, opts: dict) -> dict:
        """Check the options and fill in their defaults (ValueError naming the option)."""
        return {**self.options, **opts}

    def check(self, item, where: str):
        if not isinstance(item, str):
            raise ValueError(f"{where}: expected a str, got {describe(item)}")
        if not item:
            raise ValueError(f"{where}: the text is empty")
        return item

    def preprocess(self, item, where: str, opts: dict) -> Encoded:
        raise NotImplementedError

    def postprocess(self, encoded: Encoded, outputs: list[dict], opts: dict):
        raise NotImplementedError

    def arrange(self, inputs, single: bool, results: list, opts: dict):
        """One input -> its result; a list -> the list of results."""
        return results[0] if single else results

    # ------------------------------------------------------------------------------- helpers
    def encode(self, text: str, text_pair: str | None = None, **kwargs) -> dict[str, np.ndarray]:
        """One text (or pair) as 1-D int32 arrays {input_ids, attention_mask, ...}, as the tokenizer gives them."""
        args = (text,) if text_pair is None else (text, text_pair)
        return {k: np.asarray(v[0]) for k, v in self.tokenizer(*args, **kwargs).items()}


def supported_classes(heads: Sequence[str]) -> list[str]:
    """The HF classes of every family's heads named ``heads`` (for "cannot run on" errors)."""
    from conversion.registry import ARCHITECTURES

    return sorted(name for name, arch in ARCHITECTURES.items() if arch.spec.head in heads)

