"""JSON Lines checked line by line in plain Python: the twin of the Spark-side validation, used
only for local files Spark found bad lines in, to name each bad line by its number."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .columns import BOM

# Same whitespace as Java's \s, so the Python re-scan counts blank lines exactly as Spark does.
JAVA_WHITESPACE = " \t\n\x0b\x0c\r"
# Jackson's StreamReadConstraints default: Spark's JSON parsers (parse_json, from_json) cannot
# read a string value of this many characters or more.
SPARK_JSON_MAX_STRING_CHARS = 20_000_000
BAD_RECORD = "bad_record"
TOO_LARGE = "too_large"


@dataclass(frozen=True)
class BadLine:
    """One line that is not a usable document: its 1-based number, rejection reason and why."""

    number: int
    reason: str  # BAD_RECORD or TOO_LARGE
    problem: str


def bad_lines(path: str) -> Iterator[BadLine]:
    """Every line of a local (optionally gzip'd) JSONL file that Spark's validation rejects."""
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            problem = jsonl_line_problem(raw)
            if problem:
                yield BadLine(number, BAD_RECORD, problem)
                continue
            too_large = _too_large_for_spark(raw)
            if too_large:
                yield BadLine(number, TOO_LARGE, too_large)


def jsonl_line_problem(raw: str) -> str | None:
    """Python twin of the Spark-side `_jsonl_problem`: why a line is not a usable document."""
    line = raw.lstrip(BOM)
    if not line.strip(JAVA_WHITESPACE):
        return None
    try:
        value = json.loads(line, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        # exc's own "line 1 column N" would refer to the line alone; report the column only.
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        return f"not a JSON object (got {type(value).__name__})"
    if "text" not in value:
        return 'no "text" key'
    if value["text"] is not None and not isinstance(value["text"], str):
        return f'"text" is not a string (got {type(value["text"]).__name__})'
    return None


def _too_large_for_spark(raw: str) -> str | None:
    """A valid record Spark cannot parse: a string value over Jackson's length limit (only lines
    that long are parsed a second time)."""
    if len(raw) < SPARK_JSON_MAX_STRING_CHARS:
        return None
    value = json.loads(raw.lstrip(BOM))
    longest = _longest_string(value)
    if longest < SPARK_JSON_MAX_STRING_CHARS:
        return None
    text = value.get("text")
    size = f"n_chars={len(text)}" if isinstance(text, str) else f"a value of {longest} characters"
    record_id = f" (id {value['id']!r})" if isinstance(value.get("id"), (str, int)) else ""
    return f"too large: {size}{record_id}, over the {SPARK_JSON_MAX_STRING_CHARS} characters Spark's JSON parser reads"


def _longest_string(value: object) -> int:
    """Length of the longest string (key or value) in a parsed JSON value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max([0, *map(len, value), *map(_longest_string, value.values())])
    if isinstance(value, list):
        return max([0, *map(_longest_string, value)])
    return 0


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {duplicates}")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def open_text(path: str) -> IO[str]:
    raw = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")
    # newline=None splits on \n, \r and \r\n, the same line ends as Spark's text reader.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)
