"""File names and paths: which format a name implies, local or remote, and paths as Spark needs
them (globs escaped) and as users see them (URI-decoded)."""

from __future__ import annotations

import os
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

# Longest suffix first, so "x.warc.gz" is a WARC and not gzip'd JSONL.
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".warc.wet.gz": "wet",
    ".wet.gz": "wet",
    ".warc.gz": "warc",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".warc.wet": "wet",
    ".wet": "wet",
    ".warc": "warc",
    ".html": "html",
    ".htm": "html",
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
    ".eml": "eml",
}
SUPPORTED_SUFFIXES = ", ".join(FORMAT_BY_SUFFIX)
BINARY_FORMATS = ("html", "txt", "eml")
# Files of WARC records (web crawls; WET: Common Crawl's extracted text), streamed record by record.
RECORD_FORMATS = ("warc", "wet")
# One file = one document: an empty file is an empty document (`empty_text`), not a broken input.
SINGLE_DOCUMENT_FORMATS = ("html", "txt", "eml")  # parsed from bytes on the executors
# Spark ignores files whose name starts with these, even when a file is named explicitly.
HIDDEN_PREFIXES = (".", "_")


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


def local_path(path: str) -> str:
    """`file:/x/y` (binaryFile's path column, and local paths) → `/x/y`; other URIs unchanged."""
    return re.sub(r"^file:(//)?", "", path)


def escape_glob(path: str) -> str:
    """Spark expands glob characters in paths; a file literally named `a[1].jsonl` must not be."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def source_from_metadata() -> Column:
    """The file path of each row, as the user sees it: `_metadata.file_path` is a URI-encoded URI."""
    uri = F.col("_metadata.file_path")
    # url_decode also turns '+' into a space; a '+' in a URI path is literal, so protect it first.
    decoded = F.url_decode(F.regexp_replace(uri, r"\+", "%2B"))
    return F.regexp_replace(decoded, r"^file:(//)?", "")
