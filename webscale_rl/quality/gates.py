"""Landing gates: a stage's batch is validated before it is committed to its tables.

`gate_batch` evaluates the suites of `suites.py` on the batch a stage is about to land: the kept
rows against the stage table's suite, the rejected rows against the `rejections` suite, and the
row-count relations of the stage (rows in = kept + rejected, ...). Each kind is implemented once,
in `measures.py`; here they are summed in one Spark aggregate per part (plus one group-by per
distribution check on large batches), no Great Expectations call, so every batch of every run can
be gated (`benchmarks/gate_cost.py` compares it with GX on the same suite).

Per-row expectations act on rows, as Delta Live Tables' `expect_or_drop` does: before the gate, a
kept row that breaks a critical per-row expectation of its table (`drop_row_violations`; all
per-row kinds but `not_null`, since a row without its key cannot be kept apart) is copied to the
quarantine table with the expectations it broke and becomes a rejection `quarantined:<expectation>`;
the rest of the batch lands. What is left for the gate are batch-level checks (schemas, keys,
uniqueness, distributions, row-count relations).

A batch with a failed `critical` expectation must not be merged: the pipeline calls `quarantine`,
which appends the whole batch (kept and rejected rows, each as JSON) to the Delta table
`<warehouse>/quarantine` with the failed expectations, and then fails the run. Each gate's outcome
is also written to `_quality/gates/<run_id>/<stage>.json` in the warehouse's local folder (`Warehouse.local_dir`).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from ..warehouse import REJECTIONS, Warehouse
from . import measures
from .suites import CRITICAL, OFF, WARNING, Expectation, batch_suite, severity_of, table_suites

QUARANTINE = "quarantine"
QUARANTINED_PREFIX = "quarantined:"  # the reason of a row drop_row_violations condemned


@dataclass
class CheckResult:
    table: str
    expectation: str  # e.g. "not_null(doc_id)"
    severity: str
    success: bool
    observed: str  # e.g. "2 of 5 rows", "top value 'Math' has 95% of 40 rows"

    def describe(self) -> str:
        return f"{self.table}:{self.expectation} ({self.observed})"


@dataclass
class GateOutcome:
    stage: str
    table: str
    run_id: str
    rows_in: int
    kept: int
    rejected: int
    results: list[CheckResult] = field(default_factory=list)
    results_path: Path | None = None

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == CRITICAL]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.critical_failures

    @property
    def failed_expectations(self) -> list[str]:
        return [r.describe() for r in self.critical_failures]

    @property
    def pass_rate(self) -> float:
        return sum(r.success for r in self.results) / len(self.results) if self.results else 1.0

    def message(self) -> str:
        head = f"[gate] {self.stage} → '{self.table}': {sum(r.success for r in self.results)}/{len(self.results)} expectations passed"
        if self.critical_failures:
            head += "; CRITICAL: " + "; ".join(self.failed_expectations)
        if self.warnings:
            head += "; warning: " + "; ".join(r.describe() for r in self.warnings)
        return head

    def to_dict(self) -> dict:
        d = asdict(self)
        d["results_path"] = str(self.results_path) if self.results_path else None
        d["ok"] = self.ok
        return d


def _active(table: str, suite: list[Expectation], q: Any) -> list[tuple[Expectation, str]]:
    """The expectations of `suite` with their configured severity, those switched off left out."""
    with_severity = [(e, severity_of(table, e, q)) for e in suite]
    return [(e, sev) for e, sev in with_severity if sev != OFF]


def _without_data(df: DataFrame, table: str, e: Expectation, sev: str) -> CheckResult | None:
    """The result of an expectation decided by the schema alone (schema, missing column), or None."""
    if e.kind == "schema":
        problem = measures.schema_problems(df, e)
        return CheckResult(table, e.id, sev, problem is None, problem or "all columns present with their types")
    if e.column and e.kind != "max_reject_share" and e.column not in df.columns:
        return CheckResult(table, e.id, sev, False, f"column {e.column} missing")
    return None


def _aggregate(e: Expectation) -> Column | None:
    """The batch aggregate of one expectation; None for a distribution (a group-by of its own)."""
    if e.kind == "unique":
        return measures.duplicate_count(e)
    if e.kind == "max_reject_share":
        return measures.llm_error_count(e)
    if e.kind == "max_share":
        return None
    return F.sum(measures.row_violation(e).cast("long"))


def _share_result(df: DataFrame, table: str, e: Expectation, sev: str, rows: int, min_rows: int) -> CheckResult:
    if not measures.distribution_applies(rows, min_rows):
        return CheckResult(table, e.id, sev, True, f"skipped: {rows} rows < {min_rows}")
    value, count = measures.top_value(df, e.column)
    ok = not measures.exceeds_share(count, rows, e.args[0])
    seen = f"top value {str(value)[:40]!r} has {count / rows:.0%} of {rows} rows, max {e.args[0]:.0%}"
    return CheckResult(table, e.id, sev, ok, seen)


def _reject_share_result(table: str, e: Expectation, sev: str, errors: int, rows_in: int, min_rows: int) -> CheckResult:
    judged = rows_in > 0 and measures.distribution_applies(rows_in, min_rows)
    ok = not (judged and measures.exceeds_share(errors, rows_in, e.args[0]))
    return CheckResult(table, e.id, sev, ok, f"{errors} of {rows_in} input rows, max {e.args[0]:.0%}")


def evaluate(df: DataFrame, table: str, suite: list[Expectation], q: Any, *, rows_in: int | None = None) -> tuple[int, list[CheckResult]]:
    """(rows, results) of `suite` on `df`: one aggregate for all per-row expectations."""
    results: list[CheckResult] = []
    aggs = [F.count(F.lit(1)).alias("_rows")]
    pending: list[tuple[Expectation, str, str]] = []
    for i, (e, sev) in enumerate(_active(table, suite, q)):
        decided = _without_data(df, table, e, sev)
        if decided is not None:
            results.append(decided)
            continue
        alias, agg = f"_e{i}", _aggregate(e)
        if agg is not None:
            aggs.append(agg.alias(alias))
        pending.append((e, sev, alias))
    totals = df.agg(*aggs).collect()[0].asDict()
    rows = int(totals["_rows"])
    min_rows = int(getattr(q, "distribution_min_rows", 20))
    for e, sev, alias in pending:
        n = int(totals.get(alias) or 0)
        if e.kind == "max_share":
            results.append(_share_result(df, table, e, sev, rows, min_rows))
        elif e.kind == "max_reject_share":
            results.append(_reject_share_result(table, e, sev, n, rows_in or 0, min_rows))
        else:
            what = "duplicate values" if e.kind == "unique" else "rows"
            results.append(CheckResult(table, e.id, sev, n == 0, f"{n} {what} of {rows} violate"))
    return rows, results


def gate_batch(
    spark: SparkSession,
    stage: str,
    table: str,
    kept_df: DataFrame,
    rejected_df: DataFrame,
    rows_in: int,
    quality_cfg: Any,
    warehouse: Warehouse,
    run_id: str,
) -> GateOutcome:
    """Validate one stage's batch before it lands. Never raises on failed expectations; the
    caller quarantines the batch when `outcome.ok` is false."""
    q = quality_cfg
    suites = table_suites(q)
    relations = batch_suite(stage, q)
    row_relations = [e for e in relations if e.kind.startswith("rows_")]
    rejection_suite = suites["rejections"] + [e for e in relations if not e.kind.startswith("rows_")]
    with ThreadPoolExecutor(max_workers=1) as pool:  # two small jobs: side by side, not one after the other
        rejections_job = pool.submit(evaluate, rejected_df, REJECTIONS, rejection_suite, q, rows_in=rows_in)
        kept, results = evaluate(kept_df, table, suites.get(table, []), q)
        rejected, rej_results = rejections_job.result()
    results += rej_results
    for e, sev in _active(table, row_relations, q):
        ok, seen = measures.row_relation(e, rows_in, kept, rejected)
        results.append(CheckResult(table, e.id, sev, ok, seen))
    outcome = GateOutcome(stage, table, run_id, rows_in, kept, rejected, results)
    safe_run = re.sub(r"[^A-Za-z0-9_.\-]", "_", run_id)
    path = Path(warehouse.local_dir("_quality", "gates", safe_run)) / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    outcome.results_path = path
    path.write_text(json.dumps(outcome.to_dict(), indent=2), encoding="utf-8")
    return outcome


# Kinds that condemn a row rather than its batch; a null key (not_null) means a broken stage.
ROW_DROP_KINDS = tuple(k for k in measures.ROW_KINDS if k != "not_null")
VIOLATED = "_violated_expectations"


def row_drop_rules(table: str, q: Any) -> list[Expectation]:
    """The critical per-row expectations of `table` that drop a row instead of failing the batch."""
    return [e for e, sev in _active(table, table_suites(q).get(table, []), q) if sev == CRITICAL and e.kind in ROW_DROP_KINDS]


def drop_row_violations(marked: DataFrame, table: str, q: Any, reason: str, detail: str) -> DataFrame:
    """`marked` with every kept row (null `reason` column) that breaks a rule of `row_drop_rules`
    turned into a rejection `quarantined:<first rule>`, and the ids of the rules it broke in VIOLATED."""
    rules = row_drop_rules(table, q)
    broken = [F.when(F.col(reason).isNull() & measures.row_violation(e), F.lit(f"{table}:{e.id}")) for e in rules]
    violated = F.filter(F.array(*broken), lambda x: x.isNotNull()) if broken else F.array().cast("array<string>")
    marked = marked.withColumn(VIOLATED, violated)
    hit = F.size(F.col(VIOLATED)) > 0
    return marked.withColumn(
        reason, F.when(hit, F.concat(F.lit(QUARANTINED_PREFIX), F.substring_index(F.element_at(VIOLATED, 1), ":", -1))).otherwise(F.col(reason))
    ).withColumn(detail, F.when(hit, F.concat(F.lit("landing gate: "), F.array_join(VIOLATED, ", "), F.lit(" failed"))).otherwise(F.col(detail)))


def quarantine_rows(warehouse: Warehouse, stage: str, run_id: str, rows: DataFrame, table: str, batch_id: str) -> int | None:
    """Copy the rows `drop_row_violations` condemned (VIOLATED not empty) to the quarantine table,
    once per batch; → the quarantine table's version, or None when no row was condemned."""
    condemned = rows.filter(F.size(F.col(VIOLATED)) > 0)
    if condemned.isEmpty():
        return None
    data = [c for c in condemned.columns if not c.startswith("_")]
    copy = condemned.select(
        F.lit(table).alias("table"),
        F.lit(stage).alias("stage"),
        F.lit(run_id).alias("run_id"),
        F.to_json(F.struct(*[measures.column(c) for c in data])).alias("row_json"),
        F.col(VIOLATED).alias("failed_expectations"),
        F.current_timestamp().alias("created_at"),
    )
    return warehouse.append_once(copy, QUARANTINE, f"{batch_id}/rows")


def quarantine(spark: SparkSession, outcome: GateOutcome, kept_df: DataFrame, rejected_df: DataFrame, warehouse: Warehouse, batch_id: str) -> int:
    """Append the whole batch to the quarantine table, once per `batch_id` (an idempotent Delta
    append, so a run killed before it dropped the batch does not quarantine it twice); returns the
    quarantine table's version."""
    failed = F.array(*[F.lit(s) for s in outcome.failed_expectations]).cast("array<string>")

    def part(df: DataFrame, target: str) -> DataFrame:
        return df.select(
            F.lit(target).alias("table"),
            F.lit(outcome.stage).alias("stage"),
            F.lit(outcome.run_id).alias("run_id"),
            F.to_json(F.struct(*[measures.column(c) for c in df.columns])).alias("row_json"),
            failed.alias("failed_expectations"),
            F.current_timestamp().alias("created_at"),
        )

    batch = part(kept_df, outcome.table).unionByName(part(rejected_df, REJECTIONS))
    return warehouse.append_once(batch, QUARANTINE, batch_id)
