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

from ..config import ConfigError
from ..domains import DOMAINS
from ..prompts import ANSWER_TYPES
from ..stages.order import PIPELINE, STAGES, stage_named

CRITICAL, WARNING, OFF = "critical", "warning", "off"
SEVERITIES = (CRITICAL, WARNING, OFF)


def reason_pattern(stage: str) -> str:
    """The stage's rejection reasons (declared on the stage); a reason missing there is a warning."""
    return stage_named(stage).reason_pattern


LLM_ERROR = r"llm_error:[a-z_]+"
# A kept row that broke a critical per-row expectation at landing (gates.drop_row_violations).
QUARANTINED = r"quarantined:.+"


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
        Expectation(
            "schema",
            args=(
                ("qa_id", "string"),
                ("doc_id", "string"),
                ("question", "string"),
                ("answer", "string"),
                ("domain", "string"),
                ("persona", "string"),
                ("pretrain_text", "string"),
            ),
        ),
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
        "verified": _qa_suite(q, final=True),
        "qa": _qa_suite(q, final=True),
        "rejections": [
            Expectation("schema", args=(("doc_id", "string"), ("stage", "string"), ("reason", "string"), ("run_id", "string"))),
            *_keys("doc_id", "stage", "reason", "run_id"),
            Expectation("in_set", "stage", (STAGES,)),
        ],
    }


def batch_suite(stage: str, q: Any) -> list[Expectation]:
    """Row-count relations of one stage's batch (rows in, kept, rejected) and of its rejections."""
    declared = stage_named(stage)
    # A document stage keeps at most its documents; every stage accounts for each of its work items
    # (generate's items are personas) as kept or rejected.
    relations = [Expectation("rows_at_most_input")] if declared.input_key == ("doc_id",) else []
    relations += [
        Expectation("rows_accounted"),
        Expectation("matches", "reason", (f"({reason_pattern(stage)}|{LLM_ERROR}|{QUARANTINED})",), WARNING),
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
    for stage in PIPELINE:
        for e in batch_suite(stage.name, q):
            ids |= {e.id, *(f"{t}:{e.id}" for t in tables)}
    return ids


def check_severity_overrides(q: Any) -> None:
    """Every key of `quality.severity` names an expectation, and every value is a severity."""
    known = all_expectation_ids(q)
    for key, sev in q.severity.items():
        if key not in known:
            raise ConfigError(f"quality.severity: unknown expectation {key!r} (e.g. {sorted(known)[:4]})")
        if sev not in SEVERITIES:
            raise ConfigError(f"quality.severity.{key} must be one of {', '.join(SEVERITIES)}; got {sev!r}")
