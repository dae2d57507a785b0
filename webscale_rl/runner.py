"""Running one stage: land what a killed run left staged, take the work no run has done, check the
stage's contract, materialise its output once as a staged batch, and land it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

from pyspark.sql import DataFrame

from .landing import land_batch
from .llm.cache import fold_spills
from .progress import LLMProgress, fmt_seconds
from .stages.base import Stage, StageContext, StageResult
from .summary import StageSummary
from .warehouse import Warehouse
from .work import with_landed_rows, without_landed_rows, without_processed


def run_stage(warehouse: Warehouse, stage: Stage, upstream: DataFrame, ctx: StageContext, *, first: bool) -> StageSummary:
    """Run `stage` on the rows of `upstream` that no run has handled. `first`: the stage makes
    its input keys itself (ingest), so rows already landed are dropped from its output instead."""
    t0 = time.monotonic()
    ctx.log(f"[{stage.name}] start → table '{stage.table}'")
    quarantined = land_interrupted_batches(warehouse, stage, ctx)
    if quarantined is not None:
        return replace(quarantined, elapsed_s=time.monotonic() - t0)
    stage.check_reads(upstream)
    items = stage.work_items(upstream, ctx) if stage.work_items else upstream
    work, rows_in = (items, None) if first else _new_rows(warehouse, stage, items)
    # Nothing new: done, unless the stage's table does not exist yet. Then the stage runs on no rows
    # and lands its empty table, so a run whose items were all rejected ends with every table it
    # reached (an empty `qa` is a result, not an error).
    if rows_in == 0 and warehouse.exists(stage.table):
        ctx.log(f"[{stage.name}] done in {fmt_seconds(time.monotonic() - t0)}: nothing new to process")
        return StageSummary(stage.name, stage.table, 0, 0, 0, time.monotonic() - t0, {}, None)
    result = stage.run(with_landed_rows(warehouse, stage, work), ctx)
    stage.check_writes(result.marked)
    marked = without_landed_rows(result.marked)
    if first:
        marked = without_processed(warehouse, stage, marked)
    materialise(warehouse, stage, marked, result, ctx)
    # Everything below reads the materialised batch: LLM calls are never made twice.
    landed = land_batch(warehouse, stage, ctx.run_id, ctx.cfg, rows_in, ctx.log)
    landed.elapsed_s = time.monotonic() - t0
    ctx.log(done_line(landed))
    return landed


def _new_rows(warehouse: Warehouse, stage: Stage, upstream: DataFrame) -> tuple[DataFrame, int]:
    work = without_processed(warehouse, stage, upstream)
    return work, work.count()


def land_interrupted_batches(warehouse: Warehouse, stage: Stage, ctx: StageContext) -> StageSummary | None:
    """Land the batches of this stage that killed runs staged; the first quarantined one, if any."""
    for run_id in warehouse.staged_batches(stage.name):
        landed = land_batch(warehouse, stage, run_id, ctx.cfg, None, ctx.log)
        if landed.quarantined:
            return landed
        ctx.log(f"  [{stage.name}] landed batch of interrupted run {run_id}: kept {landed.kept}, rejected {landed.rejected}")
    return None


def materialise(warehouse: Warehouse, stage: Stage, marked: DataFrame, result: StageResult, ctx: StageContext) -> None:
    """Stage the batch (the one time an LLM stage calls the model), showing call progress."""
    if not stage.uses_llm:
        warehouse.stage_batch(marked, stage.name, ctx.run_id)
        return
    planned = int(result.stats.get("llm_calls_planned", 0))
    ctx.log(f"  [{stage.name}] {planned} LLM call(s) to make")
    with LLMProgress(stage.name, planned, os.path.join(ctx.progress_dir, stage.name), ctx.log):
        warehouse.stage_batch(marked, stage.name, ctx.run_id)
    if ctx.cfg.llm.cache:
        fold_llm_cache(warehouse, ctx.log, f"new replies of '{stage.name}'")


def fold_llm_cache(warehouse: Warehouse, log: Callable[[str], None], what: str) -> None:
    added = fold_spills(warehouse)
    if added:
        log(f"  llm_cache: {added} {what} saved")


def done_line(s: StageSummary) -> str:
    top = ", ".join(f"{k}={v}" for k, v in sorted(s.rejected_by_reason.items(), key=lambda kv: -kv[1])[:6])
    llm_note = ""
    if s.llm:
        llm_note = f"; {int(s.llm['calls'])} calls, {int(s.llm['prompt_tokens'])}+{int(s.llm['completion_tokens'])} tokens"
    return (
        f"[{s.stage}] done in {fmt_seconds(s.elapsed_s)}: in {s.rows_in}, kept {s.kept}, rejected {s.rejected}"
        + (f" ({top})" if top else "")
        + llm_note
        + ("; " + ", ".join(f"{k}={v}" for k, v in s.counts.items() if v) if any(s.counts.values()) else "")
    )
