"""Durable batches: a Delta table `<warehouse>/_llm_batches` with one row per Batch API batch a run
submitted — its id, stage, model, prompt version, reply schema, endpoint, the run that submitted it
and the run now using it, and the keys it carries (custom_ids = response-cache keys) — so that a
driver killed during the completion window costs a wait, not a second payment.

A row is appended (idempotently, keyed by the batch id) right after the batch is created, before the
driver starts waiting. When a round's batches have all ended, one MERGE records their statuses (and
this run as their user); a driver killed before that leaves them `submitted`, which costs the next
run one poll of each. `status` goes:

  submitted → completed | failed | expired | cancelled | missing   (the batch ended; `missing`: the
              endpoint no longer knows it)
  completed → collected   (the stage's output, which holds the batch's replies, is staged)

A later run of the same stage, model and endpoint resumes the `submitted` and `completed` batches
that carry keys it still needs (cache misses): it polls the same ids, or just downloads a completed
batch's output again, and submits only the keys no such batch carries. Batches that ended in
failure are never resumed: their keys are asked again, as a failed batch's keys are in a live run.
`collected` batches are done: a key of one that is needed again (an endpoint failure rejected it
and the next run retries it) goes into a new batch.

The `Warehouse` owns the table; this module owns the row format and the rules above."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit, urlunsplit

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..warehouse import Warehouse
from .batch import OpenBatch

RESUMABLE = ("submitted", "completed")

ROW_SCHEMA = T.StructType(
    [
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("model", T.StringType(), False),
        T.StructField("prompt_version", T.StringType(), True),
        T.StructField("schema_name", T.StringType(), True),
        T.StructField("endpoint", T.StringType(), False),
        T.StructField("run_id", T.StringType(), False),  # the run that submitted (and paid for) it
        T.StructField("used_by", T.StringType(), False),  # the run that last polled or collected it
        T.StructField("round", T.IntegerType(), False),
        T.StructField("n_requests", T.LongType(), False),
        T.StructField("keys", T.ArrayType(T.StringType(), False), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("submitted_at", T.StringType(), False),
        T.StructField("updated_at", T.StringType(), False),
    ]
)


def endpoint_id(base_url: str | None) -> str:
    """The endpoint a batch id belongs to, without user info, query or fragment (no secret lands in
    the table)."""
    if not base_url:
        return ""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class BatchLedger:
    """The batches of one stage, model and endpoint, seen by one run (a `batch.Ledger`)."""

    def __init__(self, warehouse: Warehouse, *, stage: str, model: str, endpoint: str, run_id: str, schema_name: str, prompt_version: str | None):
        self.warehouse = warehouse
        self.stage = stage
        self.model = model
        self.endpoint = endpoint
        self.run_id = run_id
        self.schema_name = schema_name
        self.prompt_version = prompt_version

    def _mine(self, table: DataFrame) -> DataFrame:
        return table.filter((F.col("stage") == self.stage) & (F.col("model") == self.model) & (F.col("endpoint") == self.endpoint))

    def open_batches(self, needed: DataFrame, key_col: str) -> list[OpenBatch]:
        """The resumable batches that carry keys of `needed` (a frame with the keys in `key_col`),
        oldest first, each with those keys. One join in Spark; only the hits reach the driver."""
        table = self.warehouse.read_llm_batches()
        if table is None:
            return []
        carried = (
            self._mine(table)
            .filter(F.col("status").isin(*RESUMABLE))
            .select("batch_id", "run_id", "n_requests", "submitted_at", F.explode("keys").alias("_key"))
        )
        hits = carried.join(needed.select(F.col(key_col).alias("_key")).distinct(), "_key")
        rows = hits.groupBy("batch_id", "run_id", "n_requests", "submitted_at").agg(F.collect_list("_key").alias("keys")).collect()
        rows.sort(key=lambda r: (r["submitted_at"], r["batch_id"]))
        return [OpenBatch(r["batch_id"], r["run_id"], int(r["n_requests"]), list(r["keys"])) for r in rows]

    def submitted(self, batch_id: str, keys: list[str], round_no: int) -> None:
        now = _now()
        row = (
            batch_id, self.stage, self.model, self.prompt_version, self.schema_name, self.endpoint, self.run_id, self.run_id,
            round_no, len(keys), list(keys), "submitted", now, now,
        )  # fmt: skip
        self.warehouse.add_llm_batch(self.warehouse.spark.createDataFrame([row], ROW_SCHEMA), batch_id)

    def ended(self, statuses: dict[str, str]) -> None:
        """One MERGE for a round's batches: their final status, and this run as their user (so
        `mark_collected` finds the resumed ones too)."""
        now = _now()
        rows = [(batch_id, status, self.run_id, now) for batch_id, status in statuses.items()]
        schema = "batch_id string, status string, used_by string, updated_at string"
        self.warehouse.update_llm_batches_from(self.warehouse.spark.createDataFrame(rows, schema))


def mark_collected(warehouse: Warehouse, stage: str, run_id: str) -> None:
    """The completed batches `run_id` used for `stage` are collected: its output, which holds their
    replies, is staged (and lands them in the response cache), so no run resumes them again."""
    if warehouse.read_llm_batches() is None:
        return
    warehouse.update_llm_batches({"status": "collected", "updated_at": _now()}, stage=stage, used_by=run_id, status="completed")
