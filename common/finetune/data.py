"""A fine-tuning job's data: JSON lines, CSV or Parquet files read with the ``datasets`` library (or a Hub dataset
id when the network is there), their columns found, and errors that name the file, the row and the field.

Rows count from 1 in messages: the first data row of a file is row 1 (a CSV's header line is not a row; in a
JSON lines file row N is line N when no line is blank).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from common.extras import require

# File suffix -> the ``datasets`` builder that reads it.
READERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """A data file that a job cannot use: the message names the file (and the row and field when there is one)."""


def where(source: str, row: int, field: str | None = None) -> str:
    """``"train.jsonl: row 3, field 'question'"`` for the 0-based ``row``."""
    return f"{source}: row {row + 1}" + (f", field {field!r}" if field is not None else "")


def read_rows(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None, split: str = "train"
              ) -> list[dict[str, Any]]:
    """Every row of ``source`` as a dict of column -> value.

    source: a .json / .jsonl (JSON lines), .csv or .parquet file; or a Hub dataset id ("squad", "conll2003",
    with ":split" to pick a split, else ``split``), fetched by ``datasets`` when the network is there.
    cache_dir: where ``datasets`` keeps its Arrow copies (default: its own, under ~/.cache/huggingface).
    """
    datasets = require("datasets", "finetune", "reading data files")
    datasets.disable_progress_bars()  # one file is read in a blink; the job has its own progress bar
    path = Path(source)
    name = str(source)
    if path.is_file():
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"{name}: unknown file type {path.suffix!r}; expected one of {sorted(READERS)}")
        if path.stat().st_size == 0:
            raise DataError(f"{name}: the file is empty")
        if path.suffix.lower() == ".jsonl":
            check_json_lines(path, name)
        try:
            dataset = datasets.load_dataset(reader, data_files=str(path), split="train",
                                            cache_dir=None if cache_dir is None else str(cache_dir))
        except Exception as e:  # noqa: BLE001 - pyarrow / pandas parse errors come in many types; all mean "bad file"
            if "corresponds to no data" in str(e):  # datasets' words for a file with a header and nothing else
                raise DataError(f"{name}: the file has no rows") from None
            raise DataError(f"{name}: could not read it as {reader} ({type(e).__name__}: {_first_line(e)})") from None
    elif path.exists():
        raise DataError(f"{name}: expected a data file ({', '.join(sorted(READERS))}), got a directory")
    elif name.startswith((".", "/", "~")) or path.suffix.lower() in READERS:
        raise DataError(f"{name}: no such file")
    else:
        hub_id, _, chosen = name.partition(":")
        try:
            dataset = datasets.load_dataset(hub_id, split=chosen or split,
                                            cache_dir=None if cache_dir is None else str(cache_dir))
        except Exception as e:  # noqa: BLE001 - network, missing dataset, missing split: one message for all
            raise DataError(f"{name}: not a local file, and could not load it as a Hub dataset "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    rows = dataset.to_list()
    if not rows:
        raise DataError(f"{name}: the file has no rows")
    return rows


def check_json_lines(path: Path, name: str) -> None:
    """Each non-blank line must be one JSON object: DataError naming the first line that is not."""
    with path.open(encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{name}: line {number} is not JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(item, dict):
                raise DataError(f"{name}: line {number} is {type(item).__name__}, expected a JSON object "
                                "{\"column\": value, ...}")


def find_column(rows: Sequence[dict], source: str, role: str, candidates: Sequence[str], *,
                required: bool = True) -> str | None:
    """The first of ``candidates`` that the rows have (a given column name is a one-item list); None when none is
    and the column is optional. A required one missing is a DataError listing the columns the file has."""
    columns = list(rows[0])
    found = next((c for c in candidates if c in columns), None)
    if found is None and required:
        names = " or ".join(repr(c) for c in candidates)
        raise DataError(f"{source}: no {role} column ({names}); the file has columns {columns}; name the column "
                        f"with --column {role}=NAME (columns=(({role!r}, NAME),) in Python)")
    return found


def value(rows: Sequence[dict], source: str, index: int, column: str, kind, description: str):
    """rows[index][column], which must be an instance of ``kind`` (a type or tuple); DataError otherwise."""
    item = rows[index].get(column)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(item, kinds) or (isinstance(item, bool) and bool not in kinds):
        raise DataError(f"{where(source, index, column)}: expected {description}, got {_describe(item)}")
    return item


def _describe(item) -> str:
    return "nothing (the field is missing or null)" if item is None else f"{type(item).__name__} {item!r}"[:80]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__
