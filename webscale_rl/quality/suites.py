"""The expectation suite of every Delta table the pipeline lands, in one place.

A suite is data: a list of `Expectation`s per table, each with an id (`kind(column)`), its
arguments and a default severity. `quality.severity` in the config overrides a severity by
`<table>:<id>` or by `<id>` (values: critical, warning, off). The landing gate (`gates.py`)
evaluates a suite with one Spark aggregate per batch; the final `qa` table is also validated by
Great Expectations (`expectations.py`) for Data Docs.

Severities: `critical` → the batch is quarantined and the run fails; `warning` → the batch lands
and the warning is printed and logged. Distribution checks that catch a broken model (one value
taking most rows) only apply to batches of at least `quality.distribution_min_rows` rows, and
default to warning: a small or one-topic batch is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import DOMAINS, STAGES

CRITICAL, WARNING, OFF = "critical", "warning", "off"
SEVERITIES = (CRITICAL, WARNING, OFF)

ANSWER_TYPES = ("numeric", "expression", "entity", "short_text", "boolean", "choice")

# Rejection reasons per stage (README's table). The filter's come from its rules (one place); a
# reason missing here is a warning, not a quarantine.
REASON_PATTERNS = {
    "ingest": r"empty_text|binary_text|duplicate_id|too_large|warc_truncated",
    "dedup": r"exact_duplicate|near_duplicate",
    "llm_filter": r"not_informative|not_self_contained",
    "profile": r"no_personas",
    "generate": r"empty_qa",
    "check": r"duplicate_question|empty_answer|answer_too_long|question_too_short|question_too_long"
    r"|answer_in_question|refers_to_source|about_instructions|answer_not_in_document|unsupported"
    r"|incorrect|leaks_answer",
    "decontaminate": r"contaminated:.+",
}


def reason_pattern(stage: str) -> str:
    if stage == "filter":
        from ..stages.filter import NAMED_CHECKS, RULES

        return "|".join([*NAMED_CHECKS, *(rule.name for rule in RULES)])
    return REASON_PATTERNS.get(stage, ".+")


LLM_ERROR = r"llm_error:[a-z_]+"


@dataclass(frozen=True)
class Expectation:
    """kind: schema | not_null | unique | in_set | matches | length_between | value_between |
    size_between | max_share | not_in(column, in=args[0]) | rows_accounted | rows_at_most_input |
    max_reject_share."""

    kind: str
    column: str | None = None
    args: tuple = ()
    severity: str = CRITICAL

    @property
    def id(self) -> str:
        return f"{self.kind}({self.column})" if self.column else self.kind


def _keys(*cols: str) -> list[Expectation]:
    return [Expectation("not_null", c) for c in cols]


def _qa_suite(q: Any, final: bool) -> list[Expectation]:
    suite = [
        Expectation("schema", args=(("qa_id", "string"), ("doc_id", "string"), ("question", "string"), ("answer", "string"),
                                    ("domain", "string"), ("persona", "string"), ("pretrain_text", "string"))),
        *_keys("qa_id", "doc_id", "question", "answer", "domain", "persona", "pretrain_text"),
        Expectation("unique", "qa_id"),
        Expectation("in_set", "domain", (DOMAINS,)),
        Expectation("in_set", "answer_type", (ANSWER_TYPES,), WARNING),
        Expectation("length_between", "answer", (1, q.max_answer_chars if final else None)),
        Expectation("length_between", "question", (1, None)),
        Expectation("max_share", "domain", (q.max_value_share,), WARNING),
        # Every pair with the same answer is the signature of a broken generator.
        Expectation("max_share", "answer", (q.max_value_share,), WARNING),
    ]
    if final:  # generate may still leak an answer into its question; check rejects those
        suite.append(Expectation("not_in", "answer", ("question",)))
    return suite


def table_suites(q: Any) -> dict[str, list[Expectation]]:
    """Suites of kept rows per table; `q` is the QualityConfig (bounds and shares come from it)."""
    doc = [
        Expectation("schema", args=(("doc_id", "string"), ("text", "string"))),
        *_keys("doc_id", "text"),
        Expectation("unique", "doc_id"),
        Expectation("length_between", "text", (1, None)),
    ]
    return {
        "documents": doc,
        "filtered": [*doc, Expectation("value_between", "n_words", (1, None))],
        "deduped": [*doc, Expectation("unique", "text_hash")],
        "judged": list(doc),
        "profiles": [
            Expectation("schema", args=(("doc_id", "string"), ("domain", "string"), ("personas", "array<string>"))),
            *_keys("doc_id", "domain", "personas"),
            Expectation("unique", "doc_id"),
            Expectation("in_set", "domain", (DOMAINS,)),
            Expectation("size_between", "personas", (1, None)),
            Expectation("max_share", "domain", (q.max_value_share,), WARNING),
        ],
        "qa_candidates": _qa_suite(q, final=False),
        "checked": _qa_suite(q, final=True),
        "qa": _qa_suite(q, final=True),
        "rejections": [
            Expectation("schema", args=(("doc_id", "string"), ("stage", "string"), ("reason", "string"), ("run_id", "string"))),
            *_keys("doc_id", "stage", "reason", "run_id"),
            Expectation("in_set", "stage", (STAGES,)),
        ],
    }


def batch_suite(stage: str, q: Any) -> list[Expectation]:
    """Row-count relations of one stage's batch (rows in, kept, rejected) and of its rejections."""
    relations = [Expectation("rows_at_most_input")] if stage in STAGES[:5] else []
    if stage != "generate":  # generate turns one document into one row per persona
        relations.append(Expectation("rows_accounted"))
    relations += [
        Expectation("matches", "reason", (f"({reason_pattern(stage)}|{LLM_ERROR})",), WARNING),
        # Most of a batch failing to reach or parse the model is a broken endpoint, not bad data.
        Expectation("max_reject_share", "llm_error", (q.max_llm_error_share,), WARNING),
    ]
    return relations


def severity_of(table: str, exp: Expectation, q: Any) -> str:
    overrides = dict(getattr(q, "severity", {}) or {})
    sev = overrides.get(f"{table}:{exp.id}", overrides.get(exp.id, exp.severity))
    if sev not in SEVERITIES:
        raise ValueError(f"quality.severity[{table}:{exp.id}] must be one of {SEVERITIES}; got {sev!r}")
    return sev


def all_expectation_ids(q: Any) -> set[str]:
    """Every `<table>:<id>` and `<id>` a severity override may name (unknown names are config errors)."""
    ids: set[str] = set()
    for table, suite in table_suites(q).items():
        for e in suite:
            ids |= {e.id, f"{table}:{e.id}"}
    tables = list(table_suites(q))
    for stage in STAGES:
        for e in batch_suite(stage, q):
            ids |= {e.id, *(f"{t}:{e.id}" for t in tables)}
    return ids
