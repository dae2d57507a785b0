"""The order of stages for one run, and the bookkeeping every stage shares: find the work no run
has done yet, materialise it once as a staged batch, land kept rows and rejections in Delta
idempotently, count, time, report, and prove nothing vanished.

Crash safety rests on three facts: a Delta commit is atomic; a staged batch exists only once its
commit is written (a half-written one is discarded); and landing a batch is an idempotent append
keyed by (stage, run), so a batch staged by a killed run is landed by the next run exactly once."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from . import STAGES, tables
from .config import LLM_STAGES, Config
from .limits import with_call_limits
from .progress import LLMProgress, fmt_seconds
from .stages import check, decontaminate, dedup, filter as filter_stage, generate, ingest, llm_filter, profile
from .stages.base import REASON, Stage, StageContext, StageResult, batch_totals
from .llm.engine import TRANSIENT_REASON_SQL
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
    counts: dict[str, int] = field(default_factory=dict)  # the stage's `_count_*` totals (PII replaced, ...)
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


def stages_until(until: str | None, start: str | None = None) -> tuple[Stage, ...]:
    """The stages from `start` (default the first) to `until` (default the last), in order."""
    for flag, name in (("--from", start), ("--until", until)):
        if name is not None and name not in STAGES:
            raise PipelineError(f"{flag} must be one of {', '.join(STAGES)}; got {name!r}")
    first = STAGES.index(start) if start else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise PipelineError(f"--from {start} comes after --until {until}")
    return PIPELINE[first : last + 1]


def run_pipeline(
    inputs: list[str],
    warehouse: str | Path,
    cfg: Config,
    *,
    until: str | None = None,
    start: str | None = None,
    limit: int | None = None,
    spark: SparkSession | None = None,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Run the stages in order. Every stage takes only the work no earlier run finished (upstream
    table minus the keys it already kept or rejected), so a rerun on the same input adds nothing,
    new documents are processed alone, and a killed run resumes where it stopped."""
    from .readers import read_documents
    from .spark import get_spark

    t_run = time.monotonic()
    warehouse = Path(warehouse).resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    stages = stages_until(until, start)
    if stages[0] is PIPELINE[0] and not inputs:
        raise PipelineError("the ingest stage needs --input (later stages read the warehouse)")
    run_id = new_run_id()
    summary = RunSummary(run_id=run_id, warehouse=warehouse)
    log(f"webscale-rl run {run_id}: stages {stages[0].name}..{stages[-1].name}, {len(inputs)} input path(s) → warehouse {warehouse}")

    spark = spark or get_spark(cfg)
    cfg = with_call_limits(cfg)  # llm.max_doc_chars fitted to the model's context (limits.*)
    tables.use_catalog(spark, warehouse, cfg.warehouse.catalog, cfg.warehouse.schema)
    # Reading validates every input file before any stage runs (clear errors, no half runs).
    raw = read_documents(spark, inputs, limit=limit) if stages[0] is PIPELINE[0] else None
    if cfg.decontam.eval_sets and decontaminate.STAGE in stages:
        decontaminate.load_eval_sets(spark, list(cfg.decontam.eval_sets), cfg.decontam)  # fail early on a bad file

    from .quality.report import RunReport
    from .quality.run_artifacts import log_data_docs, log_run_artifacts, log_stage_run

    needs_llm = any(s.uses_llm for s in stages)
    report_cm = RunReport(
        cfg.mlflow, warehouse, run_name=run_id, tags={"webscale_rl.run_id": run_id}, secret_env_vars=(cfg.llm.api_key_env,)
    )
    progress_root = warehouse / STAGING / "progress"
    shutil.rmtree(progress_root, ignore_errors=True)  # LLM call counters of killed runs; one run per warehouse at a time
    with report_cm as report:
        summary.mlflow = report
        report.log_params(
            {
                **cfg.flat(),
                "run.inputs": ",".join(inputs),
                "run.from": stages[0].name,
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
            if endpoint is not None and cfg.llm.cache:
                _fold_llm_cache(spark, warehouse, log, "replies paid for by an earlier, unfinished run")
            read_versions: dict[str, int | None] = {}  # lineage: the table version the next stage reads
            for stage in stages:
                ctx = StageContext(
                    cfg=cfg,
                    run_id=run_id,
                    llm_base_url=endpoint.base_url if endpoint else None,
                    llm_api_key=endpoint.api_key if endpoint else None,
                    progress_dir=str(progress_root / run_id),
                    warehouse=str(warehouse),
                    log=log,
                )
                if stage is PIPELINE[0]:
                    upstream = raw
                elif tables.exists(spark, warehouse, upstream_table(stage)):
                    upstream = tables.read(spark, warehouse, upstream_table(stage))
                else:
                    raise PipelineError(f"stage '{stage.name}' reads table '{upstream_table(stage)}', which is not in {warehouse}: run the earlier stages first")
                # One nested MLflow run per stage (FAILED if the stage raises or its batch is quarantined).
                with report.nested(stage.name, tags={"webscale_rl.run_id": run_id, "webscale_rl.stage": stage.name}) as stage_report:
                    stage_summary = run_stage(spark, stage, upstream, ctx, warehouse, log)
                    summary.stages.append(stage_summary)
                    report.log_stage(
                        stage.name,
                        stage_summary.rows_in,
                        stage_summary.kept,
                        stage_summary.rejected,
                        stage_summary.elapsed_s,
                        stage_summary.rejected_by_reason,
                    )
                    if stage_summary.counts:
                        report.log_metrics({f"{stage.name}.{k}": v for k, v in stage_summary.counts.items()})
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
            summary.final_table = stages[-1].table
            llm_stages = {s.stage: s.llm for s in summary.stages if s.llm}
            if llm_stages:
                from .llm.pricing import cost_summary

                cost_metrics, cost_lines = cost_summary(cfg, llm_stages)
                for line in cost_lines:
                    log(line)
                report.log_metrics(cost_metrics)
            vanished = unaccounted_documents(spark, warehouse, summary.final_table)
            if vanished:
                raise PipelineError(f"{len(vanished)} document(s) are neither in '{summary.final_table}' nor in rejections, e.g. {vanished[:5]}")
            log(f"accounted for: every ingested document is in '{summary.final_table}' or 'rejections'")
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
        shutil.rmtree(progress_root / run_id, ignore_errors=True)
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


# --- incremental work: what a stage has still to do ------------------------------------------

STAGING = "_staging"
# The key that says a stage has handled one of its input rows (QA stages take pairs, the others documents).
INPUT_KEY = {"check": "qa_id", "decontaminate": "qa_id"}
# Stages that must see rows earlier runs already kept, to judge new rows against them (an exact
# duplicate of a document kept last week is still a duplicate). Those rows enter flagged PRIOR and
# leave the stage's output before it lands.
NEEDS_LANDED_ROWS = {"dedup"}
PRIOR = "_prior"


def upstream_table(stage: Stage) -> str:
    return PIPELINE[PIPELINE.index(stage) - 1].table


def input_key(stage: Stage) -> str:
    return INPUT_KEY.get(stage.name, "doc_id")


def processed_keys(spark: SparkSession, warehouse: Path, stage: Stage) -> DataFrame | None:
    """Keys of the stage's input rows that some run already landed, kept or rejected."""
    key = input_key(stage)
    parts = []
    if tables.exists(spark, warehouse, stage.table):
        parts.append(tables.read(spark, warehouse, stage.table).select(key))
    if tables.exists(spark, warehouse, tables.REJECTIONS):
        rejected = tables.read(spark, warehouse, tables.REJECTIONS).filter(F.col("stage") == stage.name)
        if stage.uses_llm:  # an endpoint failure is not a result: the next run tries the item again
            rejected = rejected.filter(f"NOT ({TRANSIENT_REASON_SQL})")
        parts.append(rejected.select(key))
    if not parts:
        return None
    done = parts[0]
    for part in parts[1:]:
        done = done.unionByName(part)
    return done.filter(F.col(key).isNotNull()).distinct()


def without_processed(spark: SparkSession, warehouse: Path, stage: Stage, rows: DataFrame) -> DataFrame:
    done = processed_keys(spark, warehouse, stage)
    return rows if done is None else rows.join(done, input_key(stage), "left_anti")


def with_landed_rows(spark: SparkSession, warehouse: Path, stage: Stage, work: DataFrame) -> DataFrame:
    if stage.name not in NEEDS_LANDED_ROWS or not tables.exists(spark, warehouse, stage.table):
        return work
    landed = tables.read(spark, warehouse, stage.table).select(*work.columns)
    return work.withColumn(PRIOR, F.lit(False)).unionByName(landed.withColumn(PRIOR, F.lit(True)))


# --- batches: a stage's output is staged once, then landed idempotently ----------------------


def batch_root(warehouse: Path, stage: Stage) -> Path:
    return warehouse / STAGING / "batches" / stage.name


def staged_batches(warehouse: Path, stage: Stage) -> list[Path]:
    """Batches of this stage whose materialisation committed but whose landing may not have.
    A folder without a Delta commit is a batch killed while being written: it is not work done."""
    root = batch_root(warehouse, stage)
    if not root.is_dir():
        return []
    committed = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".trash-"):  # a removal that a kill interrupted
            shutil.rmtree(path, ignore_errors=True)
            continue
        if (path / "_delta_log" / "00000000000000000000.json").is_file():
            committed.append(path)
        else:
            discard(path)
    return committed


def discard(path: Path) -> None:
    """Remove a folder so that a kill half-way never leaves a half-deleted batch under its name."""
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:6]}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: WEBSCALE_RL_KILL_AT=<name> SIGKILLs this process
    here (no cleanup, no finally: like a lost machine). Names: staged:<stage> (batch committed,
    nothing landed), kept:<stage> (kept rows landed, rejections not), landed:<stage> (batch not yet dropped)."""
    if os.environ.get("WEBSCALE_RL_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Landed:
    version: int | None
    kept: int
    rejected: int
    reasons: dict[str, int]
    llm: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    gate: object | None = None
    rejections_version: int | None = None


def land_batch(
    spark: SparkSession,
    stage: Stage,
    batch: Path,
    warehouse: Path,
    cfg: Config,
    rows_in: int | None = None,
    log: Callable[[str], None] = print,
) -> Landed:
    """Land a staged batch: kept rows to the stage's table, rejections to `rejections`, each an
    idempotent append keyed by the batch, then drop the batch. Safe to repeat after a kill at any
    point: a commit that happened is skipped, one that did not is made.
    The landing gate sees the whole batch first: a batch failing a critical expectation goes to
    the quarantine table instead, and its stage table and `rejections` stay as they were."""
    run_id = batch.name  # the run that computed the batch; its rows carry that run_id
    txn = f"webscale-rl/{stage.name}/{run_id}"
    marked = spark.read.format("delta").load(str(batch))
    materialised = StageResult(marked)
    reasons, counts = batch_totals(marked)
    n_kept = reasons.pop(None, 0)
    n_rejected = sum(reasons.values())
    usage = llm_usage(marked) if stage.uses_llm else {}
    kept_df = materialised.kept.withColumn("run_id", F.lit(run_id))
    rejected_df = materialised.rejected(stage.name, run_id)
    gate = None
    if cfg.quality.gates:
        from .quality.gates import gate_batch, quarantine

        batch_in = rows_in if rows_in is not None else n_kept + n_rejected
        gate = gate_batch(spark, stage.name, stage.table, kept_df, rejected_df, batch_in, cfg.quality, warehouse, run_id)
        if not gate.ok or gate.warnings:
            log(gate.message())
        if not gate.ok:
            quarantine(spark, gate, kept_df, rejected_df, warehouse, txn)
            discard(batch)  # the quarantine holds it now; a later run recomputes these rows
            return Landed(None, n_kept, n_rejected, reasons, usage, counts, gate)
    crash_point(f"staged:{stage.name}")
    if stage.uses_llm and tables.exists(spark, warehouse, tables.REJECTIONS):
        # Items retried after an endpoint failure: their old rejection goes before the new result
        # lands (first, so a kill in between leaves the batch staged and the next run redoes this).
        tables.delete_matching(
            marked, warehouse, tables.REJECTIONS, input_key(stage), f"t.stage = '{stage.name}' AND t.{TRANSIENT_REASON_SQL}"
        )
    version = None
    if n_kept or not tables.exists(spark, warehouse, stage.table):  # an empty batch still creates the table once
        version = tables.append_once(kept_df, warehouse, stage.table, txn)
    crash_point(f"kept:{stage.name}")
    rejections_version = tables.append_once(rejected_df, warehouse, tables.REJECTIONS, txn) if n_rejected else None
    crash_point(f"landed:{stage.name}")
    discard(batch)
    return Landed(version, n_kept, n_rejected, reasons, usage, counts, gate, rejections_version)


def run_stage(
    spark: SparkSession,
    stage: Stage,
    upstream: DataFrame,
    ctx: StageContext,
    warehouse: Path,
    log: Callable[[str], None],
) -> StageSummary:
    t0 = time.monotonic()
    log(f"[{stage.name}] start → table '{stage.table}'")
    for pending in staged_batches(warehouse, stage):
        landed = land_batch(spark, stage, pending, warehouse, ctx.cfg, None, log)
        if landed.gate is not None and not landed.gate.ok:
            return StageSummary(stage.name, stage.table, landed.kept + landed.rejected, landed.kept, landed.rejected,
                                time.monotonic() - t0, landed.reasons, None, landed.llm, landed.counts, landed.gate)
        log(f"  [{stage.name}] landed batch of interrupted run {pending.name}: kept {landed.kept}, rejected {landed.rejected}")
    if stage is PIPELINE[0]:
        work = upstream  # doc_ids are made by the stage; already-ingested ones are dropped after it
        rows_in = None
    else:
        work = without_processed(spark, warehouse, stage, upstream)
        rows_in = work.count()
        if rows_in == 0:
            log(f"[{stage.name}] done in {fmt_seconds(time.monotonic() - t0)}: nothing new to process")
            return StageSummary(stage.name, stage.table, 0, 0, 0, time.monotonic() - t0, {}, None)
    result = stage.run(with_landed_rows(spark, warehouse, stage, work), ctx)
    marked = result.marked
    if PRIOR in marked.columns:
        marked = marked.filter(~F.col(PRIOR)).drop(PRIOR)
    if stage is PIPELINE[0]:
        marked = without_processed(spark, warehouse, stage, marked)
    batch = batch_root(warehouse, stage) / ctx.run_id
    planned = int(result.stats.get("llm_calls_planned", 0))
    if stage.uses_llm:
        log(f"  [{stage.name}] {planned} LLM call(s) to make")
        with LLMProgress(stage.name, planned, Path(ctx.progress_dir) / stage.name, log):
            tables.overwrite(marked, str(batch))
        if ctx.cfg.llm.cache:
            _fold_llm_cache(spark, warehouse, log, f"new replies of '{stage.name}'")
    else:
        tables.overwrite(marked, str(batch))
    # Everything below reads the materialised batch: LLM calls are never made twice.
    landed = land_batch(spark, stage, batch, warehouse, ctx.cfg, rows_in, log)
    if rows_in is None:
        rows_in = landed.kept + landed.rejected
    counts = landed.counts
    elapsed = time.monotonic() - t0
    top = ", ".join(f"{k}={v}" for k, v in sorted(landed.reasons.items(), key=lambda kv: -kv[1])[:6])
    llm_note = ""
    if landed.llm:
        usage = landed.llm
        llm_note = f"; {int(usage['calls'])} calls, {int(usage['prompt_tokens'])}+{int(usage['completion_tokens'])} tokens"
    log(
        f"[{stage.name}] done in {fmt_seconds(elapsed)}: in {rows_in}, kept {landed.kept}, rejected {landed.rejected}"
        + (f" ({top})" if top else "")
        + llm_note
        + ("; " + ", ".join(f"{k}={v}" for k, v in counts.items() if v) if any(counts.values()) else "")
    )
    return StageSummary(stage.name, stage.table, rows_in, landed.kept, landed.rejected, elapsed, landed.reasons, landed.version, landed.llm, counts, landed.gate, landed.rejections_version)


def unaccounted_documents(spark: SparkSession, warehouse: Path, final_table: str) -> list[str]:
    """doc_ids of every document ingest ever saw (landed or rejected) that are neither in the
    final table nor rejected at some stage."""
    docs = tables.read(spark, warehouse, PIPELINE[0].table).select("doc_id")
    accounted = tables.read(spark, warehouse, final_table).select("doc_id")
    if tables.exists(spark, warehouse, tables.REJECTIONS):
        rejections = tables.read(spark, warehouse, tables.REJECTIONS)
        docs = docs.unionByName(rejections.filter(F.col("stage") == "ingest").select("doc_id"))
        accounted = accounted.unionByName(rejections.select("doc_id"))
    missing = docs.distinct().join(accounted.distinct(), "doc_id", "left_anti")
    return [r["doc_id"] for r in missing.limit(20).collect()]


def validate_final(spark, cfg: Config, warehouse: Path, run_id: str, report, log):
    from .quality.expectations import validate_qa

    t0 = time.monotonic()
    log("[validate] Great Expectations suite on 'qa'")
    qa = tables.read(spark, warehouse, "qa")  # the whole product: a rerun must not have added a duplicate
    outcome = validate_qa(spark, qa, cfg.quality, warehouse / "_quality", run_id)
    log(f"[validate] {outcome.summary()} in {fmt_seconds(time.monotonic() - t0)}; results: {outcome.results_path}")
    report.log_file(Path(outcome.results_path), "validation")
    report.log_metrics({"validation.success": 1.0 if outcome.success else 0.0})
    return outcome


def _fold_llm_cache(spark: SparkSession, warehouse: Path, log: Callable[[str], None], what: str) -> None:
    from .llm.cache import fold_spills

    added = fold_spills(spark, warehouse)
    if added:
        log(f"  llm_cache: {added} {what} saved")


def _endpoint(cfg: Config, log):
    from .llm.endpoint import llm_endpoint

    return llm_endpoint(cfg, log)


__all__ = ["run_pipeline", "PIPELINE", "RunSummary", "PipelineError", "LLM_STAGES"]
