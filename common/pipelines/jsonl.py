"""A pipeline over a JSON Lines file (``jaxzoo pipeline``): one input per line, one result per line, resumable.

Each input line is the task's input as JSON (a string, or an object such as {"question", "context"} or
{"text", "text_pair"}); each output line is that input's result as JSON, exactly ``pipe(input)``. Lines are
run in chunks and each chunk's results are written and flushed before the next is read, so a run that stops
(killed, out of memory) resumes where it stopped: the lines already in the output are skipped (a last line cut
short by the stop is dropped and redone). A bad line is an error naming the file and line; nothing after the
last complete chunk is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Iterator

import numpy as np


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


def run_jsonl(pipe, source: Path | None, target: Path | None, chunk: int = 64, options: dict | None = None) -> int:
    """Run ``pipe`` over ``source`` (stdin when None) into ``target`` (stdout when None); returns the number of
    results written in this run."""
    options = options or {}
    name = str(source) if source is not None else "<stdin>"
    done = completed_lines(target) if target is not None else 0
    src = open(source, encoding="utf-8") if source is not None else sys.stdin
    dst = open(target, "a", encoding="utf-8") if target is not None else sys.stdout
    written, pending = 0, []
    try:
        for index, (number, item) in enumerate(read_inputs(src, name)):
            if index < done:
                continue
            pending.append((number, item))
            if len(pending) == chunk:
                written += _flush(pipe, pending, dst, name, options)
        written += _flush(pipe, pending, dst, name, options)
    finally:
        if source is not None:
            src.close()
        if target is not None:
            dst.close()
    return written


def _flush(pipe, pending: list, dst: IO[str], name: str, options: dict) -> int:
    if not pending:
        return 0
    try:
        results = pipe.each([item for _, item in pending], **options)
    except ValueError as e:  # "inputs[3]: ..." -> "FILE line N: ..."
        message = str(e)
        if message.startswith("inputs["):
            index = int(message[len("inputs["):message.index("]")])
            message = f"{name} line {pending[index][0]}{message[message.index(']') + 1:]}"
        raise ValueError(message) from None
    dst.write("".join(json.dumps(r, default=_jsonable, ensure_ascii=False) + "\n" for r in results))
    dst.flush()
    n = len(pending)
    pending.clear()
    return n
