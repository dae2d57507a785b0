"""Parquet files and Delta tables: the `text` column is checked (from the footer for local files)
before any Spark job, then the files are read in groups of equal schema."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from .columns import READ_ERROR, InputError, first_line
from .paths import escape_glob, is_local_path, local_path, source_from_metadata


def read_parquet_files(spark: SparkSession, files: list[str]) -> list[DataFrame]:
    """Local files are checked one by one from their footers, then read in groups of equal schema."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for file in files:
        key = _parquet_column_types(file) if is_local_path(file) else ("remote",)
        groups.setdefault(key, []).append(file)
    return [_read_parquet_group(spark, group) for group in groups.values()]


def _parquet_column_types(path: str) -> tuple[str, ...]:
    """Types of text/id/url from the footer; raises InputError when `text` is missing or not a string."""
    try:
        schema = pq.read_schema(local_path(path))
    except Exception as exc:  # ArrowInvalid: not parquet / truncated footer
        raise InputError(path, f"not a readable Parquet file: {first_line(exc)}") from exc
    if "text" not in schema.names:
        raise InputError(path, f'Parquet file has no "text" column (columns: {schema.names})')
    text_type = schema.field("text").type
    if pa.types.is_dictionary(text_type):
        text_type = text_type.value_type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or pa.types.is_string_view(text_type)):
        raise InputError(path, f'Parquet column "text" must be a string, found {text_type}')
    return tuple(str(schema.field(c).type) if c in schema.names else "-" for c in ("text", "id", "url"))


def _read_parquet_group(spark: SparkSession, files: list[str]) -> DataFrame:
    try:
        frame = spark.read.parquet(*[escape_glob(f) for f in files])
    except Exception as exc:
        raise InputError(files[0], f"cannot read Parquet: {first_line(exc)}") from exc
    _check_text_column(frame, files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)")
    return _documents_from_columns(frame, source_from_metadata(), "parquet")


def read_delta_table(spark: SparkSession, folder: str) -> DataFrame:
    try:
        frame = spark.read.format("delta").load(escape_glob(folder))
    except Exception as exc:
        raise InputError(folder, f"cannot read Delta table: {first_line(exc)}") from exc
    _check_text_column(frame, folder)
    return _documents_from_columns(frame, F.lit(folder), "parquet")


def _check_text_column(frame: DataFrame, name: str) -> None:
    fields = {f.name: f.dataType for f in frame.schema.fields}
    if "text" not in fields:
        raise InputError(name, f'no "text" column (columns: {sorted(fields)})')
    if not isinstance(fields["text"], StringType):
        raise InputError(name, f'column "text" must be a string, found {fields["text"].simpleString()}')


def _documents_from_columns(frame: DataFrame, source: Column, fmt: str) -> DataFrame:
    def optional(column: str) -> Column:
        present = column in frame.columns
        return (F.col(column).cast("string") if present else F.lit(None).cast("string")).alias(column)

    return frame.select(
        optional("id"),
        optional("url"),
        F.col("text"),
        source.alias("source"),
        F.lit(fmt).alias("source_format"),
        F.lit(None).cast("string").alias(READ_ERROR),
    )
