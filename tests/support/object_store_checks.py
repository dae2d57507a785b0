"""Run in its own process (it needs a JVM with hadoop-aws): the Delta operations the warehouse
uses, against s3a:// URIs, through a session built by webscale_rl.spark alone. Prints one JSON
object with what it saw; tests/spark/test_object_store.py asserts on it.

usage: python -m tests.support.object_store_checks --input s3a://b/in/ --table s3a://b/wh/t \
           [--conf key=value ...]
"""

from __future__ import annotations

import argparse
import json
import time

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from webscale_rl.config import Config
from webscale_rl.spark import apply_spark_conf, build_local_session


def append_once(spark: SparkSession, rows: list[tuple[str, int]], table: str, version: int) -> None:
    """An idempotent append: Delta skips a txnAppId/txnVersion pair it has already committed."""
    df = spark.createDataFrame(rows, "key string, n int")
    (df.write.format("delta").mode("append").option("txnAppId", "checks").option("txnVersion", version).save(table))


def merge_upsert(spark: SparkSession, rows: list[tuple[str, int]], table: str) -> None:
    spark.createDataFrame(rows, "key string, n int").createOrReplaceTempView("updates")
    spark.sql(f"MERGE INTO delta.`{table}` AS t USING updates AS u ON t.key = u.key WHEN MATCHED THEN UPDATE SET n = u.n WHEN NOT MATCHED THEN INSERT *")


def error_class(action) -> str | None:
    """The Spark error class `action` raises, or None if it succeeds."""
    try:
        action()
    except AnalysisException as exc:
        return exc.getCondition() or type(exc).__name__
    return None


def table_checks(spark: SparkSession, table: str) -> dict:
    append_once(spark, [("a", 1), ("b", 2)], table, 1)
    append_once(spark, [("a", 1), ("b", 2)], table, 1)  # a replay of the same batch: no-op
    merge_upsert(spark, [("b", 20), ("c", 3)], table)
    history = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").orderBy("version").collect()
    current = spark.sql(f"SELECT key, n FROM delta.`{table}` ORDER BY key").collect()
    first = spark.sql(f"SELECT key, n FROM delta.`{table}` VERSION AS OF 0 ORDER BY key").collect()
    return {
        "history": [[h["version"], h["operation"]] for h in history],
        "current": [[r["key"], r["n"]] for r in current],
        "version_0": [[r["key"], r["n"]] for r in first],
        "detail_format": spark.sql(f"DESCRIBE DETAIL delta.`{table}`").first()["format"],
    }


def listing_checks(spark: SparkSession, table: str, missing: str) -> dict:
    """Existence and listing through Spark only (what the warehouse must use instead of os/pathlib)."""
    files = spark.read.format("binaryFile").load(table).select("path").collect()
    return {
        "missing_table_error": error_class(lambda: spark.sql(f"DESCRIBE DETAIL delta.`{missing}`").collect()),
        "missing_path_error": error_class(lambda: spark.read.format("binaryFile").load(missing).count()),
        "listed_files": sorted(r["path"] for r in files),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--table", required=True)
    ap.add_argument("--conf", action="append", default=[])
    args = ap.parse_args(argv)
    cfg = apply_spark_conf(Config(), args.conf)
    cfg.spark.master, cfg.spark.shuffle_partitions = "local[2]", 2
    t0 = time.monotonic()
    spark = build_local_session(cfg, [args.input, args.table])
    out = {"session_start_s": round(time.monotonic() - t0, 1)}
    out["input_rows"] = spark.read.json(args.input).count()
    out.update(table_checks(spark, args.table))
    out.update(listing_checks(spark, args.table, args.table.rstrip("/") + "_missing"))
    out["total_s"] = round(time.monotonic() - t0, 1)
    spark.stop()
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main()), flush=True)
