"""Great Expectations (1.x) validation of the final `qa` table, with Data Docs.

The suite is not defined here: it is built from `suites.py` (the one place every table's suite
lives, with its severities), and no kind is implemented here. Kinds GX has a class for go through
`_GX_CLASSES`, a kind → class table. The others (`not_in`, `size_between`, `max_share`) are judged
by the landing gate's own predicates (`measures.py`): each becomes a boolean column of the batch
GX validates, and an `UnexpectedRowsExpectation` returns the rows where it is true (GX 1.24 runs
the query on Spark over the batch registered as the temp view `tmp_view`). A failed `warning`
expectation is reported in `ValidationOutcome.warnings` and does not fail the suite.

The GX project is a file-mode context rooted at `out_dir` (`<out_dir>/gx/...`). Every object
(data source, asset, batch definition, suite, validation definition, checkpoint) is fetched or
created by name, and the suite is re-written from code on each call, so repeated runs in the same
directory work and a changed config takes effect.

great_expectations is imported inside the functions that use it: importing it costs seconds.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame

from ..domains import DOMAINS as _DOMAINS
from . import measures
from .suites import OFF, Expectation, severity_of, table_suites

DOMAINS = list(_DOMAINS)

TABLE = "qa"
_DATASOURCE = "webscale_rl_spark"
_ASSET = "qa"
_BATCH_DEFINITION = "qa_whole_dataframe"
_SUITE = "qa_suite"
_VALIDATION = "qa_validation"
_CHECKPOINT = "qa_checkpoint"
# GX's Spark implementation of query expectations registers the batch under this temp view name.
_GX_TEMP_VIEW = "tmp_view"

# kind → (GX expectation class, its arguments from the Expectation): GX's own implementation.
_GX_CLASSES: dict[str, tuple[str, Callable[[Expectation], dict]]] = {
    "schema": ("ExpectTableColumnsToMatchSet", lambda e: {"column_set": [c for c, _ in e.args], "exact_match": False}),
    "not_null": ("ExpectColumnValuesToNotBeNull", lambda e: {"column": e.column}),
    "unique": ("ExpectColumnValuesToBeUnique", lambda e: {"column": e.column}),
    "in_set": ("ExpectColumnValuesToBeInSet", lambda e: {"column": e.column, "value_set": list(e.args[0])}),
    "matches": ("ExpectColumnValuesToMatchRegex", lambda e: {"column": e.column, "regex": measures.anchored(e.args[0])}),
    "length_between": ("ExpectColumnValueLengthsToBeBetween", lambda e: {"column": e.column, "min_value": e.args[0], "max_value": e.args[1]}),
    "value_between": ("ExpectColumnValuesToBeBetween", lambda e: {"column": e.column, "min_value": e.args[0], "max_value": e.args[1]}),
}
# Kinds judged by the gate's predicates: what Data Docs says each checks.
_GATE_PREDICATE_DESCRIPTIONS = {
    "not_in": "{e.column} does not occur in {e.args[0]} as whole words (case-insensitive)",
    "size_between": "number of {e.column} between {e.args[0]} and {e.args[1]}",
    "max_share": "no {e.column} value on more than {e.args[0]:.0%} of the rows",
}


@dataclass
class ValidationOutcome:
    table: str
    success: bool
    evaluated: int
    failed: list[str]  # names of failed critical expectations, e.g. "in_set(domain)" (suites.py ids)
    results_path: Path  # JSON of the full result (CheckpointResult.describe_dict() + table/run_id/rows)
    data_docs: Path | None = None  # Data Docs index.html, if it was built
    rows: int = 0
    passed: int = 0
    unexpected: dict[str, int | None] = field(default_factory=dict)  # failed name -> unexpected rows
    warnings: list[str] = field(default_factory=list)  # failed expectations of severity "warning"

    @property
    def empty(self) -> bool:
        return self.rows == 0

    def summary(self) -> str:
        head = f"{self.table}: {self.passed}/{self.evaluated} expectations passed ({self.rows} rows"
        head += ", EMPTY TABLE)" if self.empty else ")"
        if self.warnings:
            head += "; warning: " + "; ".join(self.warnings)
        if self.success:
            return head
        parts = []
        for name in self.failed:
            n = self.unexpected.get(name)
            parts.append(f"{name} [{n} unexpected]" if n is not None else name)
        return f"{head}; FAILED: " + "; ".join(parts)


def _quiet_gx() -> None:
    # GX logs at INFO/WARNING from many modules; the CLI prints its own progress.
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _get_or_create_batch_definition(context: Any) -> Any:
    try:
        ds = context.data_sources.get(_DATASOURCE)
    except KeyError:
        ds = context.data_sources.add_spark(name=_DATASOURCE)
    try:
        asset = ds.get_asset(_ASSET)
    except LookupError:
        asset = ds.add_dataframe_asset(name=_ASSET)
    try:
        return asset.get_batch_definition(_BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)


def _expectation_name(cfg: Any) -> str:
    meta = getattr(cfg, "meta", None) or {}
    if meta.get("name"):
        return str(meta["name"])
    col = (cfg.kwargs or {}).get("column")
    return f"{cfg.type}({col})" if col else str(cfg.type)


def _unexpected_count(result: Any) -> int | None:
    res = result.result or {}
    if "unexpected_count" in res and res["unexpected_count"] is not None:
        return int(res["unexpected_count"])
    if isinstance(res.get("observed_value"), int):  # UnexpectedRowsExpectation: the query's row count
        return int(res["observed_value"])
    return None


@dataclass
class _Plan:
    """The GX expectations of the `qa` suite and the gate predicates they read as batch columns."""

    expectations: list[Any] = field(default_factory=list)
    predicates: dict[str, Column] = field(default_factory=dict)


def _predicate_column(e: Expectation) -> str:
    return "_gate_" + re.sub(r"\W+", "_", e.id).strip("_")


def _gate_predicate(ex: Any, e: Expectation, meta: dict, plan: _Plan, rows: int, min_rows: int) -> None:
    """Add `e` to the plan as the gate's predicate column and a query for the rows it flags."""
    flag = _predicate_column(e)
    if e.kind == "max_share":  # one unexpected row per value over its share
        plan.predicates[flag] = measures.value_over_share(e, rows, min_rows)
        query = f"SELECT DISTINCT `{e.column}` FROM {{batch}} WHERE `{flag}`"
    else:
        plan.predicates[flag] = measures.row_violation(e)
        query = f"SELECT * FROM {{batch}} WHERE `{flag}`"
    description = _GATE_PREDICATE_DESCRIPTIONS[e.kind].format(e=e)
    plan.expectations.append(ex.UnexpectedRowsExpectation(unexpected_rows_query=query, description=description, meta=meta))


def _plan(quality_cfg: Any, rows: int) -> _Plan:
    """The `qa` suite of `suites.py` for GX on a batch of `rows` rows."""
    import great_expectations as gx

    ex, plan = gx.expectations, _Plan()
    for e in table_suites(quality_cfg)[TABLE]:
        severity = severity_of(TABLE, e, quality_cfg)
        if severity == OFF:
            continue
        meta = {"name": e.id, "severity": severity}
        if e.kind in _GX_CLASSES:
            cls, arguments = _GX_CLASSES[e.kind]
            plan.expectations.append(getattr(ex, cls)(**arguments(e), meta=meta))
        elif e.kind in _GATE_PREDICATE_DESCRIPTIONS:
            _gate_predicate(ex, e, meta, plan, rows, int(quality_cfg.distribution_min_rows))
        # batch relations (rows in / out) are checked by the landing gate only
    return plan


def _with_predicates(df: DataFrame, predicates: dict[str, Column]) -> DataFrame:
    """`df` with one boolean column per gate predicate. A predicate on a missing column is left
    out: GX's query on its column then fails and is reported as that expectation's error."""
    for name, predicate in predicates.items():
        try:
            df = df.withColumn(name, predicate)
        except AnalysisException:
            continue
    return df


def _context(out_dir: Path) -> Any:
    """The file-mode GX project under `out_dir`, with progress bars off."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    bars = getattr(context.variables, "progress_bars", None)
    bars_on = bars is None or (bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True))
    if bars_on:  # GX prints tqdm bars per metric batch unless switched off in the project config
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        context.variables.save()
    return context


def _checkpoint(context: Any, expectations: list[Any]) -> Any:
    """The checkpoint validating the whole batch against a suite re-written from `expectations`."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=_SUITE)
    for expectation in expectations:
        suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=_VALIDATION, data=_get_or_create_batch_definition(context), suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=_CHECKPOINT,
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format="SUMMARY",
        )
    )


def _run(checkpoint: Any, batch: DataFrame, run_id: str, keep_cached: bool) -> Any:
    """Run the checkpoint on `batch`, then undo what GX leaves behind (its persist, its temp view)."""
    from great_expectations.core.run_identifier import RunIdentifier

    try:
        return checkpoint.run(batch_parameters={"dataframe": batch}, run_id=RunIdentifier(run_name=str(run_id)))
    finally:
        if not keep_cached:
            try:
                batch.unpersist()  # GX's Spark engine persists the batch DataFrame
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        try:
            batch.sparkSession.catalog.dropTempView(_GX_TEMP_VIEW)
        except Exception:  # noqa: BLE001
            pass


@dataclass
class _Tally:
    evaluated: int = 0
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)  # every expectation by its suites.py id
    unexpected: dict[str, int | None] = field(default_factory=dict)


def _count_result(tally: _Tally, r: Any) -> None:
    meta = getattr(r.expectation_config, "meta", None) or {}
    name = _expectation_name(r.expectation_config)
    tally.checks.append({"name": name, "severity": meta.get("severity", "critical"), "success": bool(r.success), "unexpected": _unexpected_count(r)})
    if r.success:
        return
    info = r.exception_info or {}
    if info.get("raised_exception"):
        msg = str(info.get("exception_message") or "error").splitlines()[0][:200]
        name = f"{name} [error: {msg}]"
    (tally.warnings if meta.get("severity") == "warning" else tally.failed).append(name)
    tally.unexpected[name] = _unexpected_count(r)


def _tally(result: Any) -> _Tally:
    tally = _Tally()
    for suite_result in result.run_results.values():
        stats = suite_result.statistics or {}
        tally.evaluated += int(stats.get("evaluated_expectations", len(suite_result.results)))
        tally.passed += int(stats.get("successful_expectations", 0))
        for r in suite_result.results:
            _count_result(tally, r)
    return tally


def validate_qa(spark: Any, df: Any, quality_cfg: Any, out_dir: Path, run_id: str) -> ValidationOutcome:
    """Validate the final `qa` DataFrame with GX; write the result JSON and Data Docs under `out_dir`.

    `spark` is the session `df` belongs to (a pandas DataFrame is converted with it). The caller
    decides what a failure means (`quality_cfg.on_failure`); this function never raises on failed
    expectations, and an empty table validates (all expectations vacuously pass; `rows == 0`).
    """
    _quiet_gx()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not hasattr(df, "sparkSession") and hasattr(df, "columns") and spark is not None:
        df = spark.createDataFrame(df)
    rows = int(df.count())  # share checks need the batch size
    context = _context(out_dir)
    plan = _plan(quality_cfg, rows)
    batch = _with_predicates(df, plan.predicates)
    keep_cached = batch is df and bool(getattr(df, "is_cached", False))
    result = _run(_checkpoint(context, plan.expectations), batch, run_id, keep_cached)
    tally = _tally(result)

    payload = {"table": TABLE, "run_id": str(run_id), "rows": rows, "checks": tally.checks, **result.describe_dict()}
    safe_run_id = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(run_id))
    results_path = out_dir / f"qa_validation_{safe_run_id}.json"
    results_path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    docs = out_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return ValidationOutcome(
        table=TABLE,
        success=not tally.failed,  # warnings do not fail the suite
        evaluated=tally.evaluated,
        failed=tally.failed,
        results_path=results_path,
        data_docs=docs if docs.is_file() else None,
        rows=rows,
        passed=tally.passed,
        unexpected=tally.unexpected,
        warnings=tally.warnings,
    )
