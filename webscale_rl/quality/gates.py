"""Landing gates: a stage's batch is validated before it is committed to its tables.

`gate_batch` evaluates the suites of `suites.py` on the batch a stage is about to land: the kept
rows against the stage table's suite, the rejected rows against the `rejections` suite, and the
row-count relations of the stage (rows in = kept + rejected, ...). One Spark aggregate per part
(plus one group-by per distribution check on large batches), no Great Expectations call, so every
batch of every run can be gated (`benchmarks/gate_cost.py` compares it with GX on the same suite).

A batch with a failed `critical` expectation must not be merged: the pipeline calls `quarantine`,
which appends the whole batch (kept and rejected rows, each as JSON) to the Delta table
`<warehouse>/quarantine` with the failed expectations, and then fails the run. Each gate's outcome
is also written to `<warehouse>/_quality/gates/<run_id>/<stage>.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import tables
from .suites import CRITICAL, OFF, WARNING, Expectation, batch_suite, severity_of, table_suites

QUARANTINE = "quarantine"


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


def _col(name: str) -> Column:
    return F.col(f"`{name}`")


def _out_of_bounds(value: Column, lo: Any, hi: Any) -> Column:
    cond = F.lit(False)
    if lo is not None:
        cond = cond | (value < F.lit(lo))
    if hi is not None:
        cond = cond | (value > F.lit(hi))
    return cond


def _violations(e: Expectation) -> Column:
    """Count of rows violating a per-row expectation (nulls are only counted by not_null)."""
    c = _col(e.column)
    present = c.isNotNull()
    if e.kind == "not_null":
        bad = c.isNull()
    elif e.kind == "in_set":
        bad = present & ~c.isin(list(e.args[0]))
    elif e.kind == "matches":
        bad = present & ~c.rlike(f"^(?:{e.args[0]})$")
    elif e.kind == "length_between":
        bad = present & _out_of_bounds(F.length(c), *e.args)
    elif e.kind == "value_between":
        bad = present & _out_of_bounds(c, *e.args)
    elif e.kind == "size_between":
        bad = present & _out_of_bounds(F.size(c), *e.args)
    elif e.kind == "not_in":  # the value occurs in another column (case-insensitive), e.g. answer in question
        other = _col(e.args[0])
        bad = present & other.isNotNull() & (F.length(F.trim(c)) > 0) & (F.instr(F.lower(other), F.lower(F.trim(c))) > 0)
    else:
        raise ValueError(f"not a per-row expectation: {e.kind}")
    return F.sum(bad.cast("long"))


def _schema_check(df: DataFrame, e: Expectation) -> str | None:
    types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    problems = []
    for name, tp in e.args:
        if name not in types:
            problems.append(f"missing {name}")
        elif types[name] != tp:
            problems.append(f"{name} is {types[name]}, expected {tp}")
    return ", ".join(problems) or None


def evaluate(
    df: DataFrame, table: str, suite: list[Expectation], q: Any, *, rows_in: int | None = None
) -> tuple[int, list[CheckResult]]:
    """(rows, results) of `suite` on `df`: one aggregate for all per-row expectations."""
    results: list[CheckResult] = []
    exps = [(e, severity_of(table, e, q)) for e in suite]
    exps = [(e, s) for e, s in exps if s != OFF]
    aggs = [F.count(F.lit(1)).alias("_rows")]
    row_checks: list[tuple[Expectation, str, str]] = []
    for i, (e, sev) in enumerate(exps):
        if e.kind == "schema":
            problem = _schema_check(df, e)
            results.append(CheckResult(table, e.id, sev, problem is None, problem or "all columns present with their types"))
            continue
        if e.column and e.kind != "max_reject_share" and e.column not in df.columns:
            results.append(CheckResult(table, e.id, sev, False, f"column {e.column} missing"))
            continue
        alias = f"_e{i}"
        if e.kind == "unique":
            aggs.append((F.count(_col(e.column)) - F.count_distinct(_col(e.column))).alias(alias))
        elif e.kind == "max_reject_share":
            aggs.append(F.sum(F.col("reason").startswith(f"{e.column}:").cast("long")).alias(alias))
        elif e.kind == "max_share":
            pass  # a group-by below, only on batches large enough to have a distribution
        else:
            aggs.append(_violations(e).alias(alias))
        row_checks.append((e, sev, alias))
    agg = df.agg(*aggs).collect()[0]
    rows = int(agg["_rows"])
    min_rows = int(getattr(q, "distribution_min_rows", 20))
    for e, sev, alias in row_checks:
        if e.kind == "max_share":
            if rows < min_rows:
                results.append(CheckResult(table, e.id, sev, True, f"skipped: {rows} rows < {min_rows}"))
                continue
            top = df.groupBy(_col(e.column)).count().orderBy(F.desc("count")).limit(1).collect()[0]
            share = top["count"] / rows
            value = str(top[0])[:40]
            results.append(CheckResult(table, e.id, sev, share <= e.args[0], f"top value {value!r} has {share:.0%} of {rows} rows, max {e.args[0]:.0%}"))
        elif e.kind == "max_reject_share":
            n = int(agg[alias] or 0)
            denom = rows_in or 0
            share = n / denom if denom else 0.0
            ok = denom < min_rows or share <= e.args[0]
            results.append(CheckResult(table, e.id, sev, ok, f"{n} of {denom} input rows, max {e.args[0]:.0%}"))
        else:
            n = int(agg[alias] or 0)
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
    warehouse: str | Path,
    run_id: str,
) -> GateOutcome:
    """Validate one stage's batch before it lands. Never raises on failed expectations; the
    caller quarantines the batch when `outcome.ok` is false."""
    q = quality_cfg
    suites = table_suites(q)
    kept, results = evaluate(kept_df, table, suites.get(table, []), q)
    relations = batch_suite(stage, q)
    row_relations = [e for e in relations if e.kind.startswith("rows_")]
    rejection_suite = suites["rejections"] + [e for e in relations if not e.kind.startswith("rows_")]
    rejected, rej_results = evaluate(rejected_df, tables.REJECTIONS, rejection_suite, q, rows_in=rows_in)
    results += rej_results
    for e in row_relations:
        sev = severity_of(table, e, q)
        if sev == OFF:
            continue
        if e.kind == "rows_accounted":
            ok, seen = kept + rejected == rows_in, f"in {rows_in}, kept {kept} + rejected {rejected}"
        else:  # rows_at_most_input
            ok, seen = kept <= rows_in, f"in {rows_in}, kept {kept}"
        results.append(CheckResult(table, e.id, sev, ok, seen))
    outcome = GateOutcome(stage, table, run_id, rows_in, kept, rejected, results)
    safe_run = re.sub(r"[^A-Za-z0-9_.\-]", "_", run_id)
    path = Path(warehouse) / "_quality" / "gates" / safe_run / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    outcome.results_path = path
    path.write_text(json.dumps(outcome.to_dict(), indent=2), encoding="utf-8")
    return outcome


def quarantine(
    spark: SparkSession, outcome: GateOutcome, kept_df: DataFrame, rejected_df: DataFrame, warehouse: str | Path, batch_id: str
) -> int:
    """Append the whole batch to the quarantine table, once per `batch_id` (an idempotent Delta
    append, so a run killed before it dropped the batch does not quarantine it twice); returns the
    quarantine table's version."""
    failed = F.array(*[F.lit(s) for s in outcome.failed_expectations]).cast("array<string>")

    def part(df: DataFrame, target: str) -> DataFrame:
        return df.select(
            F.lit(target).alias("table"),
            F.lit(outcome.stage).alias("stage"),
            F.lit(outcome.run_id).alias("run_id"),
            F.to_json(F.struct(*[_col(c) for c in df.columns])).alias("row_json"),
            failed.alias("failed_expectations"),
            F.current_timestamp().alias("created_at"),
        )

    batch = part(kept_df, outcome.table).unionByName(part(rejected_df, tables.REJECTIONS))
    return tables.append_once(batch, warehouse, QUARANTINE, batch_id)
