"""Landing a stage's batch: kept rows to the stage's table, rejections to `rejections`.

Crash safety rests on three facts: a Delta commit is atomic; a staged batch exists only once its
commit is written (a half-written one is discarded); and landing a batch is an idempotent append
keyed by (stage, run), so a batch staged by a killed run is landed by the next run exactly once."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import Config
from .llm.cache import save_replies
from .llm.engine import TRANSIENT_REASON_SQL
from .quality.gates import QUARANTINED_PREFIX, GateOutcome, drop_row_violations, gate_batch, quarantine, quarantine_rows
from .stages.base import DETAIL, REASON, Stage, StageResult, batch_totals
from .stages.llm_stage import CALL_COLUMNS, llm_usage, model_id
from .summary import StageSummary
from .warehouse import REJECTIONS, Warehouse


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: WEBSCALE_RL_KILL_AT=<name> SIGKILLs this process
    here (no cleanup, no finally: like a lost machine). Names: staged:<stage> (batch committed,
    nothing landed), kept:<stage> (kept rows landed, rejections not), beside:<stage> (the beside
    table's rows landed too), landed:<stage> (batch not yet dropped)."""
    if os.environ.get("WEBSCALE_RL_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def land_batch(
    warehouse: Warehouse,
    stage: Stage,
    run_id: str,
    cfg: Config,
    rows_in: int | None = None,
    log: Callable[[str], None] = print,
) -> StageSummary:
    """Land the staged batch of (stage, run_id): kept rows and rejections, each an idempotent
    append keyed by the batch, then drop the batch. Safe to repeat after a kill at any point: a
    commit that happened is skipped, one that did not is made.
    The landing gate sees the whole batch first: a batch failing a critical expectation goes to
    the quarantine table instead, and its stage table and `rejections` stay as they were.
    `elapsed_s` of the summary is left 0: the caller times the whole stage."""
    txn = f"webscale-rl/{stage.name}/{run_id}"
    marked = warehouse.read_batch(stage.name, run_id)
    if stage.uses_llm and cfg.llm.cache:  # first: paid replies are kept whatever the gate says
        save_replies(warehouse, marked, CALL_COLUMNS, stage.name, model_id(cfg, stage.name), run_id)
    if cfg.quality.gates:  # rows breaking a per-row rule leave the batch; the rest lands
        marked = drop_row_violations(marked, stage.table, cfg.quality, REASON, DETAIL)
    materialised = StageResult(marked)
    kept_df = materialised.kept.withColumn("run_id", F.lit(run_id))
    rejected_df = materialised.rejected(stage.name, run_id)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The gate and the totals are separate jobs over the same staged batch that, on a batch of
        # any size a run lands in seconds, mostly wait on Spark's per-job latency: run side by side.
        # (Rows in is known unless this lands a killed run's batch; then it comes from the totals.)
        gate_job = pool.submit(_gate, warehouse, stage, run_id, cfg, rows_in, kept_df, rejected_df) if cfg.quality.gates and rows_in is not None else None
        reasons, counts = batch_totals(marked)
        # Only drop_row_violations makes `quarantined:` reasons: the totals say whether any row broke
        # a rule, so a clean batch is not read once more to find none.
        if cfg.quality.gates and any(r is not None and r.startswith(QUARANTINED_PREFIX) for r in reasons):
            if quarantine_rows(warehouse, stage.name, run_id, marked, stage.table, txn) is not None:
                log(f"  [gate] {stage.name}: rows that broke a per-row expectation are rejected as quarantined:<expectation> and copied to 'quarantine'")
        n_kept = reasons.pop(None, 0)
        n_rejected = sum(reasons.values())
        landed = StageSummary(
            stage.name, stage.table, rows_in if rows_in is not None else n_kept + n_rejected, n_kept, n_rejected, 0.0, reasons, None,
            llm_usage(marked) if stage.uses_llm else {}, counts,
        )  # fmt: skip
        if cfg.quality.gates:
            landed.gate = gate_job.result() if gate_job is not None else _gate(warehouse, stage, run_id, cfg, landed.rows_in, kept_df, rejected_df)
    if landed.gate is not None:
        if not landed.gate.ok or landed.gate.warnings:
            log(landed.gate.message())
        if landed.quarantined:
            quarantine(warehouse.spark, landed.gate, kept_df, rejected_df, warehouse, txn)
            warehouse.discard_batch(stage.name, run_id)  # the quarantine holds it now; a later run recomputes these rows
            return landed
    crash_point(f"staged:{stage.name}")
    if stage.uses_llm and warehouse.exists(REJECTIONS):
        _drop_transient_rejections(warehouse, stage, marked)
    if n_kept or not warehouse.exists(stage.table):  # an empty batch still creates the table once
        landed.table_version = warehouse.append_once(kept_df, stage.table, txn)
    crash_point(f"kept:{stage.name}")
    beside = stage.beside
    if beside is not None and (n_kept or not warehouse.exists(beside.name)):  # after the kept rows: never ahead of them
        warehouse.append_once(beside.rows(marked.filter(F.col(REASON).isNull()), run_id), beside.name, txn)
    crash_point(f"beside:{stage.name}")
    if n_rejected:
        landed.rejections_version = warehouse.append_once(rejected_df, REJECTIONS, txn)
    crash_point(f"landed:{stage.name}")
    warehouse.discard_batch(stage.name, run_id)
    return landed


def _gate(warehouse: Warehouse, stage: Stage, run_id: str, cfg: Config, rows_in: int, kept_df: DataFrame, rejected_df: DataFrame) -> GateOutcome:
    return gate_batch(warehouse.spark, stage.name, stage.table, kept_df, rejected_df, rows_in, cfg.quality, warehouse, run_id)


def _drop_transient_rejections(warehouse: Warehouse, stage: Stage, marked: DataFrame) -> None:
    """Items retried after an endpoint failure: their old rejection goes before the new result
    lands (first, so a kill in between leaves the batch staged and the next run redoes this).
    The MERGE only when the stage has such rejections at all: a scan is cheaper than a MERGE."""
    transient = warehouse.read(REJECTIONS).filter(F.col("stage") == stage.name).filter(F.expr(TRANSIENT_REASON_SQL))
    if transient.limit(1).count():
        warehouse.delete_matching(marked, REJECTIONS, stage.input_key, f"t.stage = '{stage.name}' AND t.{TRANSIENT_REASON_SQL}")
