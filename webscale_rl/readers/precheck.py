"""Checks made before any Spark work, on local files only (cheap: headers and footers), so a
file the user must fix is named before a job starts."""

from __future__ import annotations

from warcio.archiveiterator import ArchiveIterator

from .columns import InputError, first_line
from .paths import RECORD_FORMATS, SINGLE_DOCUMENT_FORMATS, is_local_path

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


def precheck_local_files(files_by_format: dict[str, list[str]]) -> None:
    for fmt, files in files_by_format.items():
        for file in files:
            if is_local_path(file):
                precheck_local_file(file, fmt)


def precheck_local_file(path: str, fmt: str) -> None:
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
    if fmt in RECORD_FORMATS:
        _check_warc_start(path)


def _check_warc_start(path: str) -> None:
    """A WARC must at least start with one readable record; later damage is tolerated."""
    try:
        with open(path, "rb") as fh:
            first = next(iter(ArchiveIterator(fh)))
    except StopIteration:
        raise InputError(path, "not a valid WARC file (no record found)") from None
    except Exception as exc:  # warcio raises ArchiveLoadFailed, gzip/zlib errors, ...
        raise InputError(path, f"not a valid WARC file: {first_line(exc)}") from exc
    # warcio falls back to the old ARC format, whose loose header parses almost any text line.
    if not first.format.startswith("warc"):
        raise InputError(path, f"not a valid WARC file (first record parses only as {first.format!r})")
