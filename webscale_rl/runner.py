"""Running one stage: land what a killed run left staged, take the work no run has done, check the
stage's contract, materialise its output once as a staged batch (an LLM stage a slice at a time),
and land it."""

from __future__ import annotations

import math
import time
from dataclasses import replace

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from . import lineage
from .budget import BudgetStop, affordable, worst_case_usd
from .landing import land_batch
from .llm.batch_ledger import mark_collected
from .llm.pricing import usage_cost_usd
from .progress import LLMProgress, fmt_seconds
from .stages.base import Stage, StageContext
from .stages.llm_stage import llm_usage
from .summary import StageSummary
from .warehouse import Warehouse
from .work import with_landed_rows, without_landed_rows, without_processed


def run_stage(warehouse: Warehouse, stage: Stage, upstream: DataFrame, ctx: StageContext, *, first: bool) -> StageSummary:
    """Run `stage` on the rows of `upstream` that no run has handled. `first`: the stage makes
    its input keys itself (ingest), so rows already landed are dropped from its output instead.
    The caller records the stage's lineage from the summary (`lineage.written`)."""
    t0 = time.monotonic()
    ctx.log(f"[{stage.name}] start → table '{stage.table}'")
    quarantined = land_interrupted_batches(warehouse, stage, ctx)
    if quarantined is not None:
        return replace(quarantined, elapsed_s=time.monotonic() - t0)
    if stage.beside is not None:  # after the interrupted batches landed: they may hold some of its rows
        stage.beside.catch_up(warehouse, ctx)
    stage.check_reads(upstream)
    items = stage.work_items(upstream, ctx) if stage.work_items else upstream
    work, rows_in = (items, None) if first else _new_rows(warehouse, stage, items)
    # Nothing new: done, unless the stage's table does not exist yet. Then the stage runs on no rows
    # and lands its empty table, so a run whose items were all rejected ends with every table it
    # reached (an empty `qa` is a result, not an error).
    if rows_in == 0 and warehouse.exists(stage.table):
        ctx.log(f"[{stage.name}] done in {fmt_seconds(time.monotonic() - t0)}: nothing new to process")
        return StageSummary(stage.name, stage.table, 0, 0, 0, time.monotonic() - t0, {}, None)
    if stage.uses_llm:
        rows_in = stage_llm_slices(warehouse, stage, work, rows_in or 0, ctx)
        if rows_in == 0 and ctx.budget is not None and ctx.budget.stop is not None:  # the budget stopped it before its first slice
            ctx.log(f"[{stage.name}] stopped before its first call: {ctx.budget.stop.line()}")
            return StageSummary(stage.name, stage.table, 0, 0, 0, time.monotonic() - t0, {}, None)
    else:
        warehouse.stage_slice(_output(warehouse, stage, work, ctx, first), stage.name, ctx.run_id)
    # Everything below reads the materialised batch: LLM calls are never made twice.
    landed = land_batch(warehouse, stage, ctx.run_id, ctx.cfg, rows_in, ctx.log)
    landed.elapsed_s = time.monotonic() - t0
    ctx.log(done_line(landed))
    return landed


def _output(warehouse: Warehouse, stage: Stage, work: DataFrame, ctx: StageContext, first: bool) -> DataFrame:
    """The stage's marked output for `work` (lazy), its contract checked."""
    result = stage.run(with_landed_rows(warehouse, stage, work), ctx)
    stage.check_writes(result.marked)
    marked = without_landed_rows(result.marked)
    return without_processed(warehouse, stage, marked) if first else marked


def stage_llm_slices(warehouse: Warehouse, stage: Stage, work: DataFrame, n_items: int, ctx: StageContext) -> int:
    """Stage an LLM stage's output `llm.slice_rows` items at a time, each slice its own commit: a
    run killed mid-stage keeps every slice that committed (the next run lands it and pays only for
    the rest). Slices are by a hash of the input key (or the stage's slice_key), so each item is in exactly one. Under a
    budget (`ctx.budget`) a slice runs only as far as its worst case fits the rest of the budget,
    and a cut slice is the stage's and the run's last. → the items staged."""
    n_slices = max(1, math.ceil(n_items / ctx.cfg.llm.slice_rows))
    ctx.log(f"  [{stage.name}] {n_items} LLM call(s) to make" + (f", in {n_slices} slices" if n_slices > 1 else ""))
    slice_of = F.pmod(F.xxhash64(*(stage.slice_key or stage.input_key)), F.lit(n_slices))
    budget = ctx.budget
    sizes, worst = _slice_sizes(stage, work, n_items, n_slices, slice_of, ctx)
    done = 0
    with LLMProgress(stage.name, n_items, ctx.progress_dir, ctx.log) as progress:
        for i in range(n_slices):
            part, n_part = (work if n_slices == 1 else work.filter(slice_of == i)), sizes.get(i, 0)
            if budget is not None and worst.get(i, 0.0) > budget.remaining_usd:
                part, n_part = affordable(part, ctx.cfg, stage, budget.remaining_usd)
                budget.stop = BudgetStop(budget.spent_usd, budget.limit_usd, stage.name, done + n_part, n_items - done - n_part)
                if n_part == 0:
                    break
            warehouse.stage_slice(_output(warehouse, stage, part, ctx, False), stage.name, ctx.run_id, i)
            done += n_part
            if budget is not None:
                # What the staged slices cost, cached prompt tokens at their price; the next slice's
                # worst case (budget.worst_case_usd) still prices every prompt token in full.
                usage = llm_usage(warehouse.read_batch(stage.name, ctx.run_id))
                budget.spent_by_stage[stage.name] = usage_cost_usd(ctx.cfg, stage.name, usage) or 0.0
                if budget.stop is not None:
                    budget.stop = replace(budget.stop, spent_usd=budget.spent_usd)
                    break
            if n_slices > 1:
                progress.slice_done(done, i + 1, n_slices)
    if ctx.cfg.llm.mode == "batch":  # every slice is staged: the batches it used are never resumed again
        mark_collected(warehouse, stage.name, ctx.run_id)
    return done


def _slice_sizes(stage: Stage, work: DataFrame, n_items: int, n_slices: int, slice_of, ctx: StageContext) -> tuple[dict[int, int], dict[int, float]]:
    """Items per slice and, under a budget, each slice's worst-case cost (one pass over the work)."""
    if ctx.budget is None and n_slices == 1:
        return {0: n_items}, {}
    aggs = [F.count(F.lit(1)).alias("n")] + ([F.sum(worst_case_usd(ctx.cfg, stage)).alias("worst")] if ctx.budget is not None else [])
    rows = work.groupBy(slice_of.alias("_slice")).agg(*aggs).collect()
    return {r["_slice"]: r["n"] for r in rows}, ({r["_slice"]: float(r["worst"] or 0.0) for r in rows} if ctx.budget is not None else {})


def _new_rows(warehouse: Warehouse, stage: Stage, upstream: DataFrame) -> tuple[DataFrame, int]:
    work = without_processed(warehouse, stage, upstream)
    return work, work.count()


def land_interrupted_batches(warehouse: Warehouse, stage: Stage, ctx: StageContext) -> StageSummary | None:
    """Land the batches (all their slices or some) of this stage that killed runs staged; the first
    quarantined one, if any. Items of a slice that never committed are new work for this run."""
    for run_id in warehouse.staged_batches(stage.name):
        landed = land_batch(warehouse, stage, run_id, ctx.cfg, None, ctx.log)
        lineage.record(warehouse, run_id, stage, ctx.cfg, lineage.written(landed))  # the rows carry run_id: the killed run's
        if landed.quarantined:
            return landed
        ctx.log(f"  [{stage.name}] landed batch of interrupted run {run_id}: kept {landed.kept}, rejected {landed.rejected}")
    return None


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
