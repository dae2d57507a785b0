"""The order of stages for one run, and the bookkeeping every stage shares: materialise once,
land kept rows and rejections in Delta, count, time, report, and prove nothing vanished."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import STAGES, tables
from .config import LLM_STAGES, Config
from .progress import LLMProgress, fmt_seconds
from .stages import check, decontaminate, dedup, filter as filter_stage, generate, ingest, llm_filter, profile
from .stages.base import REASON, Stage, StageContext, StageResult
from .stages.llm_stage import llm_usage

PIPELINE: tuple[Stage, ...] = (
    ingest.STAGE,
    filter_stage.STAGE,
    dedup.STAGE,
    llm_filter.STAGE,
    profile.STAGE,
    generate.STAGE,
    check.STAGE,
    decontaminate.STAGE,
)
assert tuple(s.name for s in PIPELINE) == STAGES


class PipelineError(RuntimeError):
    pass


@dataclass
class StageSummary:
    stage: str
    table: str
    rows_in: int
    kept: int
    rejected: int
    elapsed_s: float
    rejected_by_reason: dict[str, int]
    table_version: int | None
    llm: dict[str, float] = field(default_factory=dict)
    gate: object | None = None  # quality.gates.GateOutcome; not ok → the batch is in quarantine
    rejections_version: int | None = None


@dataclass
class RunSummary:
    run_id: str
    warehouse: Path
    stages: list[StageSummary] = field(default_factory=list)
    final_table: str | None = None
    validation: object | None = None
    mlflow: object | None = None
    qa_report: dict | None = None
    elapsed_s: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return {s.stage: s.kept for s in self.stages}


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def stages_until(until: str | None) -> tuple[Stage, ...]:
    if until is None:
        return PIPELINE
    if until not in STAGES:
        raise PipelineError(f"--until must be one of {', '.join(STAGES)}; got {until!r}")
    return PIPELINE[: STAGES.index(until) + 1]


def run_pipeline(
    inputs: list[str],
    warehouse: str | Path,
    cfg: Config,
    *,
    until: str | None = None,
    limit: int | None = None,
    spark: SparkSession | None = None,
    log: Callable[[str], None] = print,
) -> RunSummary:
    from .readers import read_documents
    from .spark import get_spark

    t_run = time.monotonic()
    warehouse = Path(warehouse).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    stages = stages_until(until)
    run_id = new_run_id()
    summary = RunSummary(run_id=run_id, warehouse=warehouse)
    log(f"webscale-rl run {run_id}: {len(inputs)} input path(s) → warehouse {warehouse}")

    spark = spark or get_spark(cfg)
    # Reading validates every input file before any stage runs (clear errors, no half runs).
    raw = read_documents(spark, inputs, limit=limit)
    if cfg.decontam.eval_sets and decontaminate.STAGE in stages:
        decontaminate.load_eval_sets(spark, list(cfg.decontam.eval_sets), cfg.decontam)  # fail early on a bad file

    from .quality.report import RunReport
    from .quality.run_artifacts import log_data_docs, log_run_artifacts, log_stage_run

    needs_llm = any(s.uses_llm for s in stages)
    report_cm = RunReport(
        cfg.mlflow, warehouse, run_name=run_id, tags={"webscale_rl.run_id": run_id}, secret_env_vars=(cfg.llm.api_key_env,)
    )
    with report_cm as report:
        summary.mlflow = report
        report.log_params(
            {
                **cfg.flat(),
                "run.inputs": ",".join(inputs),
                "run.until": until or STAGES[-1],
                "run.limit": limit,
                "run.id": run_id,
            }
        )
        endpoint_cm = _endpoint(cfg, log) if needs_llm else contextlib.nullcontext()
        with endpoint_cm as endpoint:
            if endpoint is not None:
                log(f"LLM: {endpoint.description}")
                report.log_params({"llm.endpoint": endpoint.description})
            current: DataFrame = raw
            read_versions: dict[str, int | None] = {}  # lineage: the table version the next stage reads
            staging_root = warehouse / "_staging" / run_id
            for stage in stages:
                ctx = StageContext(
                    cfg=cfg,
                    run_id=run_id,
                    llm_base_url=endpoint.base_url if endpoint else None,
                    llm_api_key=endpoint.api_key if endpoint else None,
                    progress_dir=str(staging_root / "_progress"),
                    log=log,
                )
                # One nested MLflow run per stage (FAILED if the stage raises or its batch is quarantined).
                with report.nested(stage.name, tags={"webscale_rl.run_id": run_id, "webscale_rl.stage": stage.name}) as stage_report:
                    stage_summary = run_stage(spark, stage, current, ctx, warehouse, staging_root, log)
                    summary.stages.append(stage_summary)
                    report.log_stage(
                        stage.name,
                        stage_summary.rows_in,
                        stage_summary.kept,
                        stage_summary.rejected,
                        stage_summary.elapsed_s,
                        stage_summary.rejected_by_reason,
                    )
                    if stage_summary.llm:
                        report.log_metrics({f"{stage.name}.llm.{k}": v for k, v in stage_summary.llm.items()})
                    log_stage_run(stage_report, stage, stage_summary, cfg, inputs, read_versions)
                    if stage_summary.gate is not None and not stage_summary.gate.ok:
                        raise PipelineError(
                            f"stage '{stage.name}': batch failed critical expectation(s) and was quarantined in "
                            f"{warehouse / 'quarantine'} (not merged into '{stage.table}'): "
                            + "; ".join(stage_summary.gate.failed_expectations)
                        )
                read_versions = {stage.table: stage_summary.table_version}
                current = tables.read(spark, warehouse, stage.table).filter(F.col("run_id") == run_id)
            summary.final_table = stages[-1].table
            vanished = unaccounted_documents(spark, warehouse, run_id, summary.final_table, staging_root / "ingest")
            if vanished:
                raise PipelineError(f"{len(vanished)} document(s) are neither in '{summary.final_table}' nor in rejections, e.g. {vanished[:5]}")
            log(f"accounted for: every document of run {run_id} is in '{summary.final_table}' or 'rejections'")
        if summary.final_table == "qa":
            from .quality.qa_report import qa_report, report_metrics

            summary.qa_report = qa_report(spark, warehouse, run_id)
            report.log_metrics(report_metrics(summary.qa_report))
            report.log_dict(summary.qa_report, "qa_report.json")
        if summary.final_table == "qa" and cfg.quality.enabled:
            summary.validation = validate_final(spark, cfg, warehouse, run_id, report, log)
        log_run_artifacts(report, spark, warehouse, run_id, summary, cfg, warehouse / "_quality")
        if summary.validation is not None:
            log_data_docs(report, summary.validation.data_docs)
        shutil.rmtree(staging_root, ignore_errors=True)
        summary.elapsed_s = time.monotonic() - t_run
        report.log_metrics({"run.elapsed_s": summary.elapsed_s})
        report.log_dict(
            {"stages": [s.__dict__ for s in summary.stages], "run_id": run_id},
            "run_summary.json",
        )
        outcome = summary.validation
        if outcome is not None and not outcome.success and cfg.quality.on_failure == "fail":
            raise PipelineError(f"data validation failed for 'qa': {outcome.summary()} (details: {outcome.results_path})")
    return summary


def run_stage(
    spark: SparkSession,
    stage: Stage,
    current: DataFrame,
    ctx: StageContext,
    warehouse: Path,
    staging_root: Path,
    log: Callable[[str], None],
) -> StageSummary:
    t0 = time.monotonic()
    log(f"[{stage.name}] start → table '{stage.table}'")
    result = stage.run(current, ctx)
    staging = str(staging_root / stage.name)
    planned = int(result.stats.get("llm_calls_planned", 0))
    if stage.uses_llm:
        log(f"  [{stage.name}] {planned} LLM call(s) to make")
        with LLMProgress(stage.name, planned, Path(ctx.progress_dir) / stage.name, log):
            tables.overwrite(result.marked, staging)
    else:
        tables.overwrite(result.marked, staging)
    # Everything below reads the materialised rows: LLM calls are never made twice.
    materialised = StageResult(spark.read.format("delta").load(staging), result.stats)
    marked = materialised.marked
    reasons = {r[REASON]: int(r["count"]) for r in marked.filter(F.col(REASON).isNotNull()).groupBy(REASON).count().collect()}
    n_rejected = sum(reasons.values())
    n_total = marked.count()
    n_kept = n_total - n_rejected
    rows_in = n_total if stage.name == "ingest" else current.count()
    kept_df = materialised.kept.withColumn("run_id", F.lit(ctx.run_id))
    rejected_df = materialised.rejected(stage.name, ctx.run_id)
    gate = None
    if ctx.cfg.quality.gates:  # the landing gate: validate the batch before it is committed
        from .quality.gates import gate_batch, quarantine

        gate = gate_batch(spark, stage.name, stage.table, kept_df, rejected_df, rows_in, ctx.cfg.quality, warehouse, ctx.run_id)
        if not gate.ok or gate.warnings:
            log(gate.message())
        if not gate.ok:
            quarantine(spark, gate, kept_df, rejected_df, warehouse)
            return StageSummary(stage.name, stage.table, rows_in, n_kept, n_rejected, time.monotonic() - t0, reasons, None, {}, gate)
    version = tables.append(kept_df, warehouse, stage.table)
    rejections_version = tables.append(rejected_df, warehouse, tables.REJECTIONS) if n_rejected else None
    usage = llm_usage(marked) if stage.uses_llm else {}
    elapsed = time.monotonic() - t0
    top = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:6])
    llm_note = ""
    if usage:
        llm_note = f"; {int(usage['calls'])} calls, {int(usage['prompt_tokens'])}+{int(usage['completion_tokens'])} tokens"
    log(
        f"[{stage.name}] done in {fmt_seconds(elapsed)}: in {rows_in}, kept {n_kept}, rejected {n_rejected}"
        + (f" ({top})" if top else "")
        + llm_note
    )
    return StageSummary(stage.name, stage.table, rows_in, n_kept, n_rejected, elapsed, reasons, version, usage, gate, rejections_version)


def unaccounted_documents(spark: SparkSession, warehouse: Path, run_id: str, final_table: str, ingested: Path) -> list[str]:
    """doc_ids of this run's input documents (all rows ingest saw, kept or not) that are neither
    in the final table nor rejected."""
    this_run = F.col("run_id") == run_id
    docs = spark.read.format("delta").load(str(ingested)).select("doc_id")
    kept = tables.read(spark, warehouse, final_table).filter(this_run).select("doc_id")
    accounted = kept
    if tables.exists(spark, warehouse, tables.REJECTIONS):
        accounted = accounted.unionByName(tables.read(spark, warehouse, tables.REJECTIONS).filter(this_run).select("doc_id"))
    missing = docs.join(accounted.distinct(), "doc_id", "left_anti")
    return [r["doc_id"] for r in missing.limit(20).collect()]


def validate_final(spark, cfg: Config, warehouse: Path, run_id: str, report, log):
    from .quality.expectations import validate_qa

    t0 = time.monotonic()
    log("[validate] Great Expectations suite on 'qa'")
    qa = tables.read(spark, warehouse, "qa").filter(F.col("run_id") == run_id)
    outcome = validate_qa(spark, qa, cfg.quality, warehouse / "_quality", run_id)
    log(f"[validate] {outcome.summary()} in {fmt_seconds(time.monotonic() - t0)}; results: {outcome.results_path}")
    report.log_file(Path(outcome.results_path), "validation")
    report.log_metrics({"validation.success": 1.0 if outcome.success else 0.0})
    return outcome


def _endpoint(cfg: Config, log):
    from .llm.endpoint import llm_endpoint

    return llm_endpoint(cfg, log)


__all__ = ["run_pipeline", "PIPELINE", "RunSummary", "PipelineError", "LLM_STAGES"]
