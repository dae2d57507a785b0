"""Response cache: a Delta table `<warehouse>/llm_cache` of schema-valid replies keyed by a hash of
everything that shapes a reply (model, rendered messages, sampling parameters, reply schema).

Executors never commit to Delta (concurrent commits from many tasks would conflict): each task
appends every successful reply, as soon as it arrives, to its own spill file (JSONL, flushed per
line) under `<warehouse>/_llm_cache/spill/`. The driver folds spills into the table with a MERGE on
the key after each LLM stage and at the start of every run — so the replies a killed run paid for
are reused when it is run again. Lookups are a left join in Spark; nothing is collected. The
`Warehouse` owns the table and the spill folder; this module owns the key and the spill format."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..warehouse import Warehouse

SCHEMA = T.StructType(
    [
        T.StructField("key", T.StringType()),
        T.StructField("stage", T.StringType()),
        T.StructField("model", T.StringType()),
        T.StructField("reply", T.StringType()),
        T.StructField("prompt_tokens", T.LongType()),
        T.StructField("completion_tokens", T.LongType()),
        T.StructField("created", T.StringType()),
        T.StructField("run_id", T.StringType()),
    ]
)


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


class SpillWriter:
    """Executor side: one JSONL file per task, a line per success, flushed at once."""

    def __init__(self, directory: str, stage: str, model: str, run_id: str):
        self.path = os.path.join(directory, f"{stage}-{uuid.uuid4().hex}.jsonl")
        self.directory, self.stage, self.model, self.run_id = directory, stage, model, run_id
        self._fh = None

    def write(self, key: str, reply: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> None:
        if self._fh is None:
            os.makedirs(self.directory, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")
        line = {
            "key": key,
            "stage": self.stage,
            "model": self.model,
            "reply": json.dumps(reply, ensure_ascii=False, sort_keys=True),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run_id": self.run_id,
        }
        self._fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def lookup(warehouse: Warehouse, keyed: DataFrame, key_col: str, reply_col: str) -> DataFrame:
    """keyed + reply_col (the cached reply JSON, or null) by a left join on the key."""
    cached = warehouse.read_llm_cache()
    if cached is None:
        return keyed.withColumn(reply_col, F.lit(None).cast("string"))
    return keyed.join(cached.select(F.col("key").alias(key_col), F.col("reply").alias(reply_col)), key_col, "left")


def fold_spills(warehouse: Warehouse) -> int:
    """Merge every spill file into the cache table, then delete the files merged. → replies added.
    A line cut short by a kill is unreadable JSON and is skipped (that reply is simply paid again)."""
    files = warehouse.llm_cache_spills()
    if not files:
        return 0
    spills = (
        warehouse.spark.read.schema(SCHEMA)
        .option("mode", "PERMISSIVE")
        .json(files)
        .filter(F.col("key").isNotNull() & F.col("reply").isNotNull())
        .dropDuplicates(["key"])
    )
    added = warehouse.merge_into_llm_cache(spills, "key")
    warehouse.remove_llm_cache_spills(files)
    return added
