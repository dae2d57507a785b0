"""Reading what `webscale-rl run` / `demo` print: the funnel (each stage's rows and seconds) and the
LLM usage summary (calls, tokens, prompt tokens the endpoint read from its prompt cache). Shared by
the benchmarks that time the command a user types."""

from __future__ import annotations

import re

_USAGE_LINE = re.compile(
    r"^\s+(?P<stage>\S+)\s+(?:\S+\s+)?(?P<calls>\d+) / (?P<hits>\d+) / (?P<retries>\d+) / (?P<r429>\d+) / (?P<tin>\d+)\+(?P<tout>\d+) / "
    r"(?:.*/ (?P<cached>\d+) \(\d+%\))?"
)
_DONE_LINE = re.compile(r"^\[(?P<stage>\w+)\] done .*?; (?P<calls>\d+) calls, (?P<tin>\d+)\+(?P<tout>\d+) tokens")
_FUNNEL_LINE = re.compile(r"^\s+(?P<stage>\w+)\s+in\s+(?P<rows_in>\d+)\s+kept\s+(?P<kept>\d+)\s+rejected\s+(?P<rejected>\d+)\s+\((?P<s>[\d.]+)s\)")
USAGE_KEYS = ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cached_prompt_tokens")


def _block(lines: list[str], header: str, pattern: re.Pattern) -> list[re.Match]:
    """The matches of `pattern` on the lines right after the line starting with `header`, up to
    the first line that does not match (blank lines skipped)."""
    out: list[re.Match] = []
    inside = False
    for line in lines:
        if line.startswith(header):
            inside = True
            continue
        m = pattern.match(line) if inside else None
        if m:
            out.append(m)
        elif inside and line.strip():
            inside = False
    return out


def llm_usage(lines: list[str]) -> dict[str, dict[str, int]]:
    """Per LLM stage and 'run': calls, cache_hits, prompt_tokens, completion_tokens and
    cached_prompt_tokens (0 when the line has none), from the run's usage summary ("LLM usage (calls /
    cache hits / ...)"); the stages' done lines if it is absent."""
    usage = {
        m["stage"]: {
            "calls": int(m["calls"]),
            "cache_hits": int(m["hits"]),
            "prompt_tokens": int(m["tin"]),
            "completion_tokens": int(m["tout"]),
            "cached_prompt_tokens": int(m["cached"] or 0),
        }
        for m in _block(lines, "LLM usage (", _USAGE_LINE)
    }
    if usage:
        return usage
    for m in filter(None, map(_DONE_LINE.match, lines)):
        usage[m["stage"]] = {"calls": int(m["calls"]), "cache_hits": 0, "prompt_tokens": int(m["tin"]), "completion_tokens": int(m["tout"])}
        usage[m["stage"]]["cached_prompt_tokens"] = 0
    if usage:
        usage["run"] = {k: sum(u[k] for u in usage.values()) for k in USAGE_KEYS}
    return usage


def funnel(lines: list[str]) -> dict[str, dict[str, float]]:
    """Per stage: rows_in, kept, rejected and seconds, from the run's '=== funnel ===' block."""
    return {
        m["stage"]: {"rows_in": int(m["rows_in"]), "kept": int(m["kept"]), "rejected": int(m["rejected"]), "seconds": float(m["s"])}
        for m in _block(lines, "=== funnel ===", _FUNNEL_LINE)
    }
