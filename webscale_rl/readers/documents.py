"""`read_documents`: every input format into one DataFrame of `READER_COLUMNS`."""

from __future__ import annotations

import os

from pyspark.sql import DataFrame, SparkSession

from .discovery import discover
from .files import empty_file_documents, is_empty_local_file, read_binary_documents
from .jsonl import OnBadRecord, read_jsonl
from .parquet import read_delta_table, read_parquet_files
from .paths import BINARY_FORMATS, RECORD_FORMATS, SINGLE_DOCUMENT_FORMATS
from .precheck import precheck_local_files
from .records import read_record_files, streamable


def read_documents(spark: SparkSession, paths: list[str], limit: int | None = None, on_bad_record: OnBadRecord = "reject") -> DataFrame:
    """One DataFrame of documents (`READER_COLUMNS`: `DOCUMENT_COLUMNS` and `READ_ERROR`) from
    files and folders of any supported format. `on_bad_record` (`limits.on_bad_record`): a bad
    JSONL line is a `READ_ERROR` row ("reject") or an `InputError` naming file and line ("fail")."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("read_documents needs at least one path")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    files_by_format, delta_tables = discover(spark, [str(p) for p in paths])
    precheck_local_files(files_by_format)
    frames = _frames_per_format(spark, files_by_format, delta_tables, on_bad_record)
    documents = frames[0]
    for frame in frames[1:]:
        documents = documents.unionByName(frame)
    return documents.limit(limit) if limit is not None else documents


def _frames_per_format(spark: SparkSession, files_by_format: dict[str, list[str]], delta_tables: list[str], on_bad_record: OnBadRecord) -> list[DataFrame]:
    frames: list[DataFrame] = []
    if files_by_format["jsonl"]:
        frames.append(read_jsonl(spark, files_by_format["jsonl"], on_bad_record))
    if files_by_format["parquet"]:
        frames.extend(read_parquet_files(spark, files_by_format["parquet"]))
    for table in delta_tables:
        frames.append(read_delta_table(spark, table))
    empty = [f for fmt in SINGLE_DOCUMENT_FORMATS for f in files_by_format[fmt] if is_empty_local_file(f)]
    if empty:
        frames.append(empty_file_documents(spark, empty))
    record_files = [f for fmt in RECORD_FORMATS for f in files_by_format[fmt]]
    streamed = [f for f in record_files if streamable(f)]
    if streamed:
        frames.append(read_record_files(spark, streamed, on_bad_record))
    # (a WARC on a store the executors cannot open themselves is read whole, as one binaryFile row)
    binary_files = [f for fmt in BINARY_FORMATS for f in files_by_format[fmt] if f not in empty] + [f for f in record_files if f not in streamed]
    if binary_files:
        frames.append(read_binary_documents(spark, binary_files, on_bad_record))
    return frames
