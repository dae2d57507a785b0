"""Response cache: a Delta table `<warehouse>/llm_cache` of schema-valid replies keyed by a hash of
everything that shapes a reply (model, rendered messages, sampling parameters, reply schema).

Executors never write anywhere but their task's output: each new reply travels back through Spark
as two columns of the stage's output (the key and the reply JSON, on the first row the call
produced), so it is in the staged batch as soon as its slice commits. The driver merges those
columns into the table (a MERGE on the key) when it lands the batch — also a batch that a killed
run staged. No shared disk is needed: the same code runs on one machine, on a cluster and over
Spark Connect. Lookups are a left join in Spark; nothing is collected. The `Warehouse` owns the
table; this module owns the key and the row format."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..warehouse import Warehouse


def cache_key(model_id: str, messages: list[dict[str, str]], sampling: dict[str, Any], schema_name: str, schema: dict[str, Any]) -> str:
    """sha256 of canonical JSON. The messages are the rendered prompt, so a new prompt version or
    few-shot set changes the key by itself."""
    canonical = json.dumps(
        {"model": model_id, "messages": messages, "sampling": sampling, "schema_name": schema_name, "schema": schema},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lookup(warehouse: Warehouse, keyed: DataFrame, key_col: str, reply_col: str) -> DataFrame:
    """keyed + reply_col (the cached reply JSON, or null) by a left join on the key."""
    cached = warehouse.read_llm_cache()
    if cached is None:
        return keyed.withColumn(reply_col, F.lit(None).cast("string"))
    return keyed.join(cached.select(F.col("key").alias(key_col), F.col("reply").alias(reply_col)), key_col, "left")


def save_replies(
    warehouse: Warehouse,
    marked: DataFrame,
    calls: tuple[tuple[str, str, str, str], ...],
    stage: str,
    model: str,
    run_id: str,
) -> None:
    """Merge the new replies carried by a stage's materialised output into the cache, in one
    MERGE whatever the number of calls per row. `calls`: (key, reply, prompt tokens, completion
    tokens) columns of each call a row may carry (llm_stage.CALL_COLUMNS); absent ones are skipped."""
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    parts = [
        marked.filter(F.col(reply).isNotNull() & F.col(key).isNotNull()).select(
            F.col(key).alias("key"),
            F.lit(stage).alias("stage"),
            F.lit(model).alias("model"),
            F.col(reply).alias("reply"),
            F.col(prompt_tokens).alias("prompt_tokens"),
            F.col(completion_tokens).alias("completion_tokens"),
            F.lit(created).alias("created"),
            F.lit(run_id).alias("run_id"),
        )
        for key, reply, prompt_tokens, completion_tokens in calls
        if reply in marked.columns
    ]
    if parts:
        warehouse.merge_into_llm_cache(functools.reduce(DataFrame.unionByName, parts).dropDuplicates(["key"]), "key")
