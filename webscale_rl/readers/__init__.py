"""Read input documents (JSONL, Parquet, WARC, HTML, plain text) into one DataFrame.

Every format ends up in the same five string columns, `DOCUMENT_COLUMNS`. Problems a user can
fix (a missing file, a bad JSON line, a Parquet file without `text`) are found before any work
starts and raised as `InputError`, whose message names the file and, for JSONL, the line.

Scale: documents never pass through the driver. Only the DataFrame API is used (no RDD, no
SparkContext), so the same code runs under Spark Connect. JSONL is read as text lines and parsed
with Spark's VARIANT functions, so one aggregate query both validates every line (valid JSON
object, `text` present and a string) and the same parse yields the columns; the file is re-read
in Python only on the error path, to report the line number. HTML/TXT/WARC files are read with
the `binaryFile` source and parsed on the executors (trafilatura, warcio) in `mapInPandas`.

Local paths (and `file:` URIs) are listed and pre-checked in Python; other URIs (s3a://,
abfss://, ...) are listed through Spark and get only the checks Spark itself can make.
"""

from __future__ import annotations

import gzip
import html.parser
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

DOCUMENT_COLUMNS = ["id", "url", "text", "source", "source_format"]
DOCUMENT_SCHEMA = StructType(
    [
        StructField("id", StringType(), True),
        StructField("url", StringType(), True),
        StructField("text", StringType(), True),
        StructField("source", StringType(), True),
        StructField("source_format", StringType(), True),
    ]
)

# Longest suffix first, so "x.warc.gz" is a WARC and not gzip'd JSONL.
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".warc.gz": "warc",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".warc": "warc",
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".eml": "eml",
}
SUPPORTED_SUFFIXES = ", ".join(FORMAT_BY_SUFFIX)
# Set by a reader for an input it found but could not turn into a document (e.g. a truncated WARC
# record): "<reason>: <detail>". Ingest rejects such rows with that reason, so nothing is lost.
READ_ERROR = "_read_error"
READER_SCHEMA = StructType(DOCUMENT_SCHEMA.fields + [StructField(READ_ERROR, StringType(), True)])
READER_COLUMNS = DOCUMENT_COLUMNS + [READ_ERROR]
BINARY_FORMATS = ("warc", "html", "txt", "eml")
# One file = one document: an empty file is an empty document (`empty_text`), not a broken input.
SINGLE_DOCUMENT_FORMATS = ("html", "txt", "eml")  # parsed from bytes on the executors

# Rows per pandas batch yielded by the executor-side parsers: bounds memory for big WARC files.
OUTPUT_BATCH_ROWS = 1000
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
# Spark ignores files whose name starts with these, even when a file is named explicitly.
HIDDEN_PREFIXES = (".", "_")
# Same whitespace as Java's \s, so the Python re-scan counts blank lines exactly as Spark does.
JAVA_WHITESPACE = " \t\n\x0b\x0c\r"
BOM = "\ufeff"


class InputError(ValueError):
    """An input file the user must fix; the message names the file (and the JSONL line)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def read_documents(spark: SparkSession, paths: list[str], limit: int | None = None) -> DataFrame:
    """One DataFrame of documents (`READER_COLUMNS`: `DOCUMENT_COLUMNS` and `READ_ERROR`) from
    files and folders of any supported format."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("read_documents needs at least one path")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")

    files_by_format, delta_tables = _discover(spark, [str(p) for p in paths])
    _precheck_local_files(files_by_format)

    frames: list[DataFrame] = []
    if files_by_format["jsonl"]:
        frames.append(_read_jsonl(spark, files_by_format["jsonl"]))
    if files_by_format["parquet"]:
        frames.extend(_read_parquet_files(spark, files_by_format["parquet"]))
    for table in delta_tables:
        frames.append(_read_delta_table(spark, table))
    # Spark's file sources skip zero-length files: an empty one-document file is made here instead,
    # so it still ends as an `empty_text` rejection and nothing vanishes.
    empty = [f for fmt in SINGLE_DOCUMENT_FORMATS for f in files_by_format[fmt] if is_local_path(f) and os.path.getsize(_local_path(f)) == 0]
    if empty:
        rows = [_document(None, None, "", _local_path(f), format_of(f)) for f in empty]
        frames.append(spark.createDataFrame([tuple(r[c] for c in READER_COLUMNS) for r in rows], READER_SCHEMA))
    binary_files = [f for fmt in BINARY_FORMATS for f in files_by_format[fmt] if f not in empty]
    if binary_files:
        frames.append(_read_binary_documents(spark, binary_files))

    documents = frames[0]
    for frame in frames[1:]:
        documents = documents.unionByName(frame)
    return documents.limit(limit) if limit is not None else documents


# --------------------------------------------------------------------------------------------
# Finding the files


def format_of(path: str) -> str | None:
    """The input format a file name implies, or None if the extension is not supported."""
    name = os.path.basename(path).lower()
    for suffix, fmt in FORMAT_BY_SUFFIX.items():
        if name.endswith(suffix):
            return fmt
    return None


def is_local_path(path: str) -> bool:
    """Plain paths and file: URIs are local; anything with another scheme goes through Spark."""
    return path.startswith("file:") or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path)


def _local_path(path: str) -> str:
    """`file:/x/y` (binaryFile's path column, and local paths) → `/x/y`; other URIs unchanged."""
    return re.sub(r"^file:(//)?", "", path)


def _discover(spark: SparkSession, paths: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Files per format (in a stable order, without repeats) and Delta table folders."""
    files_by_format: dict[str, list[str]] = {fmt: [] for fmt in set(FORMAT_BY_SUFFIX.values())}
    delta_tables: list[str] = []
    seen: set[str] = set()
    for given in paths:
        if is_local_path(given):
            found, tables = _list_local(_local_path(given))
        else:
            found, tables = _list_with_spark(spark, given), []
        delta_tables.extend(t for t in tables if t not in delta_tables)
        for file in found:
            if file not in seen:
                seen.add(file)
                files_by_format[format_of(file)].append(file)
    return files_by_format, delta_tables


def _list_local(path: str) -> tuple[list[str], list[str]]:
    """Supported files under a local path; a folder holding `_delta_log` is a Delta table."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(path, "no such file or folder")
    p = Path(os.path.abspath(p))  # the same normalised form Spark reports in file paths
    if p.is_file():
        if format_of(p.name) is None:
            raise InputError(str(p), f"unsupported file type; supported extensions: {SUPPORTED_SUFFIXES}")
        if p.name.startswith(HIDDEN_PREFIXES):
            # Spark silently skips such files even when named explicitly: say so instead.
            raise InputError(str(p), "file names starting with '.' or '_' are ignored by Spark; rename the file")
        return [str(p)], []
    if (p / "_delta_log").is_dir():
        # Reading the part files directly would include files the table has already removed.
        return [], [str(p)]
    files: list[str] = []
    tables: list[str] = []
    for root, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN_PREFIXES))
        for d in list(dirs):
            if (Path(root) / d / "_delta_log").is_dir():
                tables.append(str(Path(root) / d))
                dirs.remove(d)
        files.extend(
            str(Path(root) / n) for n in sorted(names) if not n.startswith(HIDDEN_PREFIXES) and format_of(n)
        )
    if not files and not tables:
        raise InputError(str(p), f"folder holds no supported input file (extensions: {SUPPORTED_SUFFIXES})")
    _report_skipped(p)
    return files, tables


def _report_skipped(folder: Path) -> None:
    """Files a folder walk leaves out are named, never dropped in silence."""
    skipped = [
        str(Path(root) / n)
        for root, dirs, names in os.walk(folder)
        for n in names
        if not n.startswith(HIDDEN_PREFIXES) and format_of(n) is None and "_delta_log" not in root
    ]
    if skipped:
        shown = ", ".join(sorted(skipped)[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        logging.getLogger("webscale_rl.readers").warning(
            "skipped %d file(s) of unsupported type in %s: %s (supported: %s)", len(skipped), folder, shown, SUPPORTED_SUFFIXES
        )


def _list_with_spark(spark: SparkSession, path: str) -> list[str]:
    """Supported files under a remote path, listed by Spark (only names and sizes are read)."""
    try:
        listing = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(_escape_glob(path))
            .select("path", "length")  # the content column is pruned, files are not read
            .collect()
        )
    except Exception as exc:  # AnalysisException PATH_NOT_FOUND, or a file system error
        raise InputError(path, f"cannot list: {_first_line(exc)}") from exc
    files = sorted(row.path for row in listing if format_of(row.path))
    if not files:
        if len(listing) == 1 and listing[0].path.rstrip("/") == path.rstrip("/"):
            raise InputError(path, f"unsupported file type; supported extensions: {SUPPORTED_SUFFIXES}")
        raise InputError(path, f"holds no supported input file (extensions: {SUPPORTED_SUFFIXES})")
    empty = [row.path for row in listing if row.length == 0 and format_of(row.path) not in (None, *SINGLE_DOCUMENT_FORMATS)]
    if empty:
        raise InputError(empty[0], "file is empty")
    return files


# --------------------------------------------------------------------------------------------
# Checks made before any Spark work, on local files only (cheap: headers and footers)


def _precheck_local_files(files_by_format: dict[str, list[str]]) -> None:
    for fmt, files in files_by_format.items():
        for file in files:
            if is_local_path(file):
                _precheck_local_file(file, fmt)


def _precheck_local_file(path: str, fmt: str) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if not head:
        if fmt in SINGLE_DOCUMENT_FORMATS:
            return
        raise InputError(path, "file is empty")
    if path.lower().endswith(".gz") and head[:2] != GZIP_MAGIC:
        raise InputError(path, "file name ends in .gz but the file is not gzip-compressed")
    if fmt == "parquet" and head != PARQUET_MAGIC:
        raise InputError(path, "not a Parquet file (no PAR1 header)")
    if fmt == "warc":
        _check_warc_start(path)


def _check_warc_start(path: str) -> None:
    """A WARC must at least start with one readable record; later damage is tolerated."""
    from warcio.archiveiterator import ArchiveIterator

    try:
        with open(path, "rb") as fh:
            first = next(iter(ArchiveIterator(fh)))
    except StopIteration:
        raise InputError(path, "not a valid WARC file (no record found)") from None
    except Exception as exc:  # warcio raises ArchiveLoadFailed, gzip/zlib errors, ...
        raise InputError(path, f"not a valid WARC file: {_first_line(exc)}") from exc
    # warcio falls back to the old ARC format, whose loose header parses almost any text line.
    if not first.format.startswith("warc"):
        raise InputError(path, f"not a valid WARC file (first record parses only as {first.format!r})")


# --------------------------------------------------------------------------------------------
# JSONL


def _read_jsonl(spark: SparkSession, files: list[str]) -> DataFrame:
    lines = spark.read.text([_escape_glob(f) for f in files]).select(
        F.regexp_replace("value", f"^{BOM}", "").alias("value"),
        _source_from_metadata().alias("source"),
    )
    parsed = lines.where(F.col("value").rlike(r"\S")).select(
        "value", "source", F.try_parse_json("value").alias("v")
    )
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
        lines, bad = stats.get(_local_path(file), (0, 0))
        if lines == 0:
            raise InputError(file, "file is empty (no non-blank line)")
        if bad:
            _raise_first_bad_line(file, bad)


def _raise_first_bad_line(path: str, bad_count: int) -> None:
    if is_local_path(path):
        with _open_text(_local_path(path)) as fh:
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
                with gzip.open(_local_path(file), "rb") as fh:
                    while fh.read(1 << 20):
                        pass
            except (OSError, EOFError) as gz_exc:
                raise InputError(file, f"corrupt gzip data: {gz_exc}") from exc


# --------------------------------------------------------------------------------------------
# Parquet and Delta


def _read_parquet_files(spark: SparkSession, files: list[str]) -> list[DataFrame]:
    """Local files are checked one by one from their footers, then read in groups of equal schema."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for file in files:
        if is_local_path(file):
            key = _parquet_column_types(file)
        else:
            key = ("remote",)
        groups.setdefault(key, []).append(file)
    return [_read_parquet_group(spark, group) for group in groups.values()]


def _parquet_column_types(path: str) -> tuple[str, ...]:
    """Types of text/id/url from the footer; raises InputError when `text` is missing or not a string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(_local_path(path))
    except Exception as exc:  # ArrowInvalid: not parquet / truncated footer
        raise InputError(path, f"not a readable Parquet file: {_first_line(exc)}") from exc
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
        frame = spark.read.parquet(*[_escape_glob(f) for f in files])
    except Exception as exc:
        raise InputError(files[0], f"cannot read Parquet: {_first_line(exc)}") from exc
    _check_text_column(frame, files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)")
    return _documents_from_columns(frame, _source_from_metadata(), "parquet")


def _read_delta_table(spark: SparkSession, folder: str) -> DataFrame:
    try:
        frame = spark.read.format("delta").load(_escape_glob(folder))
    except Exception as exc:
        raise InputError(folder, f"cannot read Delta table: {_first_line(exc)}") from exc
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


# --------------------------------------------------------------------------------------------
# HTML, TXT, WARC: bytes parsed on the executors


def _read_binary_documents(spark: SparkSession, files: list[str]) -> DataFrame:
    raw = spark.read.format("binaryFile").load([_escape_glob(f) for f in files])
    return raw.select("path", "content").mapInPandas(_parse_binary_batches, schema=READER_SCHEMA)


def _parse_binary_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Executor side: one input row per file, any number of documents out (a WARC holds many)."""
    _quiet_trafilatura()
    rows: list[dict] = []
    for batch in batches:
        for path, content in zip(batch["path"], batch["content"]):
            for row in parse_file_bytes(_local_path(path), bytes(content)):
                rows.append(row)
                if len(rows) >= OUTPUT_BATCH_ROWS:
                    yield pd.DataFrame(rows, columns=READER_COLUMNS)
                    rows = []
    if rows:
        yield pd.DataFrame(rows, columns=READER_COLUMNS)


def parse_file_bytes(path: str, content: bytes) -> Iterator[dict]:
    """Documents in one HTML/TXT/WARC file (plain Python, so it is testable without Spark)."""
    fmt = format_of(path)
    if fmt == "txt":
        yield _document(None, None, decode_bytes(content).lstrip(BOM), path, "txt")
    elif fmt == "html":
        yield _document(None, None, html_to_text(decode_bytes(content, html=True)), path, "html")
    elif fmt == "warc":
        yield from _warc_documents(path, content)
    elif fmt == "eml":
        yield _document(None, None, email_to_text(content), path, "eml")


def email_to_text(content: bytes) -> str:
    """Subject and body of an RFC 822 message (plain-text part preferred, else HTML as text).
    Addresses and other headers are left out: they are personal data, not content."""
    import email
    from email import policy

    try:
        msg = email.message_from_bytes(content, policy=policy.default)
        subject = str(msg.get("subject", "") or "").strip()
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        if part is not None and part.get_content_type() == "text/html":
            body = html_to_text(body)
    except Exception:  # a broken message is still text; the later stages judge it
        return _decode(content)
    return (f"{subject}\n\n{body}" if subject else body).strip()


def _document(doc_id: str | None, url: str | None, text: str | None, source: str, fmt: str, read_error: str | None = None) -> dict:
    return {"id": doc_id, "url": url, "text": text, "source": source, "source_format": fmt, READ_ERROR: read_error}


def _decode(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
# WHATWG: these labels mean windows-1252 on the web.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}


def charset_of(content_type: str | None) -> str | None:
    """`text/html; charset=Shift_JIS` → `Shift_JIS`."""
    m = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", content_type or "", re.I)
    return m.group(1) if m else None


def decode_bytes(content: bytes, declared: str | None = None, html: bool = False) -> str:
    """Text of untrusted bytes: a BOM wins, then the declared charset (HTTP header, then an HTML
    <meta> in the first 4 KB) if it decodes cleanly, then UTF-8. Whatever is left undecodable
    becomes U+FFFD, which ingest counts (`binary_text` when there is too much of it)."""
    import codecs

    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if content.startswith(bom):
            return content[len(bom) :].decode(encoding, errors="replace")
    candidates = [declared]
    if html:
        m = _META_CHARSET.search(content[:4096])
        candidates.append(m.group(1).decode("ascii", "ignore") if m else None)
    for name in candidates:
        if not name:
            continue
        name = _CHARSET_ALIASES.get(name.lower(), name)
        try:
            codecs.lookup(name)
            return content.decode(name)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue  # an unknown or wrong declaration: fall back to UTF-8
    return _decode(content)


def _warc_documents(path: str, content: bytes) -> Iterator[dict]:
    """Documents of a WARC file; a truncated or corrupt record becomes a `warc_truncated` row."""
    for url, html_text, problem in iter_warc_html(content):
        if problem:
            yield _document(f"{path}@{problem[0]}", url, None, path, "warc", f"warc_truncated: {problem[1]}")
        else:
            yield _document(None, url, html_to_text(html_text, url), path, "warc")


def iter_warc_html(content: bytes) -> Iterator[tuple[str | None, str | None, tuple[int, str] | None]]:
    """(url, html, None) of successful HTML `response` records, decoded by their declared charset;
    (url, None, (offset, detail)) for a record that ends early or cannot be parsed — reading stops
    there, the records before it are kept. Other records (warcinfo, request, metadata, redirects,
    error pages, non-HTML responses) are not documents: skipped, and counted in a warning."""
    from warcio.archiveiterator import ArchiveIterator

    skipped: dict[str, int] = {}
    iterator = ArchiveIterator(io.BytesIO(content))
    offset, url = 0, None
    try:
        for record in iterator:
            # (get_record_offset reads the record to its end: ask only after reading the body)
            url = record.rec_headers.get_header("WARC-Target-URI")
            if record.rec_type != "response" or record.http_headers is None:
                skipped[record.rec_type] = skipped.get(record.rec_type, 0) + 1
                offset = iterator.get_record_offset()
                continue
            status = record.http_headers.get_statuscode() or ""
            content_type = record.http_headers.get_header("Content-Type") or ""
            # Redirects and error pages carry boilerplate bodies, not documents.
            if not status.startswith("2") or "html" not in content_type.lower():
                kind = f"response {status or '?'} {content_type.split(';')[0].strip() or '?'}"
                skipped[kind] = skipped.get(kind, 0) + 1
                offset = iterator.get_record_offset()
                continue
            body = record.content_stream().read()
            offset = iterator.get_record_offset()
            missing = getattr(record.raw_stream, "limit", 0)
            if missing:  # warcio returns a short body without complaint when the file ends early
                yield url, None, (offset, f"record at byte offset {offset} ends {missing} byte(s) early ({url})")
                return
            yield url, decode_bytes(body, charset_of(content_type), html=True), None
        end = getattr(iterator, "offset", len(content))
        if content[end:].strip(b"\r\n\t \x00"):  # a gzip member cut mid-way is dropped silently by warcio
            yield None, None, (end, f"data from byte offset {end} to {len(content)} is not a complete record (truncated file?)")
    except Exception as exc:  # corrupt data: keep the records read so far, report where it broke
        yield url, None, (offset, f"unreadable record after byte offset {offset}: {_first_line(exc)}")
    finally:
        if skipped:
            logging.getLogger("webscale_rl.readers").warning(
                "WARC: skipped %d record(s) that are not HTML documents: %s", sum(skipped.values()), skipped
            )


def html_to_text(html: str, url: str | None = None) -> str:
    """Main text by trafilatura; a plain tag-stripped text when it finds none, so nothing is lost."""
    import trafilatura

    try:
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True)
    except Exception:  # lxml can fail on pathological markup
        text = None
    return text if text else strip_tags(html)


class _TextCollector(html.parser.HTMLParser):
    SKIPPED = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIPPED:
            self.skip_depth += 1

    def handle_endtag(self, tag):
        if tag in self.SKIPPED and self.skip_depth:
            self.skip_depth -= 1

    def handle_data(self, data):
        if not self.skip_depth:
            self.parts.append(data)


def strip_tags(html: str) -> str:
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:
        pass
    lines = (" ".join(line.split()) for line in "".join(collector.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _quiet_trafilatura() -> None:
    import logging

    # trafilatura logs a warning for every page it finds empty; at scale that floods executor logs.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)


# --------------------------------------------------------------------------------------------
# Paths


def _source_from_metadata() -> Column:
    """The file path of each row, as the user sees it: `_metadata.file_path` is a URI-encoded URI."""
    uri = F.col("_metadata.file_path")
    # url_decode also turns '+' into a space; a '+' in a URI path is literal, so protect it first.
    decoded = F.url_decode(F.regexp_replace(uri, r"\+", "%2B"))
    return F.regexp_replace(decoded, r"^file:(//)?", "")


def _escape_glob(path: str) -> str:
    """Spark expands glob characters in paths; a file literally named `a[1].jsonl` must not be."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
