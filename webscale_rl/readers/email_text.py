"""Text of an e-mail message (RFC 822 / `.eml`), parsed by the standard library's `email`."""

from __future__ import annotations

import email
from email import policy

from .html_text import html_to_text


def email_to_text(content: bytes) -> str:
    """Subject and body of an RFC 822 message (plain-text part preferred, else HTML as text).
    Addresses and other headers are left out: they are personal data, not content."""
    try:
        msg = email.message_from_bytes(content, policy=policy.default)
        subject = str(msg.get("subject", "") or "").strip()
        part = msg.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        if part is not None and part.get_content_type() == "text/html":
            body = html_to_text(body)
    except Exception:  # a broken message is still text; the later stages judge it
        return content.decode("utf-8", errors="replace")
    return (f"{subject}\n\n{body}" if subject else body).strip()
