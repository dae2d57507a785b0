"""WARC and WET files read as a stream, through a Spark 4 Python data source: one partition (one
task) per file, which opens the file on the executor and yields its records' rows in small Arrow
batches. Memory per task is one record body (`warc.MAX_RECORD_BYTES` at most) and one output batch,
whatever the size of the file: no `binaryFile` row holding the whole file, no 2 GB limit.

The executor opens the file itself, so a file must be reachable from it: a local path (on a
cluster: a disk every executor sees, e.g. a Databricks volume) or an S3 URI (s3a://, s3://),
opened with pyarrow's S3 client set up like the session's S3A connector (`spark.hadoop.fs.s3a.
endpoint`, region, path style; credentials from the executor's environment or instance profile,
as S3A's default chain, never passed through the plan). Other stores (abfss://, gs://, dbfs:/)
are read whole with `binaryFile` as before (`files.py`), bounded by the file's size.

A Python data source works over Spark Connect too (`spark.dataSource.register`); it is registered
by every `read_record_files` call, on the session at hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from .columns import READER_COLUMNS, READER_SCHEMA, document, first_line
from .html_text import quiet_trafilatura
from .paths import format_of, is_local_path, local_path
from .warc import MAX_RECORD_BYTES, record_rows

SOURCE_NAME = "webscale_rl_records"
S3_SCHEMES = ("s3a", "s3", "s3n")
# An output batch is flushed at this many rows or text characters, whichever comes first.
BATCH_ROWS = 1000
BATCH_CHARS = 16_000_000
READ_BUFFER_BYTES = 1 << 20


def streamable(path: str) -> bool:
    """Whether an executor can open `path` itself (else it is read whole with `binaryFile`)."""
    return urlparse(path).scheme.lower() in ("", "file", *S3_SCHEMES)


def read_record_files(spark: SparkSession, files: list[str], on_bad_record: str = "reject", max_record_bytes: int = MAX_RECORD_BYTES) -> DataFrame:
    """READER_COLUMNS rows of WARC/WET `files`, one task per file streaming its records."""
    spark.dataSource.register(RecordFiles)
    return (
        spark.read.format(SOURCE_NAME)
        .option("files", json.dumps(files))
        .option("s3", json.dumps(s3_options(spark)))
        .option("on_bad_record", on_bad_record)
        .option("max_record_bytes", str(max_record_bytes))
        .load()
    )


def s3_options(spark: SparkSession) -> dict[str, str]:
    """pyarrow `S3FileSystem` arguments from the session's S3A settings (no credentials)."""

    def conf(key: str) -> str | None:
        try:
            return spark.conf.get(f"spark.hadoop.fs.s3a.{key}", None) or None
        except Exception:  # a Connect server may refuse to show a setting: S3A's defaults then
            return None

    options: dict[str, str] = {}
    endpoint = conf("endpoint")
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        ssl = (conf("connection.ssl.enabled") or "true").lower() != "false"
        options["endpoint_override"] = host
        options["scheme"] = scheme or ("https" if ssl else "http")
    region = conf("endpoint.region") or conf("region")
    if region:
        options["region"] = region
    return options


def open_input(path: str, s3: dict[str, str]):
    """A seekable binary file object of a local path or an S3 object, on the executor."""
    if is_local_path(path):
        return open(local_path(path), "rb", buffering=READ_BUFFER_BYTES)
    from pyarrow import fs

    parsed = urlparse(path)
    filesystem = fs.S3FileSystem(**s3)
    return filesystem.open_input_file(parsed.netloc + unquote(parsed.path))


class RecordFiles(DataSource):
    """`spark.read.format("webscale_rl_records").option("files", <JSON list>)`: WARC/WET files."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self):
        return READER_SCHEMA

    def reader(self, schema) -> DataSourceReader:
        return RecordFilesReader(self.options)


class RecordFilesReader(DataSourceReader):
    def __init__(self, options):
        self.files: list[str] = json.loads(options["files"])
        self.s3: dict[str, str] = json.loads(options.get("s3", "{}"))
        self.on_bad_record = options.get("on_bad_record", "reject")
        self.max_record_bytes = int(options.get("max_record_bytes", MAX_RECORD_BYTES))

    def partitions(self) -> list[InputPartition]:
        return [InputPartition(path) for path in self.files]

    def read(self, partition: InputPartition) -> Iterator:
        quiet_trafilatura()
        yield from arrow_batches(self.file_rows(partition.value))

    def file_rows(self, path: str) -> Iterator[dict]:
        source, fmt = local_path(path), format_of(path)
        try:
            fh = open_input(path, self.s3)
        except Exception as exc:  # one unreadable file (gone, no permission) does not stop the others
            if self.on_bad_record == "fail":
                raise
            yield document(source, None, None, source, fmt, f"bad_record: {source}: could not be opened ({first_line(exc)})")
            return
        with fh:
            yield from record_rows(fh, source, fmt, self.max_record_bytes)


def arrow_batches(rows: Iterator[dict]) -> Iterator:
    """Rows as Arrow record batches of at most BATCH_ROWS rows or about BATCH_CHARS characters."""
    import pyarrow as pa

    schema = pa.schema([(c, pa.string()) for c in READER_COLUMNS])
    batch: list[dict] = []
    chars = 0
    for row in rows:
        batch.append(row)
        chars += len(row["text"] or "")
        if len(batch) >= BATCH_ROWS or chars >= BATCH_CHARS:
            yield pa.RecordBatch.from_pylist(batch, schema=schema)
            batch, chars = [], 0
    if batch:
        yield pa.RecordBatch.from_pylist(batch, schema=schema)
