"""Reading the benchmarks' data files with errors that name the file, the row and what was expected.

Every loader of third-party data (ALFWorld trials and games, WebShop products and instructions,
Search-QA questions and corpora) reads through these two functions, so an empty, truncated,
binary, mis-encoded or wrongly shaped file is answered the same way: the loader's own error type,
the file's path, the line or row, and what the file should hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JSON_TYPES = {dict: "a JSON object", list: "a JSON list"}


def _text(path: Path, error: type[Exception]) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder, not a file.") from None
    if not raw.strip():
        raise error(f"{path} is empty.")
    if b"\x00" in raw[:4096] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(f"{path} holds NUL bytes: it is binary or not UTF-8 text; expected JSON saved as UTF-8.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(f"{path} is not UTF-8 text (byte {err.start} cannot be decoded); save it as UTF-8.") from None


def read_json(path: str | Path, expected: type, error: type[Exception], holds: str) -> Any:
    """The parsed JSON of `path`, which must be of type `expected` (dict or list) and `holds` says what of.

    Raises `error` naming the file for a missing, empty, binary, non-UTF-8, truncated or invalid
    file, and for a top level of the wrong type.
    """
    path = Path(path)
    text = _text(path, error)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        ended = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated")
        cut = " (the file ends too early: truncated?)" if ended else ""
        raise error(f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}{cut}.") from None
    if not isinstance(data, expected):
        raise error(f"{path}: expected {JSON_TYPES[expected]} of {holds}, found {_kind(data)}.")
    return data


def iter_json_lines(path: str | Path, error: type[Exception], holds: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file of objects (`holds` says what).

    Streams the file (a 13 GB corpus is never read whole); a line that is not UTF-8, not JSON or
    not an object is an `error` naming the file and the line; a file with no rows is one too.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist." if not path.exists() else f"{path} is a folder, not a file.")
    rows = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise error(f"{path}, line {number}: not UTF-8 text; expected JSON lines saved as UTF-8.") from None
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                shown = f"{line[:60]}..." if len(line) > 60 else line.rstrip()
                raise error(f"{path}, line {number}: not valid JSON ({err.msg}); the line starts {shown!r}.") from None
            if not isinstance(row, dict):
                raise error(f"{path}, line {number}: expected a JSON object ({holds}), found {_kind(row)}.")
            rows += 1
            yield number, row
    if not rows:
        raise error(f"{path} is empty: expected JSON lines, one object ({holds}) per line.")


def require(row: dict[str, Any], key: str, expected: type | tuple[type, ...], where: str, error: type[Exception],
            what: str = "") -> Any:
    """`row[key]`, which must exist and be of type `expected`; else `error` naming `where` and the key."""
    if key not in row:
        raise error(f"{where}: missing key {key!r}{f' ({what})' if what else ''}; it has {sorted(row)[:8]}.")
    value = row[key]
    if not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise error(f"{where}: {key!r} must be {names}, found {_kind(value)} {str(value)[:60]!r}.")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), type(value).__name__)
