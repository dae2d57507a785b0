"""Common Crawl style inputs written by the tests: a small WET file (warcinfo + conversion records,
optionally with a cut tail) and a ~1 GB WARC.gz written record by record (a few precompressed gzip
members repeated, so it takes seconds and never sits in memory)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from .hostile import html_page


def _members(records) -> list[bytes]:
    """Each record as its own gzip member (as Common Crawl writes them)."""
    out = []
    for make in records:
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=True)
        writer.write_record(make(writer))
        out.append(buf.getvalue())
    return out


def warcinfo(name: str):
    return lambda w: w.create_warcinfo_record(name, {"software": "webscale-rl tests", "format": "WARC File Format 1.0"})


def conversion(url: str, text: str):
    return lambda w: w.create_warc_record(url, "conversion", payload=io.BytesIO(text.encode("utf-8")), warc_content_type="text/plain")


def response(url: str, body: bytes, content_type: str, status: str = "200 OK"):
    headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return lambda w: w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)


def write_wet(path: Path, pages: list[tuple[str, str]], cut_last_bytes: int = 0) -> list[int]:
    """A .warc.wet.gz: a warcinfo record, then one conversion record per (url, text); the last
    `cut_last_bytes` bytes cut off. → the byte offset of every record (warcinfo first)."""
    members = _members([warcinfo(path.name)] + [conversion(url, text) for url, text in pages])
    offsets = [sum(len(m) for m in members[:i]) for i in range(len(members))]
    data = b"".join(members)
    path.write_bytes(data[: len(data) - cut_last_bytes])
    return offsets


@dataclass(frozen=True)
class LargeWarc:
    path: Path
    size: int
    pages: list[str]  # the URLs of the HTML pages (documents)
    images: int  # non-HTML responses (warc_skipped), each `image_bytes` long
    image_bytes: int
    too_large_offset: int  # the byte offset of the one HTML page over the reader's cap
    too_large_length: int  # its record's Content-Length


def write_large_warc(path: Path, size: int, image_bytes: int = 8_000_000, too_large_bytes: int = 25_000_000) -> LargeWarc:
    """A WARC.gz of at least `size` bytes: warcinfo, two HTML pages, one HTML page of
    `too_large_bytes`, then incompressible image responses repeated up to `size`, then two more
    HTML pages (so the records after a GB of data are checked too)."""
    image = _members([response("https://example.org/photo.jpg", os.urandom(image_bytes), "image/jpeg")])[0]
    big_html = b"<html><body>" + b"<p>A very long page.</p>" * (too_large_bytes // 24) + b"</body></html>"
    head = _members(
        [
            warcinfo(path.name),
            response("https://example.org/first", html_page("The first page").encode(), "text/html; charset=utf-8"),
            response("https://example.org/second", html_page("The second page").encode(), "text/html; charset=utf-8"),
        ]
    )
    big = _members([response("https://example.org/huge", big_html, "text/html")])[0]
    tail = _members(
        [
            response("https://example.org/third", html_page("The third page").encode(), "text/html; charset=utf-8"),
            response("https://example.org/fourth", html_page("The fourth page").encode(), "text/html; charset=utf-8"),
        ]
    )
    images = 0
    with path.open("wb") as fh:
        for member in head:
            fh.write(member)
        too_large_offset = fh.tell()
        fh.write(big)
        while fh.tell() < size:
            fh.write(image)
            images += 1
        for member in tail:
            fh.write(member)
        written = fh.tell()
    # the HTTP headers count in the record's Content-Length
    http_head = len(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n")
    pages = ["https://example.org/first", "https://example.org/second", "https://example.org/third", "https://example.org/fourth"]
    return LargeWarc(path, written, pages, images, image_bytes, too_large_offset, len(big_html) + http_head)
