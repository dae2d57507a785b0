"""Read input documents (JSONL, Parquet, Delta, WARC, WET, HTML, plain text, e-mail) into one DataFrame.

Every format ends up in the same five string columns, `DOCUMENT_COLUMNS` (plus `READ_ERROR` for an
input found but not readable as a document). A bad record inside a file (a JSONL line that is not
a JSON object with a string `text`, or one too large to parse; a truncated WARC record; a WARC
record that is not a document, e.g. a request) is such a row, which ingest rejects naming the file and the line or byte offset, so one record never stops a
run; with `on_bad_record="fail"` a bad JSONL line raises `InputError` instead. A file that is
unusable as a whole (missing, empty, corrupt gzip, a Parquet file without a string `text`) is
found before any work starts and raised as `InputError`, whose message names the file.

Scale: documents never pass through the driver. Only the DataFrame API is used (no RDD, no
SparkContext), so the same code runs under Spark Connect. Local paths (and `file:` URIs) are
listed and pre-checked in Python; other URIs (s3a://, abfss://, ...) are listed through Spark and
get only the checks Spark itself can make.

One module per concern:
- `documents`  `read_documents`, which assembles the others
- `discovery`  finding the files and Delta tables under the given paths
- `precheck`   cheap header checks of local files before any Spark work
- `jsonl`, `jsonl_lines` (the Python twin that numbers bad lines), `parquet` (Parquet files and
  Delta tables), `files` (HTML/TXT/e-mail bytes parsed on the executors), `records` (WARC/WET
  files streamed by a Python data source, one task per file), `warc` (their records → rows),
  `html_text`, `email_text`
- `charset`    text of untrusted bytes (BOM, declared charset, UTF-8)
- `paths`, `columns`  file names, formats and paths; the output columns and `InputError`
"""

from __future__ import annotations

from .charset import charset_of, decode_bytes
from .columns import DOCUMENT_COLUMNS, DOCUMENT_SCHEMA, READ_ERROR, READER_COLUMNS, READER_SCHEMA, InputError
from .discovery import list_with_spark
from .documents import read_documents
from .email_text import email_to_text
from .files import parse_file_bytes
from .html_text import html_to_text, strip_tags
from .jsonl import OnBadRecord
from .jsonl_lines import jsonl_line_problem
from .paths import FORMAT_BY_SUFFIX, SUPPORTED_SUFFIXES, format_of, is_local_path
from .records import read_record_files
from .warc import MAX_RECORD_BYTES, record_rows

__all__ = [
    "DOCUMENT_COLUMNS",
    "DOCUMENT_SCHEMA",
    "FORMAT_BY_SUFFIX",
    "READER_COLUMNS",
    "READER_SCHEMA",
    "READ_ERROR",
    "SUPPORTED_SUFFIXES",
    "InputError",
    "MAX_RECORD_BYTES",
    "OnBadRecord",
    "charset_of",
    "decode_bytes",
    "email_to_text",
    "format_of",
    "html_to_text",
    "is_local_path",
    "jsonl_line_problem",
    "list_with_spark",
    "parse_file_bytes",
    "read_documents",
    "read_record_files",
    "record_rows",
    "strip_tags",
]
