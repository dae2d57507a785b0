"""Great Expectations (1.x) validation of the final `qa` table, with Data Docs.

The suite is not defined here: it is translated from `suites.py` (the one place every table's
suite lives, with its severities), so the landing gate and GX check the same things. Per-row kinds
map to GX's column expectations; `not_in`, `size_between` and `max_share` become
`UnexpectedRowsExpectation`s with a Spark-SQL query over `{batch}` (GX 1.24 evaluates it on Spark by
registering the batch as the temp view `tmp_view`). A failed `warning` expectation is reported in
`ValidationOutcome.warnings` and does not fail the suite.

The GX project is a file-mode context rooted at `out_dir` (`<out_dir>/gx/...`). Every object
(data source, asset, batch definition, suite, validation definition, checkpoint) is fetched or
created by name, and the suite is re-written from code on each call, so repeated runs in the same
directory work and a changed config takes effect.

great_expectations is imported inside `validate_qa` only: importing it costs seconds.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import DOMAINS as _DOMAINS

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


def _gx_expectation(ex: Any, e: Any, severity: str, q: Any) -> Any | None:
    """The GX expectation for one suite entry of `suites.py` (the one place suites are defined)."""
    meta = {"name": e.id, "severity": severity}
    col = e.column
    if e.kind == "schema":
        return ex.ExpectTableColumnsToMatchSet(column_set=[c for c, _ in e.args], exact_match=False, meta=meta)
    if e.kind == "not_null":
        return ex.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
    if e.kind == "unique":
        return ex.ExpectColumnValuesToBeUnique(column=col, meta=meta)
    if e.kind == "in_set":
        return ex.ExpectColumnValuesToBeInSet(column=col, value_set=list(e.args[0]), meta=meta)
    if e.kind == "matches":
        return ex.ExpectColumnValuesToMatchRegex(column=col, regex=f"^(?:{e.args[0]})$", meta=meta)
    if e.kind == "length_between":
        return ex.ExpectColumnValueLengthsToBeBetween(column=col, min_value=e.args[0], max_value=e.args[1], meta=meta)
    if e.kind == "value_between":
        return ex.ExpectColumnValuesToBeBetween(column=col, min_value=e.args[0], max_value=e.args[1], meta=meta)
    # The rest as Spark-SQL over GX's `{batch}` view: any returned row is unexpected.
    if e.kind == "not_in":
        other = e.args[0]
        query = (
            f"SELECT * FROM {{batch}} WHERE `{col}` IS NOT NULL AND `{other}` IS NOT NULL AND length(trim(`{col}`)) > 0 "
            f"AND instr(lower(`{other}`), lower(trim(`{col}`))) > 0"
        )
        description = f"{col} is not contained in {other} (case-insensitive)"
    elif e.kind == "size_between":
        lo, hi = e.args
        conds = ([f"size(`{col}`) < {int(lo)}"] if lo is not None else []) + ([f"size(`{col}`) > {int(hi)}"] if hi is not None else [])
        query = f"SELECT * FROM {{batch}} WHERE `{col}` IS NOT NULL AND ({' OR '.join(conds)})"
        description = f"number of {col} between {lo} and {hi}"
    elif e.kind == "max_share":
        rows = "(SELECT count(*) FROM {batch})"
        query = (
            f"SELECT `{col}`, count(*) AS n FROM {{batch}} GROUP BY `{col}` "
            f"HAVING count(*) > {float(e.args[0])} * {rows} AND {rows} >= {int(q.distribution_min_rows)}"
        )
        description = f"no {col} value on more than {e.args[0]:.0%} of the rows"
    else:
        return None  # batch relations (rows in / out) are checked by the landing gate only
    return ex.UnexpectedRowsExpectation(unexpected_rows_query=query, description=description, meta=meta)


def _build_suite(gx: Any, quality_cfg: Any) -> Any:
    from .suites import OFF, severity_of, table_suites

    suite = gx.ExpectationSuite(name=_SUITE)
    for e in table_suites(quality_cfg)[TABLE]:
        severity = severity_of(TABLE, e, quality_cfg)
        if severity == OFF:
            continue
        expectation = _gx_expectation(gx.expectations, e, severity, quality_cfg)
        if expectation is not None:
            suite.add_expectation(expectation)
    return suite


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


def validate_qa(spark: Any, df: Any, quality_cfg: Any, out_dir: Path, run_id: str) -> ValidationOutcome:
    """Validate the final `qa` DataFrame with GX; write the result JSON and Data Docs under `out_dir`.

    `spark` is the session `df` belongs to (a pandas DataFrame is converted with it). The caller
    decides what a failure means (`quality_cfg.on_failure`); this function never raises on failed
    expectations, and an empty table validates (all expectations vacuously pass; `rows == 0`).
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if not hasattr(df, "sparkSession") and hasattr(df, "columns") and spark is not None:
        df = spark.createDataFrame(df)

    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    bars = getattr(context.variables, "progress_bars", None)
    bars_on = bars is None or (bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True))
    if bars_on:  # GX prints tqdm bars per metric batch unless switched off in the project config
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        context.variables.save()

    batch_definition = _get_or_create_batch_definition(context)
    suite = context.suites.add_or_update(_build_suite(gx, quality_cfg))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=_VALIDATION, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=_CHECKPOINT,
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format="SUMMARY",
        )
    )

    was_cached = bool(getattr(df, "is_cached", False))
    try:
        result = checkpoint.run(batch_parameters={"dataframe": df}, run_id=RunIdentifier(run_name=str(run_id)))
        rows = int(df.count())  # GX persisted the batch, so this is cheap
    finally:
        if not was_cached:
            try:
                df.unpersist()  # GX's Spark engine persists the batch DataFrame
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass
        try:
            df.sparkSession.catalog.dropTempView(_GX_TEMP_VIEW)
        except Exception:  # noqa: BLE001
            pass

    evaluated = passed = 0
    failed: list[str] = []
    warnings: list[str] = []
    checks: list[dict] = []  # every expectation by its suites.py id, for reports and notebooks
    unexpected: dict[str, int | None] = {}
    for suite_result in result.run_results.values():
        stats = suite_result.statistics or {}
        evaluated += int(stats.get("evaluated_expectations", len(suite_result.results)))
        passed += int(stats.get("successful_expectations", 0))
        for r in suite_result.results:
            meta = getattr(r.expectation_config, "meta", None) or {}
            checks.append(
                {"name": _expectation_name(r.expectation_config), "severity": meta.get("severity", "critical"), "success": bool(r.success), "unexpected": _unexpected_count(r)}
            )
            if r.success:
                continue
            name = _expectation_name(r.expectation_config)
            info = r.exception_info or {}
            if info.get("raised_exception"):
                msg = str(info.get("exception_message") or "error").splitlines()[0][:200]
                name = f"{name} [error: {msg}]"
            (warnings if meta.get("severity") == "warning" else failed).append(name)
            unexpected[name] = _unexpected_count(r)

    payload = {"table": TABLE, "run_id": str(run_id), "rows": rows, "checks": checks, **result.describe_dict()}
    safe_run_id = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(run_id))
    results_path = out_dir / f"qa_validation_{safe_run_id}.json"
    results_path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")

    docs = out_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return ValidationOutcome(
        table=TABLE,
        success=not failed,  # warnings do not fail the suite
        evaluated=evaluated,
        failed=failed,
        results_path=results_path,
        data_docs=docs if docs.is_file() else None,
        rows=rows,
        passed=passed,
        unexpected=unexpected,
        warnings=warnings,
    )
