"""Versioned prompt files, one per LLM stage.

A file starts with `version: <name>-vN`, then `--- system` and `--- user` sections with
`{{placeholders}}`. The version is stored with every row a prompt produced; change the text →
bump the version. Document text is always wrapped as delimited data, never spliced into the
instructions, and its own copies of the delimiters are defused so it cannot close the block early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class Prompt:
    stage: str
    version: str
    system: str
    user: str

    def messages(self, **values: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": fill(self.system, values)},
            {"role": "user", "content": fill(self.user, values)},
        ]


def fill(template: str, values: dict[str, object]) -> str:
    """Single-pass substitution: text inserted for one placeholder is never scanned again, so a
    document containing `{{persona}}` cannot pull other values in."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"prompt placeholder {{{{{key}}}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, template)


def defuse_document(text: str, max_chars: int) -> str:
    """Cut to the context budget and neutralise tags that could end the data block early."""
    text = (text or "")[:max_chars]
    return re.sub(r"<(/?)\s*document\s*>", r"‹\1document›", text, flags=re.I)


@lru_cache(maxsize=None)
def load_prompt(stage: str, directory: str | None = None) -> Prompt:
    path = Path(directory or PROMPT_DIR) / f"{stage}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file for stage '{stage}' at {path}")
    raw = path.read_text(encoding="utf-8")
    header, _, rest = raw.partition("\n")
    if not header.startswith("version:"):
        raise ValueError(f"prompt file {path} must start with 'version: <name>-vN'")
    version = header.split(":", 1)[1].strip()
    sections = dict(
        (name, body.strip("\n"))
        for name, body in re.findall(r"^--- (system|user)\n(.*?)(?=^--- |\Z)", rest, re.S | re.M)
    )
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt file {path} needs '--- system' and '--- user' sections")
    return Prompt(stage=stage, version=version, system=sections["system"], user=sections["user"])
