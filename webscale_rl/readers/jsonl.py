"""JSON Lines, read as text lines and parsed with Spark's VARIANT functions: one aggregate query
both validates every line (valid JSON object, `text` present and a string) and the same parse
yields the columns.

A bad line (not JSON, not an object, no string `text`, or a value too long for Spark's parser)
does not stop the run by default: it becomes a reader row with `READ_ERROR` set
("bad_record: ..." or "too_large: ..."), which ingest lands in `rejections`, and the other lines
proceed. Its id is stable across runs (`<file>:<line>`), so a rerun does not reject it twice.
Only a local file Spark found bad lines in is re-read in Python, to number them; other files'
bad lines are named by file and a hash of the line. `on_bad_record="fail"` raises `InputError`
naming the file and the first bad line instead."""

from __future__ import annotations

import gzip
import logging
import os
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .columns import BOM, READ_ERROR, READER_COLUMNS, READER_SCHEMA, InputError, document
from .jsonl_lines import BAD_RECORD, SPARK_JSON_MAX_STRING_CHARS, TOO_LARGE, BadLine, bad_lines
from .paths import escape_glob, is_local_path, local_path, source_from_metadata

log = logging.getLogger(__name__)
OnBadRecord = Literal["reject", "fail"]
PROBLEM = "_problem"
# Bad lines numbered in Python per file; a file with more (e.g. a CSV named .jsonl) is rejected
# line by line in Spark without numbers, so the driver never holds millions of rows.
MAX_NUMBERED_BAD_LINES = 10_000


def read_jsonl(spark: SparkSession, files: list[str], on_bad_record: OnBadRecord = "reject") -> DataFrame:
    lines = _parsed_lines(spark, files)
    bad_counts = _bad_line_counts(lines, files)
    if not bad_counts:  # the good path: no per-line check in the pass that reads the documents
        return _documents(lines)
    if on_bad_record == "fail":
        _raise_first_bad_line(lines, *next(iter(bad_counts.items())))
    numbered = _numbered_bad_lines(bad_counts)
    frames = [_documents(lines.where(F.col(PROBLEM).isNull()))]
    if numbered:
        frames.append(_numbered_rejections(spark, numbered))
    if len(numbered) < len(bad_counts):
        frames.append(_unnumbered_rejections(lines, sorted(numbered)))
    return _union(frames)


def _documents(lines: DataFrame) -> DataFrame:
    return lines.select(
        F.variant_get("v", "$.id", "string").alias("id"),
        F.variant_get("v", "$.url", "string").alias("url"),
        F.variant_get("v", "$.text", "string").alias("text"),
        "source",
        F.lit("jsonl").alias("source_format"),
        F.lit(None).cast("string").alias(READ_ERROR),
    )


def _parsed_lines(spark: SparkSession, files: list[str]) -> DataFrame:
    lines = spark.read.text([escape_glob(f) for f in files]).select(
        F.regexp_replace("value", f"^{BOM}", "").alias("value"),
        source_from_metadata().alias("source"),
    )
    parsed = lines.where(F.col("value").rlike(r"\S")).select("value", "source", F.try_parse_json("value").alias("v"))
    return parsed.withColumn(PROBLEM, _jsonl_problem(F.col("v")))


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


def _bad_line_counts(lines: DataFrame, files: list[str]) -> dict[str, int]:
    """One aggregate query over all lines: bad lines per file (files without any are left out).
    A file without a single non-blank line, or one Spark cannot read at all, is an InputError."""
    try:
        stats = {
            os.path.normpath(row.source) if is_local_path(row.source) else row.source: (row.lines, row.bad)
            for row in lines.groupBy("source").agg(F.count("*").alias("lines"), F.count_if(F.col(PROBLEM).isNotNull()).alias("bad")).collect()
        }
    except Exception as exc:
        _raise_for_unreadable_file(files, exc)
        raise
    counts = {}
    for file in files:
        n_lines, bad = stats.get(local_path(file), (0, 0))
        if n_lines == 0:
            raise InputError(file, "file is empty (no non-blank line)")
        if bad:
            counts[file] = bad
    return counts


def _raise_first_bad_line(lines: DataFrame, path: str, bad_count: int) -> None:
    """`on_bad_record: fail`: a local file is re-read to name the line; elsewhere Spark names
    the problem of one bad line, without its number."""
    if is_local_path(path):
        for line in bad_lines(local_path(path)):
            raise InputError(path, line.problem, line=line.number)
    example = lines.where(F.col(PROBLEM).isNotNull() & (F.col("source") == local_path(path)))
    first = example.select(PROBLEM, F.length("value").alias("chars")).first()
    detail = f", e.g. a line of {first.chars} characters: {first[PROBLEM]}" if first else ""
    raise InputError(path, f"{bad_count} bad line(s) (line numbers are found for local files only){detail}")


def _numbered_bad_lines(bad_counts: dict[str, int]) -> dict[str, list[BadLine]]:
    """Bad lines of local files by number, when Python finds exactly the lines Spark counted."""
    numbered: dict[str, list[BadLine]] = {}
    for file, spark_count in bad_counts.items():
        if not is_local_path(file) or spark_count > MAX_NUMBERED_BAD_LINES:
            continue
        found = list(bad_lines(local_path(file)))
        if len(found) == spark_count:
            numbered[local_path(file)] = found
        else:  # the parsers disagree on some line: Spark's verdict stands, without line numbers
            log.warning("%s: Spark found %d bad line(s), Python %d; naming them without line numbers", file, spark_count, len(found))
    return numbered


def _numbered_rejections(spark: SparkSession, numbered: dict[str, list[BadLine]]) -> DataFrame:
    rows = [
        document(f"{source}:{line.number}", None, None, source, "jsonl", f"{line.reason}: {source} line {line.number}: {line.problem}")
        for source, found in numbered.items()
        for line in found
    ]
    return spark.createDataFrame([tuple(r[c] for c in READER_COLUMNS) for r in rows], READER_SCHEMA)


def _unnumbered_rejections(lines: DataFrame, numbered_sources: list[str]) -> DataFrame:
    """Bad lines of files not numbered in Python (remote, too many, parsers disagree), in Spark:
    named by file and a hash of the line, which is also their stable id."""
    too_large = F.col("v").isNull() & (F.length("value") >= SPARK_JSON_MAX_STRING_CHARS)
    problem = F.when(
        too_large,
        F.format_string("too large: line of %d characters, over what Spark's JSON parser reads", F.length("value")),
    ).otherwise(F.col(PROBLEM))
    line_hash = F.substring(F.sha2("value", 256), 1, 16)
    reason = F.when(too_large, F.lit(TOO_LARGE)).otherwise(F.lit(BAD_RECORD))
    return lines.where(F.col(PROBLEM).isNotNull() & ~F.col("source").isin(numbered_sources)).select(
        F.concat("source", F.lit("@sha256:"), line_hash).alias("id"),
        F.lit(None).cast("string").alias("url"),
        F.lit(None).cast("string").alias("text"),
        "source",
        F.lit("jsonl").alias("source_format"),
        F.concat(reason, F.lit(": "), "source", F.lit(" line with hash "), line_hash, F.lit(": "), problem).alias(READ_ERROR),
    )


def _union(frames: list[DataFrame]) -> DataFrame:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


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
