"""What a pipeline did: inputs, model rows, batches, padding, XLA compilations and time (``pipe.stats``).

Compilations are counted from JAX's own monitoring events, process-wide, while a pipeline call runs: every
backend compile of any program (the model's, and any small helper op) counts, and one answered from the persistent
compilation cache counts as a cache hit instead (common.compile_cache). A second pipeline on the same loaded Model
reuses the first one's programs, so it may compile nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # every compile request (a cache hit included)
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_lock = threading.Lock()
_counts = {"requests": 0, "cache_hits": 0}
_listening = False


def _listen() -> None:
    """Register the process-wide listeners once (JAX keeps them for the life of the process)."""
    global _listening
    with _lock:
        if _listening:
            return
        import jax

        def on_duration(event: str, duration: float, **kwargs) -> None:
            if event == _BACKEND_COMPILE:
                _counts["requests"] += 1

        def on_event(event: str, **kwargs) -> None:
            if event == _CACHE_HIT:
                _counts["cache_hits"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)
        _listening = True


def compile_counts() -> tuple[int, int]:
    """(programs compiled, programs read from the persistent cache) in this process since counting began."""
    _listen()
    return _counts["requests"] - _counts["cache_hits"], _counts["cache_hits"]


@dataclasses.dataclass
class BatchStats:
    """Counters of a pipeline since it was made (or since ``reset()``).

    calls: pipeline calls; inputs: inputs answered; rows: model rows (a long context's windows, a zero-shot
    input's hypotheses, ...); batches: model calls; tokens: real tokens fed; padded_tokens: token positions
    run, padding and filler rows included; shapes: the distinct (rows, length) batch shapes run; compiles /
    cache_hits: XLA programs compiled / read from the persistent cache during calls; seconds: wall time in calls.
    """

    calls: int = 0
    inputs: int = 0
    rows: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    compiles: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    shapes: set = dataclasses.field(default_factory=set)

    @property
    def padded_fraction(self) -> float:
        """The share of the token positions run that were padding (0 when nothing ran)."""
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0

    @property
    def examples_per_s(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    def record_batch(self, lengths, rows: int, length: int) -> None:
        """One model call: the real rows' token counts, and the padded shape (rows, length) it ran at."""
        self.batches += 1
        self.rows += len(lengths)
        self.tokens += int(sum(lengths))
        self.padded_tokens += rows * length
        self.shapes.add((rows, length))

    @contextmanager
    def timing(self, inputs: int):
        """Around one pipeline call over ``inputs`` inputs: its time and the compilations made meanwhile."""
        compiled, hits = compile_counts()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            now_compiled, now_hits = compile_counts()
            self.compiles += now_compiled - compiled
            self.cache_hits += now_hits - hits
            self.calls += 1
            self.inputs += inputs

    def reset(self) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, field.default_factory() if callable(field.default_factory) else field.default)

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "shapes"}
        return {**out, "shapes": sorted(self.shapes), "padded_fraction": self.padded_fraction,
                "examples_per_s": self.examples_per_s}

    def __str__(self) -> str:
        return (f"{self.inputs} inputs in {self.seconds:.2f} s ({self.examples_per_s:.1f}/s), {self.batches} "
                f"batches of {len(self.shapes)} shapes, {self.padded_fraction:.1%} padding, {self.compiles} "
                f"compiles, {self.cache_hits} from the compile cache")
