"""What every LLM stage shares: ship rows to executors with mapInPandas, answer from the response
cache what it already holds, call the model through the engine (async, bounded, rate-limited,
retried) for the rest, map each reply to output rows, and turn every failure into a rejection with
its reason. A stage module supplies only its prompt, reply schema and mapping.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import jsonschema
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import Config
from ..llm import cache as llm_cache
from ..llm.engine import CallResult, CallStream, EndpointSpec, ProgressFile
from .base import DETAIL, REASON, StageContext, StageResult

# Internal accounting columns; StageResult.kept drops every column starting with "_".
PROMPT_TOKENS = "_llm_prompt_tokens"
COMPLETION_TOKENS = "_llm_completion_tokens"
# Of PROMPT_TOKENS, those the endpoint reported reading from its prompt cache (priced at
# llm.prices.<model>.cached_input_per_1m). Tables staged before this column existed lack it.
CACHED_PROMPT_TOKENS = "_llm_cached_prompt_tokens"
ATTEMPTS = "_llm_attempts"
RATE_LIMITED = "_llm_rate_limited"
CACHE_HIT = "_llm_cache_hit"
KEY_COL = "_llm_cache_key"
CACHED_COL = "_llm_cached_reply"
# A new reply (JSON) on the first row its call produced: how it reaches the cache (llm.cache).
REPLY_COL = "_llm_reply"
INTERNAL_FIELDS = [
    T.StructField(REASON, T.StringType()),
    T.StructField(DETAIL, T.StringType()),
    T.StructField(PROMPT_TOKENS, T.LongType()),
    T.StructField(COMPLETION_TOKENS, T.LongType()),
    T.StructField(ATTEMPTS, T.LongType()),
    T.StructField(RATE_LIMITED, T.LongType()),
    T.StructField(CACHE_HIT, T.LongType()),
    T.StructField(KEY_COL, T.StringType()),
    T.StructField(REPLY_COL, T.StringType()),
    T.StructField(CACHED_PROMPT_TOKENS, T.LongType()),
]


# Calls behind a row, for stages that make more than one per row (verify); else a row with
# attempts is one call.
CALLS = "_llm_calls"


@dataclass(frozen=True)
class SecondCallColumns:
    """Where a stage that makes a second call per row (verify's closed-book answer) keeps that
    call's cache key, new reply and tokens, so the landing caches it like the first."""

    key: str = "_llm2_cache_key"
    reply: str = "_llm2_reply"
    prompt_tokens: str = "_llm2_prompt_tokens"
    completion_tokens: str = "_llm2_completion_tokens"


SECOND_CALL = SecondCallColumns()
# (cache key, reply, prompt tokens, completion tokens) columns of every call a row may carry.
CALL_COLUMNS = (
    (KEY_COL, REPLY_COL, PROMPT_TOKENS, COMPLETION_TOKENS),
    (SECOND_CALL.key, SECOND_CALL.reply, SECOND_CALL.prompt_tokens, SECOND_CALL.completion_tokens),
)


def no_call_columns() -> list:
    """The accounting columns of a row decided without a model call (zero counts, no key or reply),
    for stages that union such rows with the called ones."""
    return [(F.lit(0) if isinstance(f.dataType, T.LongType) else F.lit(None)).cast(f.dataType).alias(f.name) for f in INTERNAL_FIELDS[2:]]


BuildMessages = Callable[[dict[str, Any]], list[dict[str, str]]]
# (input row, reply data) → output rows (without internal columns); may return a rejection by
# setting REASON/DETAIL in a row.
ToRows = Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]


def judged(out: dict[str, Any], verdicts: list[tuple[bool, str, str]]) -> list[dict[str, Any]]:
    """The one output row of a judging reply: `out`, rejected with the (reason, detail) of the
    first verdict whose condition holds, if any. For `to_rows` of judging stages."""
    for failed, reason, detail in verdicts:
        if failed:
            return [{**out, REASON: reason, DETAIL: detail}]
    return [out]


def concurrent_tasks(spark) -> int:
    """A guess of how many tasks the cluster runs at once. It only shapes the plan for throughput
    (`plan_partitions`); the limits hold whatever the cluster really runs."""
    master = spark.conf.get("spark.master", "local[*]") or ""
    m = re.match(r"local\[(\d+|\*)", master)
    if m:
        return (os.cpu_count() or 2) if m.group(1) == "*" else int(m.group(1))
    try:
        return int(spark.conf.get("spark.default.parallelism"))
    except Exception:
        return 8


# Requests in flight one task's event loop holds easily: at ~1 ms of client CPU per call, 64 in
# flight at a 1 s model latency use 6 % of a core (at 0.1 s, 64 %). A stage splits its calls across
# more tasks only when the cap needs more of them than this.
TASK_IN_FLIGHT = 64


def plan_partitions(n_rows: int, max_concurrency: int, rows_per_partition: int, slots: int) -> tuple[int, int]:
    """→ (partitions, the divisor of the job-wide limits). Each partition gets 1/partitions of
    llm.max_concurrency, requests_per_minute and tokens_per_minute, so the limits hold even if the
    cluster runs every partition at once, whatever its size. `slots`, a guess of the tasks that run
    together, only caps the partitions: fewer slots than guessed leaves capacity unused, never
    exceeds a limit. Partitions: at most the guess, at most max_concurrency (each task holds at
    least one request), no more than rows_per_partition asks for, and no more than the cap needs
    (TASK_IN_FLIGHT per task). Fewer tasks keep the endpoint busier: tasks share nothing, so a
    task's idle slots (it started late, or its rows ran out first) are lost to the others; one task
    fills each freed slot with its next row until its last."""
    n_parts = max(1, min(slots, max_concurrency, math.ceil(n_rows / max(1, rows_per_partition)), math.ceil(max_concurrency / TASK_IN_FLIGHT)))
    return n_parts, n_parts


def model_id(cfg: Config, stage: str) -> str:
    """The model as the cache sees it: `local` names the embedded weights, not just 'local'."""
    model = cfg.llm.models[stage]
    return f"local:{cfg.local_llm.model}" if cfg.llm.provider == "local" else f"{cfg.llm.provider}:{model}"


def endpoint_for(ctx: StageContext, stage: str, n_parallel_tasks: int) -> EndpointSpec:
    llm = ctx.cfg.llm
    share = max(1, n_parallel_tasks)  # job-wide limits, divided across the tasks that run at once
    return EndpointSpec(
        base_url=ctx.llm_base_url,
        model=llm.models[stage],
        api_key=ctx.llm_api_key,
        max_tokens=llm.max_tokens.get(stage, 256),
        temperature=llm.stage_temperature.get(stage, llm.temperature),
        seed=llm.seed,
        timeout_s=llm.timeout_s,
        max_retries=llm.max_retries,
        backoff_base_s=llm.backoff_base_s,
        backoff_max_s=llm.backoff_max_s,
        response_format=llm.response_format,
        concurrency=max(1, llm.max_concurrency // share),
        requests_per_minute=llm.requests_per_minute / share if llm.requests_per_minute else None,
        tokens_per_minute=llm.tokens_per_minute / share if llm.tokens_per_minute else None,
        flavour="azure" if llm.provider == "azure" else "openai",
        azure_endpoint=llm.azure_endpoint,
        api_version=llm.api_version,
    )


def run_llm_stage(
    df: DataFrame,
    ctx: StageContext,
    *,
    stage: str,
    schema_name: str,
    reply_schema: dict[str, Any],
    build_messages: BuildMessages,
    to_rows: ToRows,
    out_fields: list[T.StructField],
    progress: bool = True,
) -> StageResult:
    """One model call per input row (none for rows the cache answers). Output rows: out_fields +
    internal columns. `progress`: count the calls in the stage's live progress (a second call per
    row does not, so the count stays one per item)."""
    llm = ctx.cfg.llm
    slots = concurrent_tasks(df.sparkSession)
    # The rows are counted (a job over the stage's input) only when the plan can be more than one
    # partition; with the cap one task holds (TASK_IN_FLIGHT), it is one partition whatever the count.
    n_rows = df.count() if plan_partitions(sys.maxsize, llm.max_concurrency, 1, slots)[0] > 1 else 1
    n_parts, parallel = plan_partitions(n_rows, llm.max_concurrency, llm.rows_per_partition, slots)
    spec = endpoint_for(ctx, stage, parallel)
    out_schema = T.StructType(out_fields + INTERNAL_FIELDS)
    out_names = out_schema.fieldNames()
    progress_dir = f"{ctx.progress_dir}/{stage}" if ctx.progress_dir and progress else None  # see progress.LLMProgress
    mid = model_id(ctx.cfg, stage)
    sampling = {"temperature": spec.temperature, "seed": spec.seed, "max_tokens": spec.max_tokens, "response_format": spec.response_format}
    use_cache = llm.cache and ctx.warehouse is not None

    def add_key(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            keys = [llm_cache.cache_key(mid, build_messages(r), sampling, schema_name, reply_schema) for r in batch.to_dict("records")]
            yield batch.assign(**{KEY_COL: keys})

    rows_df = df
    batch_mode = llm.mode == "batch"
    if use_cache or batch_mode:
        keyed = df.mapInPandas(add_key, T.StructType(df.schema.fields + [T.StructField(KEY_COL, T.StringType())]))
        if use_cache:
            rows_df = llm_cache.lookup(ctx.warehouse, keyed, KEY_COL, CACHED_COL)
        else:
            rows_df = keyed.withColumn(CACHED_COL, F.lit(None).cast("string"))
    if batch_mode:
        rows_df = _with_batch_results(rows_df, ctx, stage, spec, mid, schema_name, reply_schema, build_messages)

    process = _answering(spec, progress_dir, schema_name, reply_schema, build_messages, to_rows, out_names, batch_mode, use_cache)
    marked = for_reuse(rows_df, n_parts).mapInPandas(process, out_schema)
    return StageResult(marked)


# Columns whose rows share a prompt prefix, outermost first: a domain's rows share generate's
# few-shot examples, a document's rows (generate's personas, check's and verify's pairs) its text.
REUSE_ORDER = ("domain", "doc_id")


def for_reuse(rows: DataFrame, n_parts: int) -> DataFrame:
    """`rows` in `n_parts` partitions, each sorted so that calls sharing a prompt prefix are sent
    back to back (a server's prompt cache — llama.cpp's slots, a provider's prefix cache — then
    reads the shared part instead of evaluating it again). A document's rows go to one partition
    (by a hash of doc_id) when there is more than one; without doc_id (verify's closed-book calls)
    the rows are dealt round-robin. Order within a partition is free: rows are matched by keys."""
    keys = [c for c in REUSE_ORDER if c in rows.columns]
    if n_parts > 1:
        rows = rows.repartition(n_parts, "doc_id") if "doc_id" in keys else rows.repartition(n_parts)
    else:
        rows = rows.repartition(1)
    return rows.sortWithinPartitions(*keys) if keys else rows


def _answering(
    spec: EndpointSpec,
    progress_dir: str | None,
    schema_name: str,
    reply_schema: dict[str, Any],
    build_messages: BuildMessages,
    to_rows: ToRows,
    out_names: list[str],
    batch_mode: bool,
    keep_replies: bool,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The executor side of a stage (for mapInPandas): answer each row from the cache or the batch
    results, call the model for the rest, map replies to rows. New replies leave in REPLY_COL
    (when `keep_replies`), never through a file.

    The task's calls run in one CallStream across all its Arrow batches: it reads the next batch
    while enough calls still wait for a slot (QUEUE_ROUNDS x the task's concurrency), and yields
    rows as their calls finish, in any order, so slots stay busy from its first call to its last."""
    queued_enough = QUEUE_ROUNDS * max(1, spec.concurrency)

    def process(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        progress = ProgressFile(progress_dir, uuid.uuid4().hex)
        calls: CallStream | None = None
        pending: dict[futures.Future, dict[str, Any]] = {}
        done: queue.SimpleQueue[futures.Future] = queue.SimpleQueue()  # calls in the order they finish

        def finished(wait_while_more_than: int, deadline: float | None = None) -> list[dict[str, Any]]:
            """Rows of the finished calls; waits for more while over `wait_while_more_than` pending
            (and, with `deadline`, until then or until none are pending)."""
            out: list[dict[str, Any]] = []
            while pending:
                block = len(pending) > wait_while_more_than
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    future = done.get(block=block, timeout=timeout if block else None)
                except queue.Empty:
                    break
                out.extend(_rows_for(pending.pop(future), future.result(), to_rows, out_names, keep_replies))  # FatalLLMError raises here
                progress.add(1)
            return out

        try:
            for batch in batches:
                out: list[dict[str, Any]] = []
                for row in batch.to_dict("records"):
                    answered = _from_cache(row.get(CACHED_COL), reply_schema) or (_from_batch(row) if batch_mode else None)
                    if answered is not None:
                        out.extend(_rows_for(row, answered, to_rows, out_names, keep_replies))
                        progress.add(1)
                        continue
                    calls = calls or CallStream(spec, schema_name, reply_schema)
                    future = calls.submit(build_messages(row), group=row.get("doc_id"))  # one document's calls in turn
                    pending[future] = row
                    future.add_done_callback(done.put)
                out.extend(finished(wait_while_more_than=queued_enough))
                if out:
                    yield pd.DataFrame(out, columns=out_names)
            while pending:  # the last calls: what finished is yielded about once a second
                if out := finished(wait_while_more_than=0, deadline=time.monotonic() + 1.0):
                    yield pd.DataFrame(out, columns=out_names)
        finally:
            if calls is not None:
                calls.close()
            progress.flush()

    return process


# A task reads its next Arrow batch once fewer calls than this many rounds of its concurrency wait:
# enough to keep every slot busy while the batch is read, few enough to keep memory flat.
QUEUE_ROUNDS = 4


BATCH_FIELDS = [
    T.StructField(KEY_COL, T.StringType()),
    T.StructField("_batch_reply", T.StringType()),
    T.StructField("_batch_reason", T.StringType()),
    T.StructField("_batch_detail", T.StringType()),
    T.StructField("_batch_attempts", T.LongType()),
    T.StructField("_batch_prompt_tokens", T.LongType()),
    T.StructField("_batch_completion_tokens", T.LongType()),
    T.StructField("_batch_cached_prompt_tokens", T.LongType()),
]


def _with_batch_results(rows_df, ctx, stage, spec, mid, schema_name, reply_schema, build_messages) -> DataFrame:
    """Batch mode: the driver streams the cache misses (toLocalIterator), runs them through the
    Batch API (its request files live in a driver-local temp folder) and joins one result row per
    key back; the results go to Spark as a DataFrame, never as a file executors would have to see.
    With a warehouse, every batch is recorded in its `_llm_batches` table before the driver waits,
    and batches a killed run left open for keys still missing are resumed, not paid again."""
    import tempfile

    from ..llm.batch import BatchSettings, run_batches

    llm = ctx.cfg.llm
    workdir = tempfile.mkdtemp(prefix=f"webscale-rl-batch-{stage}-")
    misses = rows_df.filter(F.col(CACHED_COL).isNull())
    ledger = _batch_ledger(ctx, stage, spec, mid, schema_name)
    resume = ledger.open_batches(misses, KEY_COL) if ledger else []
    items = ((r[KEY_COL], build_messages(r.asDict())) for r in misses.toLocalIterator())
    results: list[tuple] = []

    def record(key: str, res: CallResult) -> None:
        reply = json.dumps(res.data) if res.ok else None
        results.append((key, reply, res.reason, res.detail, res.attempts, res.prompt_tokens, res.completion_tokens, res.cached_prompt_tokens))

    settings = BatchSettings(llm.batch_poll_s, llm.batch_max_requests, llm.batch_max_rounds, llm.batch_completion_window)
    run_batches(spec, items, schema_name, reply_schema, workdir, settings, ctx.log, on_result=record, label=stage, ledger=ledger, resume=resume)
    joined = rows_df.sparkSession.createDataFrame(results, T.StructType(BATCH_FIELDS))
    return rows_df.join(joined, KEY_COL, "left")


def _batch_ledger(ctx: StageContext, stage: str, spec: EndpointSpec, mid: str, schema_name: str):
    """The warehouse's record of this stage's batches (llm/batch_ledger.py), or None without a warehouse."""
    if ctx.warehouse is None:
        return None
    from ..llm.batch_ledger import BatchLedger, endpoint_id
    from ..prompts import stage_prompt

    try:
        prompt_version: str | None = stage_prompt(ctx.cfg, stage).version
    except (FileNotFoundError, ValueError):
        prompt_version = None
    base = spec.azure_endpoint if spec.flavour == "azure" else spec.base_url
    return BatchLedger(
        ctx.warehouse, stage=stage, model=mid, endpoint=endpoint_id(base), run_id=ctx.run_id, schema_name=schema_name, prompt_version=prompt_version
    )


def _from_batch(row: dict[str, Any]) -> CallResult:
    attempts = int(row.get("_batch_attempts") or 0)
    tokens = dict(
        prompt_tokens=int(row.get("_batch_prompt_tokens") or 0),
        completion_tokens=int(row.get("_batch_completion_tokens") or 0),
        cached_prompt_tokens=int(row.get("_batch_cached_prompt_tokens") or 0),
    )
    if isinstance(row.get("_batch_reply"), str):
        return CallResult(data=json.loads(row["_batch_reply"]), attempts=attempts, **tokens)
    if isinstance(row.get("_batch_reason"), str):
        return CallResult(reason=row["_batch_reason"], detail=row.get("_batch_detail"), attempts=attempts, **tokens)
    return CallResult(reason="llm_error:batch_missing", detail="the batch run returned nothing for this row")


def _from_cache(reply_json: Any, schema: dict[str, Any]) -> CallResult | None:
    if not isinstance(reply_json, str):
        return None
    try:
        data = json.loads(reply_json)
        jsonschema.validate(data, schema)
    except (ValueError, jsonschema.ValidationError):
        return None  # unusable entry: ask the model again
    return CallResult(data=data, cached=True)


def _rows_for(row: dict[str, Any], res: CallResult, to_rows: ToRows, out_names: list[str], keep_reply: bool = False) -> list[dict[str, Any]]:
    new_reply = keep_reply and res.ok and not res.cached
    accounting = {
        PROMPT_TOKENS: res.prompt_tokens,
        COMPLETION_TOKENS: res.completion_tokens,
        CACHED_PROMPT_TOKENS: res.cached_prompt_tokens,
        ATTEMPTS: res.attempts,
        RATE_LIMITED: res.rate_limited,
        CACHE_HIT: int(res.cached),
        REPLY_COL: json.dumps(res.data, ensure_ascii=False, sort_keys=True) if new_reply else None,
    }
    if res.ok:
        try:
            produced = to_rows(row, res.data or {})
        except Exception as exc:  # a reply we cannot map is that item's rejection, not the batch's crash
            produced = [{REASON: "llm_error:unmappable_reply", DETAIL: f"{type(exc).__name__}: {exc}"[:300]}]
    else:
        produced = [{REASON: res.reason, DETAIL: res.detail}]
    out = []
    for i, item in enumerate(produced):
        merged = {name: row.get(name) for name in out_names}
        merged.update(item)
        # Charge a call's tokens once, to the first row it produced.
        merged.update(accounting if i == 0 else {k: (None if k == REPLY_COL else 0) for k in accounting})
        out.append(merged)
    return out


def llm_usage(marked: DataFrame) -> dict[str, float]:
    """Calls, retries, 429s, cache hits and tokens of a materialised LLM stage; of its prompt
    tokens, `cached_prompt_tokens` the endpoint read from its prompt cache."""
    cols = set(marked.columns)
    opt = lambda c: F.sum(c) if c in cols else F.lit(0)  # noqa: E731 (tables from before the cache, or before cached tokens)
    calls = F.sum(CALLS) if CALLS in cols else F.sum(F.when(F.col(ATTEMPTS) > 0, 1).otherwise(0))
    row = marked.agg(
        calls.alias("calls"),
        F.sum(ATTEMPTS).alias("attempts"),
        opt(RATE_LIMITED).alias("rate_limited"),
        opt(CACHE_HIT).alias("cache_hits"),
        F.sum(PROMPT_TOKENS).alias("prompt_tokens"),
        F.sum(COMPLETION_TOKENS).alias("completion_tokens"),
        opt(CACHED_PROMPT_TOKENS).alias("cached_prompt_tokens"),
    ).collect()[0]
    keys = ("calls", "attempts", "rate_limited", "cache_hits", "prompt_tokens", "completion_tokens", "cached_prompt_tokens")
    usage = {k: float(row[k] or 0) for k in keys}
    usage["retries"] = usage["attempts"] - usage["calls"]
    return usage
