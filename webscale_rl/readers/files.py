"""HTML, TXT and e-mail files (and WARC/WET files on a store `records.py` cannot stream from): read
with Spark's `binaryFile` source and parsed from bytes on the executors (`mapInPandas`), so
documents never pass through the driver. A whole file is one row here: for big WARC files see
`records.py`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from .charset import decode_bytes
from .columns import BOM, READER_COLUMNS, READER_SCHEMA, document, first_line
from .email_text import email_to_text
from .html_text import html_to_text, quiet_trafilatura
from .jsonl import OnBadRecord
from .paths import RECORD_FORMATS, escape_glob, format_of, is_local_path, local_path
from .warc import warc_documents

# Rows per pandas batch yielded by the executor-side parsers: bounds memory for big WARC files.
OUTPUT_BATCH_ROWS = 1000


def read_binary_documents(spark: SparkSession, files: list[str], on_bad_record: OnBadRecord = "reject") -> DataFrame:
    raw = spark.read.format("binaryFile").load([escape_glob(f) for f in files])

    def parse_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        return _parse_binary_batches(batches, on_bad_record)

    return raw.select("path", "content").mapInPandas(parse_batches, schema=READER_SCHEMA)


def empty_file_documents(spark: SparkSession, files: list[str]) -> DataFrame:
    """Spark's file sources skip zero-length files: an empty one-document file is made here instead,
    so it still ends as an `empty_text` rejection and nothing vanishes."""
    rows = [document(None, None, "", local_path(f), format_of(f)) for f in files]
    return spark.createDataFrame([tuple(r[c] for c in READER_COLUMNS) for r in rows], READER_SCHEMA)


def is_empty_local_file(path: str) -> bool:
    return is_local_path(path) and os.path.getsize(local_path(path)) == 0


def _parse_binary_batches(batches: Iterator[pd.DataFrame], on_bad_record: OnBadRecord) -> Iterator[pd.DataFrame]:
    """Executor side: one input row per file, any number of documents out (a WARC holds many)."""
    quiet_trafilatura()
    rows: list[dict] = []
    for batch in batches:
        for path, content in zip(batch["path"], batch["content"], strict=True):
            for row in file_documents(local_path(path), bytes(content), on_bad_record):
                rows.append(row)
                if len(rows) >= OUTPUT_BATCH_ROWS:
                    yield pd.DataFrame(rows, columns=READER_COLUMNS)
                    rows = []
    if rows:
        yield pd.DataFrame(rows, columns=READER_COLUMNS)


def file_documents(path: str, content: bytes, on_bad_record: OnBadRecord) -> Iterator[dict]:
    """`parse_file_bytes`, where a parser failing on one file ("reject") makes a `bad_record` row
    for it (`doc_id` the file path) instead of failing the Spark job and the run."""
    try:
        yield from parse_file_bytes(path, content)
    except Exception as exc:
        if on_bad_record == "fail":
            raise
        detail = f"{path}: could not be parsed as {format_of(path)} ({first_line(exc)})"
        yield document(path, None, None, path, format_of(path), f"bad_record: {detail}")


def parse_file_bytes(path: str, content: bytes) -> Iterator[dict]:
    """Documents in one HTML/TXT/WARC/WET/e-mail file (plain Python, so it is testable without Spark)."""
    fmt = format_of(path)
    if fmt == "txt":
        yield document(None, None, decode_bytes(content).lstrip(BOM), path, "txt")
    elif fmt == "html":
        yield document(None, None, html_to_text(decode_bytes(content, html=True)), path, "html")
    elif fmt in RECORD_FORMATS:
        yield from warc_documents(path, content, fmt)
    elif fmt == "eml":
        yield document(None, None, email_to_text(content), path, "eml")
