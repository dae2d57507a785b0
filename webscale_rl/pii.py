"""Optional PII scrubber: e-mail addresses, phone numbers and IP addresses in document text are
replaced by `<EMAIL>`, `<PHONE>`, `<IP>` at ingest, so no table stores them and no call sends them.

Vectorised (Spark regexp, no Python UDF). The patterns are deliberately conservative: a phone
number needs a leading `+` or the 3-3-4 North-American shape, so years, prices and large numbers
("2,850", "10 000 000", "2016-2017") are left alone.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from .config import PII_KINDS

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"

# Kind → (pattern, replacement), applied in this order (e-mail first: its host may look like an IP).
PII_PATTERNS: dict[str, tuple[str, str]] = {
    "email": (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "<EMAIL>"),
    "ip": (
        (
            rf"(?<![\w.]){_OCTET}(\.{_OCTET}){{3}}(?![\w.]*\d)"
            r"|(?<![\w:])([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
        ),
        "<IP>",
    ),
    "phone": (
        (
            r"(?<![\w+])(\+[0-9]{1,3}([ .-]?\(?[0-9]{1,4}\)?){2,5}"
            r"|\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4})(?![\w])"
        ),
        "<PHONE>",
    ),
}
# The config validates pii.kinds against config.PII_KINDS; a unit test keeps both lists equal.
__all__ = ["PII_KINDS", "PII_PATTERNS", "scrub_pii"]


def scrub_pii(text: Column, kinds: list[str] | tuple[str, ...]) -> tuple[Column, dict[str, Column]]:
    """(scrubbed text, {kind: number of replacements}) for the chosen kinds, in PII_PATTERNS order."""
    counts: dict[str, Column] = {}
    for kind, (pattern, token) in PII_PATTERNS.items():
        if kind not in kinds:
            continue
        counts[kind] = F.coalesce(F.regexp_count(text, F.lit(pattern)), F.lit(0))
        text = F.regexp_replace(text, pattern, token)
    return text, counts
