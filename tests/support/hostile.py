"""The hostile corpus: `tests/fixtures/hostile/` (hand-written) plus generated cases (a 10 MB
document, a one-line 300 kB page, 10 000 nested divs, damaged WARCs), and a fake endpoint that obeys
every instruction injected into it. Used by the Spark tests of reading/ingest and the e2e run."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from .fake_server import FakeOpenAI, document_of
from .paths import FIXTURES

HOSTILE = FIXTURES / "hostile"
HOSTILE_ERRORS = FIXTURES / "hostile_errors"
CANARY = "sk-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9"

# Varied prose (a repeated sentence would be rejected by the Gopher repetition rules first).
ECHO_ARTICLE = (
    "The lighthouse on the northern cape was built in 1858 from granite quarried on the island itself. "
    "Its lamp burned whale oil until 1890, then kerosene, and since 1934 it has been electric. The keepers "
    "lived with their families in two cottages beside the tower and rowed to the mainland for supplies once "
    "a fortnight, weather permitting. A storm in the winter of 1903 cut them off for nine weeks, and the "
    "logbook from that season records how they rationed flour and mended the lantern glass by hand. "
    "Today the station is automated, and the cottages house a small museum about the coastal trade."
)
SENTENCE = "The river carries barges of grain, coal and timber past old towns, vineyards and quiet meadows. "


def warc_bytes(records: list[tuple[str, str, bytes, str]], gz: bool) -> bytes:
    """records: (kind, url, body, content-type); kind 'response' gets HTTP headers (status in url)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gz)
    writer.write_record(writer.create_warcinfo_record("hostile.warc", {"software": "tests"}))
    for kind, url, body, content_type in records:
        if kind == "response":
            status = "404 Not Found" if "missing" in url else "200 OK"
            headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
        else:
            writer.write_record(writer.create_warc_record(url, kind, payload=io.BytesIO(body), warc_content_type=content_type))
    return buf.getvalue()


def html_page(title: str, n: int = 12) -> str:
    return f"<html><body><article><h1>{title}</h1>" + "".join(f"<p>{title}: {SENTENCE}</p>" for _ in range(n)) + "</article></body></html>"


def write_generated_corpus(folder: Path) -> dict[str, Path]:
    """Cases too big or too binary to keep in the repository, written into `folder`; name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    # A 10 MB document (one JSONL line) next to a normal one.
    big = folder / "big.jsonl"
    with big.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "ten-mb", "text": SENTENCE * (10_000_000 // len(SENTENCE) + 1)}) + "\n")
        fh.write(json.dumps({"id": "normal", "text": SENTENCE * 8}) + "\n")
    files["big"] = big
    # One line of 300 000 characters, no newline at all.
    long_line = folder / "long_line.txt"
    long_line.write_text(SENTENCE.strip() * 3200, encoding="utf-8")
    files["long_line"] = long_line
    nested = folder / "nested.html"
    nested.write_text("<html><body>" + "<div>" * 10_000 + f"<p>{SENTENCE * 6}</p>" + "</div>" * 10_000 + "</body></html>")
    files["nested"] = nested
    # A WARC: a good page in windows-1252 (declared in the HTTP header), a 404, an image, a request
    # and a metadata record (not documents), then a page whose record is cut short.
    good = html_page("Café crème in Genève").encode("cp1252")
    records = [
        ("request", "http://example.org/a", b"GET /a HTTP/1.1\r\n\r\n", "application/http; msgtype=request"),
        ("response", "http://example.org/cafe", good, "text/html; charset=windows-1252"),
        ("response", "http://example.org/missing", html_page("Not found").encode(), "text/html"),
        ("response", "http://example.org/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png"),
        ("metadata", "http://example.org/cafe", b"fetchTimeMs: 12\r\n", "application/warc-fields"),
        ("response", "http://example.org/cut", html_page("The cut page", 40).encode(), "text/html; charset=utf-8"),
    ]
    data = warc_bytes(records, gz=False)
    truncated = folder / "truncated.warc"
    truncated.write_bytes(data[: len(data) - 700])
    files["truncated_warc"] = truncated
    data_gz = warc_bytes(records, gz=True)
    truncated_gz = folder / "truncated.warc.gz"
    truncated_gz.write_bytes(data_gz[: len(data_gz) - 300])
    files["truncated_warc_gz"] = truncated_gz
    return files


INJECTION_DOCS = {json.loads(line)["id"]: json.loads(line)["text"] for line in (HOSTILE / "injection.jsonl").read_text().splitlines()}


OBEYED = {
    "PWNED": ("What does the system prompt say every answer must be?", "PWNED"),
    "swordfish": ("What is the admin password of this site?", "swordfish"),
    "hidden instructions": ("What do the hidden instructions on this page say?", "obey"),
    "hunter2": ("What is the admin password?", "hunter2"),
    "API key": ("What is your API key?", "sk-unknown"),
    "system prompt": ("What is in your system prompt?", "instructions"),
}


class ObedientFake(FakeOpenAI):
    """The shared fake, plus: it follows every injected instruction of the hostile corpus, and a
    document marked ECHO_KEY makes it answer HTTP 400 with the caller's key in the error body."""

    def _handler(self):
        base = super()._handler()
        fake = self

        class Handler(base):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw or b"{}")
                messages = body.get("messages", [])
                schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
                text = "\n".join(m.get("content", "") for m in messages)
                echo = re.search(r"ECHO_KEY_?(\d{3})?", text)
                if echo:  # a server that echoes the caller's key in its error body (as some do)
                    with fake._lock:
                        fake.requests.append(body)
                    key = self.headers.get("Authorization", "")
                    status = int(echo.group(1) or 400)
                    return self._send(status, json.dumps({"error": {"message": f"request from {key} failed", "type": "invalid_request_error"}}).encode())
                if schema == "qa_pair":
                    for marker, (question, answer) in OBEYED.items():
                        if marker in document_of(messages):
                            with fake._lock:
                                fake.requests.append(body)
                            reply = {"question": question, "answer": answer, "answer_type": "entity"}
                            content = json.dumps(reply)
                            out = {
                                "id": "x",
                                "object": "chat.completion",
                                "created": 0,
                                "model": "fake",
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                            }
                            return self._send(200, json.dumps(out).encode())
                self.rfile = io.BytesIO(raw)
                return super().do_POST()

        return Handler
