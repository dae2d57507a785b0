"""WARC files (web crawls): the HTML `response` records become documents; a truncated or corrupt
record becomes a `warc_truncated` row, and the records before it are kept."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

from warcio.archiveiterator import ArchiveIterator

from .charset import charset_of, decode_bytes
from .columns import document, first_line
from .html_text import html_to_text

log = logging.getLogger(__name__)
# (url, html, None) for a page; (url, None, (byte offset, detail)) where reading stopped.
WarcItem = tuple[str | None, str | None, tuple[int, str] | None]


def warc_documents(path: str, content: bytes) -> Iterator[dict]:
    """Documents of a WARC file; a truncated or corrupt record becomes a `warc_truncated` row."""
    for url, html_text, problem in iter_warc_html(content):
        if problem:
            yield document(f"{path}@{problem[0]}", url, None, path, "warc", f"warc_truncated: {problem[1]}")
        else:
            yield document(None, url, html_to_text(html_text, url), path, "warc")


def iter_warc_html(content: bytes) -> Iterator[WarcItem]:
    """(url, html, None) of successful HTML `response` records, decoded by their declared charset;
    (url, None, (offset, detail)) for a record that ends early or cannot be parsed — reading stops
    there, the records before it are kept. Other records (warcinfo, request, metadata, redirects,
    error pages, non-HTML responses) are not documents: skipped, and counted in a warning."""
    skipped: dict[str, int] = {}
    iterator = ArchiveIterator(io.BytesIO(content))
    offset, url = 0, None
    try:
        for record in iterator:
            # (get_record_offset reads the record to its end: ask only after reading the body)
            url = record.rec_headers.get_header("WARC-Target-URI")
            kind = _skipped_kind(record)
            if kind:
                skipped[kind] = skipped.get(kind, 0) + 1
                offset = iterator.get_record_offset()
                continue
            body = record.content_stream().read()
            offset = iterator.get_record_offset()
            missing = getattr(record.raw_stream, "limit", 0)
            if missing:  # warcio returns a short body without complaint when the file ends early
                yield url, None, (offset, f"record at byte offset {offset} ends {missing} byte(s) early ({url})")
                return
            content_type = record.http_headers.get_header("Content-Type") or ""
            yield url, decode_bytes(body, charset_of(content_type), html=True), None
        yield from _trailing_garbage(content, getattr(iterator, "offset", len(content)))
    except Exception as exc:  # corrupt data: keep the records read so far, report where it broke
        yield url, None, (offset, f"unreadable record after byte offset {offset}: {first_line(exc)}")
    finally:
        if skipped:
            log.warning("WARC: skipped %d record(s) that are not HTML documents: %s", sum(skipped.values()), skipped)


def _skipped_kind(record) -> str | None:
    """Why a record is not a document (its kind, for the warning), or None for an HTML page."""
    if record.rec_type != "response" or record.http_headers is None:
        return record.rec_type
    status = record.http_headers.get_statuscode() or ""
    content_type = record.http_headers.get_header("Content-Type") or ""
    # Redirects and error pages carry boilerplate bodies, not documents.
    if not status.startswith("2") or "html" not in content_type.lower():
        return f"response {status or '?'} {content_type.split(';')[0].strip() or '?'}"
    return None


def _trailing_garbage(content: bytes, end: int) -> Iterator[WarcItem]:
    """A gzip member cut mid-way is dropped silently by warcio: report the bytes after the last record."""
    if content[end:].strip(b"\r\n\t \x00"):
        detail = f"data from byte offset {end} to {len(content)} is not a complete record (truncated file?)"
        yield None, None, (end, detail)
