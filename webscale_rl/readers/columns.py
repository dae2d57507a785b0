"""The columns every reader produces, the error a user must fix, and small helpers shared by the
readers."""

from __future__ import annotations

from pyspark.sql.types import StringType, StructField, StructType

DOCUMENT_COLUMNS = ["id", "url", "text", "source", "source_format"]
DOCUMENT_SCHEMA = StructType([StructField(name, StringType(), True) for name in DOCUMENT_COLUMNS])
# Set by a reader for an input it found but could not turn into a document (e.g. a truncated WARC
# record): "<reason>: <detail>". Ingest rejects such rows with that reason, so nothing is lost.
READ_ERROR = "_read_error"
READER_SCHEMA = StructType(DOCUMENT_SCHEMA.fields + [StructField(READ_ERROR, StringType(), True)])
READER_COLUMNS = DOCUMENT_COLUMNS + [READ_ERROR]
BOM = "\ufeff"


class InputError(ValueError):
    """An input file the user must fix; the message names the file (and the JSONL line)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def document(doc_id: str | None, url: str | None, text: str | None, source: str, fmt: str, read_error: str | None = None) -> dict:
    """One reader row as a dict keyed by `READER_COLUMNS`."""
    return {"id": doc_id, "url": url, "text": text, "source": source, "source_format": fmt, READ_ERROR: read_error}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Spark's run to dozens of lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
