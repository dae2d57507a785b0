"""What every LLM stage shares: ship rows to executors with mapInPandas, call the model through the
engine (async, bounded, retried), map each reply to output rows, and turn every failure into a
rejection with its reason. A stage module supplies only its prompt, reply schema and mapping.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from typing import Any, Callable, Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..llm.engine import CallResult, EndpointSpec, ProgressFile, complete_many
from .base import DETAIL, REASON, StageContext, StageResult

# Internal accounting columns; StageResult.kept drops every column starting with "_".
PROMPT_TOKENS = "_llm_prompt_tokens"
COMPLETION_TOKENS = "_llm_completion_tokens"
ATTEMPTS = "_llm_attempts"
INTERNAL_FIELDS = [
    T.StructField(REASON, T.StringType()),
    T.StructField(DETAIL, T.StringType()),
    T.StructField(PROMPT_TOKENS, T.LongType()),
    T.StructField(COMPLETION_TOKENS, T.LongType()),
    T.StructField(ATTEMPTS, T.LongType()),
]

BuildMessages = Callable[[dict[str, Any]], list[dict[str, str]]]
# (input row, reply data) → output rows (without internal columns); may return a rejection by
# setting REASON/DETAIL in a row.
ToRows = Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]


def concurrent_tasks(spark) -> int:
    """How many tasks run at once, to split llm.max_concurrency across them."""
    master = spark.conf.get("spark.master", "local[*]") or ""
    m = re.match(r"local\[(\d+|\*)", master)
    if m:
        return (os.cpu_count() or 2) if m.group(1) == "*" else int(m.group(1))
    try:
        return int(spark.conf.get("spark.default.parallelism"))
    except Exception:
        return 8


def endpoint_for(ctx: StageContext, stage: str, n_parallel_tasks: int) -> EndpointSpec:
    llm = ctx.cfg.llm
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
        concurrency=max(1, math.ceil(llm.max_concurrency / max(1, n_parallel_tasks))),
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
) -> StageResult:
    """One model call per input row. Output rows: out_fields + internal columns."""
    n_rows = df.count()
    n_parts = max(1, math.ceil(n_rows / max(1, ctx.cfg.llm.rows_per_partition)))
    parallel = min(n_parts, concurrent_tasks(df.sparkSession))
    spec = endpoint_for(ctx, stage, parallel)
    out_schema = T.StructType(out_fields + INTERNAL_FIELDS)
    out_names = out_schema.fieldNames()
    progress_dir = f"{ctx.progress_dir}/{stage}" if ctx.progress_dir else None

    def process(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        progress = ProgressFile(progress_dir, uuid.uuid4().hex)
        for batch in batches:
            rows = batch.to_dict("records")
            requests = [build_messages(r) for r in rows]
            results = complete_many(spec, requests, schema_name, reply_schema, on_done=progress.add)
            out: list[dict[str, Any]] = []
            for row, res in zip(rows, results):
                out.extend(_rows_for(row, res, to_rows, out_names))
            yield pd.DataFrame(out, columns=out_names)
        progress.flush()

    marked = df.repartition(n_parts).mapInPandas(process, out_schema)
    return StageResult(marked, stats={"llm_calls_planned": float(n_rows)})


def _rows_for(row: dict[str, Any], res: CallResult, to_rows: ToRows, out_names: list[str]) -> list[dict[str, Any]]:
    accounting = {PROMPT_TOKENS: res.prompt_tokens, COMPLETION_TOKENS: res.completion_tokens, ATTEMPTS: res.attempts}
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
        merged.update(accounting if i == 0 else {PROMPT_TOKENS: 0, COMPLETION_TOKENS: 0, ATTEMPTS: 0})
        out.append(merged)
    return out


def llm_usage(marked: DataFrame) -> dict[str, float]:
    """Calls, attempts and tokens of a materialised LLM stage."""
    row = marked.agg(
        F.sum(F.when(F.col(ATTEMPTS) > 0, 1).otherwise(0)).alias("calls"),
        F.sum(ATTEMPTS).alias("attempts"),
        F.sum(PROMPT_TOKENS).alias("prompt_tokens"),
        F.sum(COMPLETION_TOKENS).alias("completion_tokens"),
    ).collect()[0]
    return {k: float(row[k] or 0) for k in ("calls", "attempts", "prompt_tokens", "completion_tokens")}
