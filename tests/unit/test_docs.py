"""The README stays a two-minute page and every relative link of the docs resolves.

Pure Python, so it runs everywhere; the mkdocs build runs too when the `docs` extra is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 10_000
HAS_MKDOCS_MATERIAL = importlib.util.find_spec("material") is not None

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (links there are examples)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def slugify(heading: str) -> str:
    """The anchor mkdocs' toc extension gives a heading (GitHub's agrees for plain ASCII words)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    headings = (HEADING.match(line) for line in prose_lines(page.read_text()))
    return {slugify(m.group(1)) for m in headings if m}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `page` to a missing file, or to an #anchor that is no heading there."""
    problems = []
    for line in prose_lines(page.read_text()):
        for target in LINK.findall(line):
            if SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / path_part).resolve() if path_part else page
            if not resolved.exists():
                problems.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return problems


def nav_pages(nav: list) -> list[str]:
    """The Markdown files named anywhere in an mkdocs nav (entries may nest)."""
    found = []
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            found.extend(nav_pages(value) if isinstance(value, list) else [value])
    return found


def test_readme_is_at_most_10_kb():
    assert README.stat().st_size <= README_MAX_BYTES, f"README.md is {README.stat().st_size} bytes"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Real heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#real-heading) [gone](missing.md) [bad](other.md#nope) [web](https://x.org/a.md)\n"
        "`[in code](missing.md)`\n```\n[in a fence](missing.md)\n```\n"
    )
    expected = ["page.md: missing.md (no such file)", "page.md: other.md#nope (no such heading)"]
    assert broken_links(page, root=tmp_path) == expected


def test_every_docs_page_is_in_the_mkdocs_nav_and_every_nav_entry_exists():
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    on_disk = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(nav) == on_disk


@pytest.mark.skipif(not HAS_MKDOCS_MATERIAL, reason="the docs extra is not installed")
def test_mkdocs_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
