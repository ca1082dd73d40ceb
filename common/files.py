"""Reading the files of a checkpoint or tokenizer directory, with errors in our words.

A torn download or a bad hand edit otherwise surfaces as the parser's own message (``JSONDecodeError:
Expecting ',' delimiter``, numpy's ``cannot reshape array``) with no file named. Every JSON file the project
reads goes through :func:`read_json`, which names the file, the line and column, and what is wrong; the
checkpoint readers (conversion/io.py) raise the same :class:`DamagedFileError` for tensor files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterator, Mapping

# What a JSON value decodes to, by the Python type that json.loads gives.
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}


class DamagedFileError(ValueError):
    """A file is there but is not what its name says: truncated, garbled, or missing a required part.

    A ValueError, so existing ``except ValueError`` keeps catching it. The message names the file and, where
    the format has them, the line and column, the tensor or the field.
    """


def json_type_name(value: Any) -> str:
    """'an object', 'an array', 'a string', ... for error messages (bool before int: True is an int too)."""
    return next((name for t, name in _JSON_NAMES.items() if type(value) is t), type(value).__name__)


def _label(path: str | os.PathLike, what: str | None) -> str:
    return f"{path} ({what})" if what else str(path)


def parse_json(data: str | bytes, where: str) -> Any:
    """json.loads, raising DamagedFileError "<where> is not valid JSON: line L, column C: <reason>"."""
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:  # bytes that are not UTF-8: a garbled or binary file
        raise DamagedFileError(f"{where} is not UTF-8 text: byte {e.start}: {e.reason}") from None
    except json.JSONDecodeError as e:
        # The parser stops at the end of the text, or inside a string that runs to it (a JSON string cannot span
        # lines, so only a cut-off text leaves one open): the file was cut short.
        cut = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated string")
        truncated = " (the text ends early: truncated?)" if cut else ""
        raise DamagedFileError(f"{where} is not valid JSON: line {e.lineno}, column {e.colno}: {e.msg}"
                               f"{truncated}") from None


def read_json(path: str | os.PathLike, what: str | None = None, *, expect: type | None = dict) -> Any:
    """The decoded JSON file at ``path``.

    what: what the file is, for messages ("model config", "tokenizer vocabulary"); expect: the type the top
    level must have (dict: a JSON object; None: anything). A missing file raises FileNotFoundError, a file that
    is not JSON (or has the wrong top level) DamagedFileError, both naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{_label(path, what)} not found") from None
    value = parse_json(data, _label(path, what))
    if expect is not None and not isinstance(value, expect):
        raise DamagedFileError(f"{_label(path, what)}: expected {_JSON_NAMES.get(expect, expect.__name__)} at the "
                               f"top level, got {json_type_name(value)}")
    return value


def read_json_if_present(path: str | os.PathLike, what: str | None = None) -> dict:
    """A JSON object file (a tokenizer side file, ...), or {} when there is no such file."""
    return read_json(path, what) if Path(path).is_file() else {}


def read_text(path: str | os.PathLike, what: str | None = None) -> str:
    """A UTF-8 text file; bytes that are not UTF-8 raise DamagedFileError naming the file, line and byte."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DamagedFileError(f"{_label(path, what)} is not UTF-8 text: line {line}, byte {e.start}: "
                               f"{e.reason}") from None


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str | None = None) -> Iterator[None]:
    """Re-raise what a foreign parser (tokenizers, torch) raises inside the block as a DamagedFileError naming
    the file, with the parser's own message after it."""
    try:
        yield
    except DamagedFileError:
        raise
    except Exception as e:  # noqa: BLE001 - each parser has its own error types; all mean "cannot read this file"
        raise DamagedFileError(f"{_label(path, what)} cannot be read: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------------ field types
def _json_types(annotation) -> tuple[type, ...] | None:
    """The JSON value types a dataclass field annotation accepts (None: anything, not checked)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [_json_types(a) for a in typing.get_args(annotation)]
        return None if any(m is None for m in members) else tuple(t for m in members for t in m)
    if annotation is type(None):
        return (type(None),)
    if annotation is float:
        return (int, float)
    if annotation in (int, str, bool):
        return (annotation,)
    if origin in (tuple, list) or annotation in (tuple, list):
        return (list,)
    if origin is dict or annotation is dict:
        return (dict,)
    return None


def _accepts(value: Any, accepted: tuple[type, ...]) -> bool:
    if value is None:  # null means "unset" in HF files; the config's own checks decide whether that is allowed
        return True
    if isinstance(value, bool):
        return bool in accepted
    return isinstance(value, accepted)


def check_field_types(data: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]], where: str) -> None:
    """Raise DamagedFileError naming the first field of ``data`` whose JSON type is not among ``fields``'."""
    for name, accepted in fields.items():
        if name in data and not _accepts(data[name], accepted):
            # a float field takes integers too; "a number" says both
            allowed = " or ".join(dict.fromkeys(_JSON_NAMES[t] for t in accepted if not (t is int and float in accepted)))
            raise DamagedFileError(f"{where}: field {name!r} is {json_type_name(data[name])} ({data[name]!r:.60}), "
                                   f"expected {allowed}")


def dataclass_field_types(cls, skip: tuple[str, ...] = ()) -> dict[str, tuple[type, ...]]:
    """{field name: accepted JSON types} for a dataclass's fields whose annotation maps onto JSON types."""
    hints = typing.get_type_hints(cls)
    found = {f.name: _json_types(hints[f.name]) for f in dataclasses.fields(cls) if f.name not in skip}
    return {name: accepted for name, accepted in found.items() if accepted is not None}
