"""Text of untrusted bytes. The order is the WHATWG one for HTML: a byte-order mark wins, then the
declared charset (the HTTP header, then a <meta> in the first 4 KB), then UTF-8. A declaration is
used only if the bytes decode cleanly with it. No statistical guess is made when nothing is
declared: a mostly-UTF-8 text with a stray byte stays UTF-8 with one U+FFFD, where a detector
would re-read the whole text as another charset; ingest counts the U+FFFD (`binary_text` when
there is too much of it)."""

from __future__ import annotations

import codecs
from email.message import Message

import lxml.etree
import lxml.html
from charset_normalizer.utils import identify_sig_or_bom

from .columns import BOM

META_SCAN_BYTES = 4096
# WHATWG: labels that resolve to these Python codecs mean windows-1252 on the web.
WINDOWS_1252_ON_THE_WEB = {"iso8859-1", "ascii"}
_HEAD_PARSER = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)


def charset_of(content_type: str | None) -> str | None:
    """`text/html; charset=Shift_JIS` → `Shift_JIS` (parsed as a MIME header parameter)."""
    if not content_type:
        return None
    header = Message()
    header["Content-Type"] = content_type
    charset = header.get_param("charset")
    # (a tuple is an RFC 2231 encoded value, which no HTTP server sends for a charset)
    return (charset.strip(" '\"") or None) if isinstance(charset, str) else None


def decode_bytes(content: bytes, declared: str | None = None, html: bool = False) -> str:
    """Text of `content`: BOM, else `declared`, else (for HTML) the <meta> charset, else UTF-8;
    whatever is left undecodable becomes U+FFFD."""
    bom_encoding, _ = identify_sig_or_bom(content)
    if bom_encoding:
        # The codec reads the mark itself (and the byte order from it); a leftover U+FEFF is dropped.
        return content.decode(bom_encoding, errors="replace").removeprefix(BOM)
    for name in (declared, meta_charset(content) if html else None):
        text = _decode_strictly(content, name) if name else None
        if text is not None:
            return text
    return content.decode("utf-8", errors="replace")


def meta_charset(content: bytes) -> str | None:
    """The charset of the first <meta charset> or <meta http-equiv=Content-Type> in the first 4 KB,
    as the HTML parser sees it (a <meta> inside a comment or a script does not count)."""
    try:
        head = lxml.html.document_fromstring(content[:META_SCAN_BYTES], parser=_HEAD_PARSER)
    except (lxml.etree.ParserError, ValueError):  # nothing but whitespace or a bare XML prolog
        return None
    for meta in head.iter("meta"):
        charset = meta.get("charset")
        if charset is None and (meta.get("http-equiv") or "").strip().lower() == "content-type":
            charset = charset_of(meta.get("content"))
        if charset and charset.strip():
            return charset.strip()
    return None


def _decode_strictly(content: bytes, name: str) -> str | None:
    """`content` decoded with the charset `name`, or None for an unknown name or bytes that do not
    decode cleanly (a wrong declaration)."""
    try:
        codec = codecs.lookup(name).name
        return content.decode("cp1252" if codec in WINDOWS_1252_ON_THE_WEB else codec)
    except (LookupError, UnicodeDecodeError, ValueError):
        return None
