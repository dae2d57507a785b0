"""Text of an HTML page: the main content by trafilatura, or all visible text when it finds none.

The fallback tokenizes with the standard library's `html.parser` rather than building a tree with
lxml: libxml2 stops at a nesting depth of a few thousand elements and drops what lies deeper (a
hostile page of 10 000 nested <div> keeps its text only this way), and trafilatura gives up on the
same pages for that reason."""

from __future__ import annotations

import html.parser
import logging

import trafilatura

# Elements whose content is never visible text (scripts can carry text written for a model).
INVISIBLE_ELEMENTS = frozenset({"script", "style", "noscript", "template", "head"})


def html_to_text(html: str, url: str | None = None) -> str:
    """Main text by trafilatura; a plain tag-stripped text when it finds none, so nothing is lost."""
    try:
        text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True)
    except Exception:  # lxml can fail on pathological markup
        text = None
    return text if text else strip_tags(html)


class _VisibleText(html.parser.HTMLParser):
    """Collects the character data outside `INVISIBLE_ELEMENTS` (entities already decoded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.invisible_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in INVISIBLE_ELEMENTS:
            self.invisible_depth += 1

    def handle_endtag(self, tag):
        if tag in INVISIBLE_ELEMENTS and self.invisible_depth:
            self.invisible_depth -= 1

    def handle_data(self, data):
        if not self.invisible_depth:
            self.parts.append(data)


def strip_tags(html: str) -> str:
    """Visible text of `html`, one line per non-blank source line, runs of spaces collapsed."""
    collector = _VisibleText()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # keep what was collected before the markup broke the tokenizer
        pass
    lines = (" ".join(line.split()) for line in "".join(collector.parts).splitlines())
    return "\n".join(line for line in lines if line)


def quiet_trafilatura() -> None:
    # trafilatura logs a warning for every page it finds empty; at scale that floods executor logs.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)
