"""Versioned prompt files, one per LLM stage.

A file starts with `version: <name>-vN`, then `--- system` and `--- user` sections with
`{{placeholders}}`. The version is stored with every row a prompt produced; change the text →
bump the version. Document text is always wrapped as delimited data, never spliced into the
instructions, and its own copies of the delimiters are defused so it cannot close the block early.

Layout for prompt caches (llama.cpp slots and host-RAM cache, providers' prefix caching): what one
document's calls share (the document, its domain and examples) comes before what differs per call
(the persona, the question), so a call after another about the same document re-reads only its own
tail. The files put the stage's instructions first (`instructions_first`: every call of a stage
shares them); `llm.prompt_layout: document_first` moves the document block to the front of the
system message, so that every stage's calls about one document share it (a win only while the
server's cache still holds the document when the next stage runs: small runs). A layout other
than the file's is part of the version (`@document-first`).
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import yaml

from ..domains import DOMAINS

# A Traversable, not a Path: the package may be imported from a zip (a wheel in spark-submit --py-files).
PROMPT_DIR = importlib.resources.files(__name__)
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Per-call placeholders: each must come after every placeholder a document's calls share.
PER_CALL = frozenset({"persona", "question", "answer"})


PROMPT_LAYOUTS = ("instructions_first", "document_first")
_DOCUMENT_BLOCK = re.compile(r"<document>\n\{\{document\}\}\n</document>\n")


@dataclass(frozen=True)
class Prompt:
    stage: str
    version: str
    system: str
    user: str

    def laid_out(self, layout: str) -> Prompt:
        """This prompt in `layout` (see the module doc); the same prompt for a prompt without a document."""
        if layout not in PROMPT_LAYOUTS:
            raise ValueError(f"unknown prompt layout {layout!r}; known: {', '.join(PROMPT_LAYOUTS)}")
        block = _DOCUMENT_BLOCK.search(self.user)
        if layout == "instructions_first" or block is None:
            return self
        user = self.user[: block.start()] + self.user[block.end() :]
        return replace(self, version=f"{self.version}@document-first", system=block.group(0) + "\n" + self.system, user=user)

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


# Chat-template control tokens (ChatML, Llama 2/3, Gemma). llama-server parses special tokens in
# the rendered prompt, so a document holding "<|im_start|>system" would open a real system turn.
_CHAT_TOKENS = re.compile(r"<\|[^|<>\n]{0,40}\|>|\[/?INST\]|<<\s*/?\s*SYS\s*>>|<(start|end)_of_turn>", re.I)


def defuse_text(text: str) -> str:
    """Neutralise what could end the data block early or act as a chat-template token."""
    text = re.sub(r"<(/?)\s*document\s*>", r"‹\1document›", text or "", flags=re.I)
    return _CHAT_TOKENS.sub(lambda m: "‹" + m.group(0)[1:-1] + "›", text)


def defuse_document(text: str, max_chars: int) -> str:
    """Cut to the per-call budget and defuse (see `defuse_text`). `max_chars` bounds both the
    characters and the UTF-8 bytes: a token holds at least one byte, so multi-byte scripts cannot
    overflow a context sized for `max_chars` (see `webscale_rl.limits`)."""
    text = (text or "")[:max_chars]
    if len(text.encode("utf-8")) > max_chars:
        text = text.encode("utf-8")[:max_chars].decode("utf-8", errors="ignore")
    return defuse_text(text)


def stage_prompt(cfg, stage: str) -> Prompt:
    """The prompt a stage's calls use under `cfg` (Config): its own file (`stage` may also name a
    stage's second prompt, e.g. verify_closed_book), but for `generate`, whose file is chosen by
    `generate.prompt`; in the layout `llm.prompt_layout`."""
    return load_prompt(cfg.generate.prompt if stage == "generate" else stage).laid_out(cfg.llm.prompt_layout)


@cache
def load_prompt(stage: str, directory: str | None = None) -> Prompt:
    path = (Path(directory) if directory else PROMPT_DIR) / f"{stage}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file for stage '{stage}' at {path}")
    raw = path.read_text(encoding="utf-8")
    header, _, rest = raw.partition("\n")
    if not header.startswith("version:"):
        raise ValueError(f"prompt file {path} must start with 'version: <name>-vN'")
    version = header.split(":", 1)[1].strip()
    sections = dict((name, body.strip("\n")) for name, body in re.findall(r"^--- (system|user)\n(.*?)(?=^--- |\Z)", rest, re.S | re.M))
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt file {path} needs '--- system' and '--- user' sections")
    return Prompt(stage=stage, version=version, system=sections["system"], user=sections["user"])


ANSWER_TYPES = ("numeric", "expression", "entity", "short_text", "boolean", "choice")


@dataclass(frozen=True)
class FewShot:
    version: str
    examples: dict  # domain → list of {question, answer, answer_type}

    def for_domain(self, domain: str, k: int) -> list[dict]:
        """k examples of the document's domain, topped up from 'Other' if it has fewer."""
        chosen = list(self.examples.get(domain, []))[:k]
        for extra in self.examples.get("Other", []):
            if len(chosen) >= k:
                break
            if extra not in chosen:
                chosen.append(extra)
        return chosen


@cache
def load_fewshot(path: str | None = None) -> FewShot:
    """The few-shot library, validated: known domains, complete examples, known answer types."""
    file = Path(path) if path else PROMPT_DIR / "fewshot.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"few-shot library not found: {file}")
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    version, examples = data.get("version"), data.get("examples")
    if not version or not isinstance(examples, dict):
        raise ValueError(f"few-shot library {file} needs 'version' and a mapping 'examples' (domain → list)")
    for domain, items in examples.items():
        if domain not in DOMAINS:
            raise ValueError(f"few-shot library {file}: unknown domain {domain!r}; known: {', '.join(DOMAINS)}")
        for i, ex in enumerate(items or []):
            if not isinstance(ex, dict) or not {"question", "answer", "answer_type"} <= set(ex):
                raise ValueError(f"few-shot library {file}: {domain} example {i + 1} needs question, answer, answer_type")
            if ex["answer_type"] not in ANSWER_TYPES:
                raise ValueError(f"few-shot library {file}: {domain} example {i + 1} has answer_type {ex['answer_type']!r}; known: {ANSWER_TYPES}")
    return FewShot(version=str(version), examples={d: list(v or []) for d, v in examples.items()})
