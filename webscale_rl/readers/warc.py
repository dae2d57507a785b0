"""WARC and WET files (web crawls), read as a stream of records: one record's body at a time is in
memory (at most `MAX_RECORD_BYTES`), whatever the size of the file.

- A `response` record that is a successful HTML page becomes a document (main text by
  trafilatura, decoded by its declared charset); a `conversion` record (a Common Crawl WET file's
  extracted text) becomes a document with its text as is. Both keep their `WARC-Target-URI` as url.
- Every other record is a reader row with `READ_ERROR` set, so ingest lands it in `rejections`
  and the run's report counts it by reason (`doc_id` `<file>@<byte offset>`, stable across runs):
  `warc_skipped` (warcinfo, request, metadata, revisit, redirects, error pages, non-HTML
  responses), `too_large` (a body over `MAX_RECORD_BYTES`), `warc_truncated` (a record that ends
  early or cannot be parsed, or bytes after the last record: reading stops there, the records
  before it are kept).
Byte offsets are those of the file as stored (of the gzip member, for a .gz file)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

from warcio.archiveiterator import ArchiveIterator

from .charset import charset_of, decode_bytes
from .columns import document, first_line
from .html_text import html_to_text

# Largest record body read into memory; a bigger one is a `too_large` rejection, streamed past.
MAX_RECORD_BYTES = 20_000_000
WARC_SKIPPED = "warc_skipped"
WARC_TRUNCATED = "warc_truncated"
TOO_LARGE = "too_large"
_SCAN_BYTES = 1 << 20
_WHITESPACE = b"\r\n\t \x00"


def warc_documents(path: str, content: bytes, fmt: str = "warc") -> Iterator[dict]:
    """Reader rows of a WARC/WET file held in memory (tests, and stores the stream cannot open)."""
    yield from record_rows(io.BytesIO(content), path, fmt)


def record_rows(fh: IO[bytes], path: str, fmt: str, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[dict]:
    """Reader rows of a WARC/WET stream (`fh` seekable: the tail after the last record is checked),
    one record at a time: documents, and a rejection row for every record that is not one."""

    def rejection(reason: str, offset: int, url: str | None, detail: str) -> dict:
        return document(f"{path}@{offset}", url, None, path, fmt, f"{reason}: {detail}")

    iterator = ArchiveIterator(fh)
    offset, url = 0, None
    try:
        for record in iterator:
            # (get_record_offset reads the record to its end: ask only after reading the body)
            url = record.rec_headers.get_header("WARC-Target-URI")
            kind = _skipped_kind(record)
            if kind:
                offset = iterator.get_record_offset()
                yield rejection(WARC_SKIPPED, offset, url, f"record at byte offset {offset} is not a document: {kind}" + (f" ({url})" if url else ""))
                continue
            body = _read_at_most(record.content_stream(), max_record_bytes)
            offset = iterator.get_record_offset()
            if body is None:
                detail = f"record at byte offset {offset} holds {record.length} bytes, over the reader's cap of {max_record_bytes} bytes ({url})"
                yield rejection(TOO_LARGE, offset, url, detail)
                continue
            missing = getattr(record.raw_stream, "limit", 0)
            if missing:  # warcio returns a short body without complaint when the file ends early
                yield rejection(WARC_TRUNCATED, offset, url, f"record at byte offset {offset} ends {missing} byte(s) early ({url})")
                return
            yield document(None, url, _text_of(record, body), path, fmt)
        end = getattr(iterator, "offset", None)
        if end is not None and fh.seekable():
            yield from _trailing_garbage(fh, end, rejection)
    except Exception as exc:  # corrupt data: keep the records read so far, report where it broke
        yield rejection(WARC_TRUNCATED, offset, url, f"unreadable record after byte offset {offset}: {first_line(exc)}")


def _skipped_kind(record) -> str | None:
    """Why a record is not a document (its kind, for the rejection detail), or None for one."""
    if record.rec_type == "conversion":
        return None
    if record.rec_type != "response" or record.http_headers is None:
        return f"{record.rec_type} record"
    status = record.http_headers.get_statuscode() or ""
    content_type = record.http_headers.get_header("Content-Type") or ""
    # Redirects and error pages carry boilerplate bodies, not documents.
    if not status.startswith("2") or "html" not in content_type.lower():
        return f"response {status or '?'} {content_type.split(';')[0].strip() or '?'}"
    return None


def _text_of(record, body: bytes) -> str:
    if record.rec_type == "conversion":  # already extracted text (UTF-8 in Common Crawl)
        return decode_bytes(body, charset_of(record.rec_headers.get_header("Content-Type")))
    content_type = record.http_headers.get_header("Content-Type") or ""
    return html_to_text(decode_bytes(body, charset_of(content_type), html=True), record.rec_headers.get_header("WARC-Target-URI"))


def _read_at_most(stream, limit: int) -> bytes | None:
    """The stream's bytes, or None when it holds more than `limit` (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_SCAN_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def _trailing_garbage(fh: IO[bytes], end: int, rejection) -> Iterator[dict]:
    """A gzip member cut mid-way is dropped silently by warcio: report bytes after the last record."""
    fh.seek(end)
    while chunk := fh.read(_SCAN_BYTES):
        if chunk.strip(_WHITESPACE):
            size = fh.seek(0, io.SEEK_END)
            yield rejection(WARC_TRUNCATED, end, None, f"data from byte offset {end} to {size} is not a complete record (truncated file?)")
            return
