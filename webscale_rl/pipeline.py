"""A run: the stages from --from to --until, in order, over one warehouse.

The order of stages is `stages.order.PIPELINE`; running one stage is `runner.run_stage`, landing
its batch `landing.land_batch`, finding its work `work.py`. MLflow, the cost summary, the QA report
and the final validation watch the run as observers (`observers.py`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from . import lineage
from .budget import run_budget
from .config import Config, ConfigError, default_verify_to_check
from .limits import with_call_limits
from .llm.endpoint import llm_endpoint
from .llm.pricing import check_prices_for_budget
from .observers import RunObserver, RunStart, run_observers
from .progress import live_progress_dir
from .quality.suites import check_severity_overrides
from .readers import read_documents
from .run_hold import holding
from .runner import run_stage
from .spark import connect_address, get_spark, is_connect_session
from .stages import decontaminate
from .stages.base import Stage, StageContext
from .stages.order import LLM_STAGES, PIPELINE, STAGES
from .storage import is_local, normalize_root
from .store_check import check_store
from .summary import PipelineError, RunSummary, StageSummary
from .warehouse import Warehouse
from .work import unaccounted_documents

__all__ = ["run_pipeline", "stages_until", "check_config", "PIPELINE", "STAGES", "LLM_STAGES", "RunSummary", "StageSummary", "PipelineError"]


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


def check_config(cfg: Config) -> None:
    """The config checks that need the stages: a model per LLM stage, known severity overrides."""
    default_verify_to_check(cfg.llm)
    missing = [s for s in LLM_STAGES if s not in cfg.llm.models]
    if missing:
        raise ConfigError(f"llm.models lacks a model for stage(s) {missing}")
    check_severity_overrides(cfg.quality)


def check_llm_reachable(cfg: Config, spark: SparkSession, stages: tuple[Stage, ...]) -> None:
    """provider local serves the embedded model on this driver's loopback address, which executors
    on other hosts (a cluster, a Spark Connect server elsewhere) cannot reach: refuse at start,
    naming what to use instead."""
    if cfg.llm.provider != "local" or not any(s.uses_llm for s in stages):
        return
    if is_connect_session(spark):
        host, _ = connect_address(os.environ.get("SPARK_REMOTE", ""))
        if host in ("localhost", "127.0.0.1", "::1"):
            return
        where = f"the Spark Connect server {host}"
    else:
        master = spark.conf.get("spark.master", "local") or "local"
        if master.startswith("local"):
            return
        where = f"executors of master {master} on other hosts"
    raise ConfigError(
        f"llm.provider=local serves the embedded model on this driver's {cfg.local_llm.host}, which {where} cannot reach: "
        "serve a model every executor can reach (llama-server, vLLM, a hosted endpoint) and run with "
        "--config openai --set llm.base_url=http://HOST:PORT/v1"
    )


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
    """Run the stages in order. Every stage takes only the work no earlier run finished, so a
    rerun on the same input adds nothing and a killed run resumes where it stopped."""
    t_run = time.monotonic()
    check_config(cfg)
    stages = stages_until(until, start)
    check_prices_for_budget(cfg, [s.name for s in stages if s.uses_llm])
    if stages[0] is PIPELINE[0] and not inputs:
        raise PipelineError("the ingest stage needs --input (later stages read the warehouse)")
    run_id = new_run_id()
    log(f"webscale-rl run {run_id}: stages {stages[0].name}..{stages[-1].name}, {len(inputs)} input path(s) → warehouse {normalize_root(str(warehouse))}")
    eval_paths = decontaminate.eval_set_paths(cfg.decontam.eval_sets)
    mlflow_ready = warm_up_mlflow(cfg)  # while the JVM starts
    spark = spark or get_spark(cfg, storage_uris=[*inputs, str(warehouse), *eval_paths])  # s3a:// needs its connector jars
    check_llm_reachable(cfg, spark, stages)
    cfg = with_call_limits(cfg, LLM_STAGES)  # llm.max_doc_chars fitted to the model's context (limits.*)
    wh = Warehouse.open(spark, warehouse, cfg.warehouse.catalog, cfg.warehouse.schema)
    for uri in dict.fromkeys(u for u in inputs if not is_local(u)):  # local inputs: the readers name what is wrong
        check_store(spark, uri, role="input")
    # Reading validates every input file before any stage runs (clear errors, no half runs).
    raw = read_documents(spark, inputs, limit=limit, on_bad_record=cfg.limits.on_bad_record) if stages[0] is PIPELINE[0] else None
    if cfg.decontam.eval_sets and decontaminate.STAGE in stages:
        decontaminate.load_eval_sets(spark, list(cfg.decontam.eval_sets), cfg.decontam)  # fail early on a bad file
    summary = RunSummary(run_id=run_id, warehouse=wh, final_table=stages[-1].table)
    if mlflow_ready is not None:
        mlflow_ready.join()
    with holding(wh, run_id, log):  # one run per warehouse: a second one is refused here
        summary.mlflow, observers = run_observers(cfg, wh, run_id, log)
        run_observed(wh, stages, raw, cfg, summary, observers, RunStart(run_id, list(inputs), stages, until or STAGES[-1], limit, t_run), log)
    return summary


def warm_up_mlflow(cfg: Config) -> threading.Thread | None:
    """Import MLflow in a thread: seconds of Python that overlap the JVM's start instead of
    following it. Imports only: the store is made by the run's own MLflow start, once the run is
    accepted, so a refused run leaves nothing in the warehouse. → the thread to join before the
    run's MLflow run begins (None: MLflow is off)."""
    if not cfg.mlflow.enabled:
        return None

    def import_mlflow() -> None:
        with contextlib.suppress(Exception):  # a failing import is left for the run's MLflow start to report
            import mlflow.tracking  # noqa: F401

    # Not a daemon: a run failing meanwhile still waits for it.
    thread = threading.Thread(target=import_mlflow, name="mlflow-warm-up")
    thread.start()
    return thread


def run_observed(
    wh: Warehouse,
    stages: tuple[Stage, ...],
    raw: DataFrame | None,
    cfg: Config,
    summary: RunSummary,
    observers: list[RunObserver],
    start: RunStart,
    log: Callable[[str], None],
) -> None:
    """The stages inside the observers' run scopes, with their start and end hooks."""
    with contextlib.ExitStack() as scopes:
        for observer in observers:
            scopes.enter_context(observer.run_scope())
        for observer in observers:
            observer.on_run_start(start)
        run_stages(wh, stages, raw, cfg, summary, observers, log, start.inputs)
        for observer in observers:
            observer.on_run_end(summary)
        summary.elapsed_s = time.monotonic() - start.t0
        outcome = summary.validation
        if outcome is not None and not outcome.success and cfg.quality.on_failure == "fail":  # inside the scopes: MLflow marks the run failed
            raise PipelineError(f"data validation failed for 'qa': {outcome.summary()} (details: {outcome.results_path})")


def run_stages(
    wh: Warehouse,
    stages: tuple[Stage, ...],
    raw: DataFrame | None,
    cfg: Config,
    summary: RunSummary,
    observers: list[RunObserver],
    log: Callable[[str], None],
    inputs: Sequence[str] = (),
) -> None:
    """The stages in order, with the LLM endpoint up while they run; then prove nothing vanished.
    A run stopped by its budget (llm.max_cost_usd) ends after the stage it stopped in."""
    needs_llm = any(s.uses_llm for s in stages)
    with contextlib.ExitStack() as scopes:
        endpoint = scopes.enter_context(llm_endpoint(cfg, log)) if needs_llm else None
        progress_dir = scopes.enter_context(live_progress_dir(wh.spark, log)) if needs_llm else None
        if endpoint is not None:
            log(f"LLM: {endpoint.description}")
            for observer in observers:
                observer.on_endpoint(endpoint.description)
        ctx = StageContext(
            cfg=cfg,
            run_id=summary.run_id,
            llm_base_url=endpoint.base_url if endpoint else None,
            llm_api_key=endpoint.api_key if endpoint else None,
            progress_dir=progress_dir,
            warehouse=wh,
            log=log,
            budget=run_budget(cfg),
        )
        for stage in stages:
            run_observed_stage(wh, stage, raw, ctx, summary, observers, inputs)
            if ctx.budget is not None and ctx.budget.stop is not None:
                summary.budget_stop = ctx.budget.stop  # what is done has landed; the rest is the next run's new work
                log(ctx.budget.stop.line())
                return
        if decontaminate.STAGE in stages and cfg.decontam.eval_sets:  # pairs of earlier runs, against sets they have not seen
            decontaminate.catch_up(wh, list(cfg.decontam.eval_sets), cfg.decontam, summary.run_id, log)
        if not wh.exists(PIPELINE[0].table):  # pairs fed in at a later stage (the QA benchmark): no documents to account for
            log(f"accounting skipped: the warehouse has no '{PIPELINE[0].table}' table; its rows came in at a later stage")
            return
        vanished = unaccounted_documents(wh, PIPELINE[0], summary.final_table)
        if vanished:
            raise PipelineError(f"{len(vanished)} document(s) are neither in '{summary.final_table}' nor in rejections, e.g. {vanished[:5]}")
        log(f"accounted for: every ingested document is in '{summary.final_table}' or 'rejections'")


def run_observed_stage(
    wh: Warehouse, stage: Stage, raw: DataFrame | None, ctx: StageContext, summary: RunSummary, observers: list[RunObserver], inputs: Sequence[str] = ()
) -> None:
    """One stage inside its observers' scopes; a quarantined batch fails the run. What it reads is
    pinned before it runs, and recorded in `_lineage` with what it wrote when it ends (one commit)."""
    upstream, read = stage_input(wh, stage, raw, inputs)
    with contextlib.ExitStack() as scopes:
        for observer in observers:
            scopes.enter_context(observer.stage_scope(stage))
        stage_summary = run_stage(wh, stage, upstream, ctx, first=stage is PIPELINE[0])
        lineage.record(wh, ctx.run_id, stage, ctx.cfg, [*read, *lineage.written(stage_summary)])
        stage_summary.read = {t.table: t.version for t in read}
        summary.stages.append(stage_summary)
        for observer in observers:
            observer.on_stage_end(stage, stage_summary)
        if stage_summary.quarantined:
            raise PipelineError(
                f"stage '{stage.name}': batch failed critical expectation(s) and was quarantined in "
                f"{wh.where('quarantine')} (not merged into '{stage.table}'): " + "; ".join(stage_summary.gate.failed_expectations)
            )


def decontaminate_warehouse(
    warehouse: str | Path, cfg: Config, *, spark: SparkSession | None = None, log: Callable[[str], None] = print
) -> decontaminate.CatchUp:
    """`webscale-rl decontaminate`: only the catch-up of the decontaminate stage, holding the
    warehouse: every pair in `qa` checked against each configured eval set it has not seen."""
    if not cfg.decontam.eval_sets:
        raise ConfigError("decontaminate needs at least one --eval-set (or decontam.eval_sets)")
    run_id = new_run_id()
    log(f"webscale-rl decontaminate {run_id}: {len(cfg.decontam.eval_sets)} eval set(s) → warehouse {normalize_root(str(warehouse))}")
    spark = spark or get_spark(cfg, storage_uris=[str(warehouse), *decontaminate.eval_set_paths(cfg.decontam.eval_sets)])
    wh = Warehouse.open(spark, warehouse, cfg.warehouse.catalog, cfg.warehouse.schema)
    if not wh.exists(decontaminate.STAGE.table):
        raise PipelineError(f"no '{decontaminate.STAGE.table}' table in {wh.where(decontaminate.STAGE.table)}: run the pipeline first")
    with holding(wh, run_id, log):
        return decontaminate.catch_up(wh, list(cfg.decontam.eval_sets), cfg.decontam, run_id, log)


def stage_input(wh: Warehouse, stage: Stage, raw: DataFrame | None, inputs: Sequence[str]) -> tuple[DataFrame, list[lineage.TableVersion]]:
    """The stage's input and what it is: the documents read from `inputs` for the first stage, else
    the previous stage's table at the version it has now (pinned for the whole stage)."""
    if stage is PIPELINE[0]:
        return raw, [lineage.TableVersion(uri, None, lineage.INPUT) for uri in dict.fromkeys(inputs)]
    upstream, read = lineage.read_pinned(wh, stage, PIPELINE[PIPELINE.index(stage) - 1].table)
    return upstream, [read]
