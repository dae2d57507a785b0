"""JSON Lines, read as text lines and parsed with Spark's VARIANT functions: one aggregate query
both validates every line (valid JSON object, `text` present and a string) and the same parse
yields the columns. The file is re-read in Python only on the error path, to name the line."""

from __future__ import annotations

import gzip
import io
import json
import os
from typing import IO

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .columns import BOM, READ_ERROR, InputError
from .paths import escape_glob, is_local_path, local_path, source_from_metadata

# Same whitespace as Java's \s, so the Python re-scan counts blank lines exactly as Spark does.
JAVA_WHITESPACE = " \t\n\x0b\x0c\r"


def read_jsonl(spark: SparkSession, files: list[str]) -> DataFrame:
    lines = spark.read.text([escape_glob(f) for f in files]).select(
        F.regexp_replace("value", f"^{BOM}", "").alias("value"),
        source_from_metadata().alias("source"),
    )
    parsed = lines.where(F.col("value").rlike(r"\S")).select("value", "source", F.try_parse_json("value").alias("v"))
    _validate_jsonl(parsed, files)
    return parsed.select(
        F.variant_get("v", "$.id", "string").alias("id"),
        F.variant_get("v", "$.url", "string").alias("url"),
        F.variant_get("v", "$.text", "string").alias("text"),
        "source",
        F.lit("jsonl").alias("source_format"),
        F.lit(None).cast("string").alias(READ_ERROR),
    )


def _jsonl_problem(v: Column) -> Column:
    """Why a parsed line is not a usable document, or NULL when it is."""
    text = F.variant_get(v, "$.text", "variant")  # SQL NULL when the key is absent
    text_type = F.schema_of_variant(text)
    return (
        F.when(v.isNull(), F.lit("not valid JSON"))
        .when(~F.schema_of_variant(v).startswith("OBJECT"), F.lit("not a JSON object"))
        .when(text.isNull(), F.lit('no "text" key'))
        .when(~text_type.isin("STRING", "VOID"), F.lit('"text" is not a string'))
    )


def _validate_jsonl(parsed: DataFrame, files: list[str]) -> None:
    """One aggregate query over all lines; the failing file is re-read only to name the line."""
    try:
        stats = {
            os.path.normpath(row.source) if is_local_path(row.source) else row.source: (row.lines, row.bad)
            for row in parsed.groupBy("source")
            .agg(F.count("*").alias("lines"), F.count_if(_jsonl_problem(F.col("v")).isNotNull()).alias("bad"))
            .collect()
        }
    except Exception as exc:
        _raise_for_unreadable_file(files, exc)
        raise
    for file in files:
        lines, bad = stats.get(local_path(file), (0, 0))
        if lines == 0:
            raise InputError(file, "file is empty (no non-blank line)")
        if bad:
            _raise_first_bad_line(file, bad)


def _raise_first_bad_line(path: str, bad_count: int) -> None:
    if is_local_path(path):
        with _open_text(local_path(path)) as fh:
            for number, raw in enumerate(fh, start=1):
                problem = jsonl_line_problem(raw)
                if problem:
                    raise InputError(path, problem, line=number)
    # Spark's parser is stricter than Python's in rare cases (e.g. a value over 16 MiB).
    raise InputError(path, f"{bad_count} line(s) could not be parsed as JSON objects by Spark")


def jsonl_line_problem(raw: str) -> str | None:
    """Python twin of `_jsonl_problem`, used to find the line number on the error path."""
    line = raw.lstrip(BOM)
    if not line.strip(JAVA_WHITESPACE):
        return None
    try:
        value = json.loads(line, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        # exc's own "line 1 column N" would refer to the line alone; report the column only.
        return f"not valid JSON ({exc.msg} at column {exc.colno}); JSON Lines needs one complete object per line"
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(value, dict):
        return f"not a JSON object (got {type(value).__name__})"
    if "text" not in value:
        return 'no "text" key'
    if value["text"] is not None and not isinstance(value["text"], str):
        return f'"text" is not a string (got {type(value["text"]).__name__})'
    return None


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {duplicates}")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _open_text(path: str) -> IO[str]:
    raw = gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")
    # newline=None splits on \n, \r and \r\n, the same line ends as Spark's text reader.
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


def _raise_for_unreadable_file(files: list[str], exc: Exception) -> None:
    """Spark failed while reading (e.g. a truncated gzip): find and name the file if we can."""
    for file in files:
        if is_local_path(file) and file.lower().endswith(".gz"):
            try:
                with gzip.open(local_path(file), "rb") as fh:
                    while fh.read(1 << 20):
                        pass
            except (OSError, EOFError) as gz_exc:
                raise InputError(file, f"corrupt gzip data: {gz_exc}") from exc
