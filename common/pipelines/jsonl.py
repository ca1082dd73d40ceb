"""A pipeline over a JSON Lines file (``jaxzoo pipeline``): one input per line, one result per line, resumable.

Each input line is the task's input as JSON (a string, or an object such as {"question", "context"} or
{"text", "text_pair"}); each output line is that input's result as JSON, exactly ``pipe(input)``. Lines are
run in chunks and each chunk's results are written and flushed before the next is read, so a run that stops
(killed, out of memory) resumes where it stopped: the lines already in the output are skipped (a last line cut
short by the stop is dropped and redone). The output therefore always holds, in input order, the results of a
prefix of the input's (non-blank) lines, each once: a job killed at any point (kill -9 included) and run again
ends with the file an uninterrupted run writes.

A bad line stops the job with an error naming the file and line (nothing after the last complete chunk is
written), or, with ``on_error="record"``, takes the place of its result as {"error": "...", "line": N} while the
other lines run on. A progress bar (tqdm, on stderr) shows lines done and examples/s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Iterator

import numpy as np
from tqdm.auto import tqdm

ON_ERROR = ("stop", "record")


def read_inputs(stream: IO[str], name: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed input) for each non-blank line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name} line {number}: not JSON ({e.msg} at column {e.colno})") from None


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a result holds a {type(value).__name__}, which JSON cannot hold")


def completed_lines(path: Path) -> int:
    """The complete lines of an earlier run's output; a last line without its newline (cut by a stop) is
    removed from the file."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        path.write_bytes(complete)
    return complete.count(b"\n")


def count_inputs(path: Path) -> int:
    """The non-blank lines of ``path`` (the progress bar's total)."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def run_jsonl(pipe, source: Path | None, target: Path | None, chunk: int = 64, options: dict | None = None,
              on_error: str = "stop", progress: bool = False) -> int:
    """Run ``pipe`` over ``source`` (stdin when None) into ``target`` (stdout when None); returns the number of
    lines answered in this run (error records included). on_error: "stop" or "record" (see the module)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error: expected one of {list(ON_ERROR)}, got {on_error!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected an int >= 1, got {chunk!r}")
    options = options or {}
    name = str(source) if source is not None else "<stdin>"
    done = completed_lines(target) if target is not None else 0
    total = count_inputs(source) if source is not None and progress else None
    src = open(source, encoding="utf-8") if source is not None else sys.stdin
    dst = open(target, "a", encoding="utf-8") if target is not None else sys.stdout
    bar = tqdm(total=total, initial=done, unit="ex", desc=pipe.task, disable=not progress, dynamic_ncols=True)
    written, pending = 0, []
    try:
        for index, (number, item) in enumerate(read_inputs(src, name)):
            if index < done:
                continue
            pending.append((number, item))
            if len(pending) == chunk:
                written += _flush(pipe, pending, dst, name, options, on_error, bar)
        written += _flush(pipe, pending, dst, name, options, on_error, bar)
    finally:
        bar.close()
        if source is not None:
            src.close()
        if target is not None:
            dst.close()
    return written


def _flush(pipe, pending: list, dst: IO[str], name: str, options: dict, on_error: str, bar) -> int:
    """Answer the pending (line, input) pairs, write their results in order, flush; the number written."""
    if not pending:
        return 0
    results = _answer(pipe, pending, name, options, on_error)
    dst.write("".join(json.dumps(r, default=_jsonable, ensure_ascii=False) + "\n" for r in results))
    dst.flush()
    n = len(pending)
    pending.clear()
    bar.update(n)
    return n


def _answer(pipe, pending: list, name: str, options: dict, on_error: str) -> list:
    """Each pending input's result; with on_error="record", a line the pipeline refuses gets an error record
    and the others are answered again without it (an error naming no input, such as a bad option, stops)."""
    errors: dict[int, dict] = {}
    while True:
        live = [i for i in range(len(pending)) if i not in errors]
        try:
            answers = pipe.each([pending[i][1] for i in live], **options) if live else []
            break
        except ValueError as e:  # "inputs[3]: ..." -> "FILE line N: ..."
            message = str(e)
            if not message.startswith("inputs["):
                raise
            index = live[int(message[len("inputs["):message.index("]")])]
            line, rest = pending[index][0], message[message.index("]") + 1:]
            if on_error == "stop":
                raise ValueError(f"{name} line {line}{rest}") from None
            errors[index] = {"error": rest.removeprefix(": "), "line": line}
    results = dict(zip(live, answers))
    return [errors[i] if i in errors else results[i] for i in range(len(pending))]
