"""Run by test_connect.py in a process of its own. The warehouse's Delta operations and the UDF kinds the stages use, over Spark Connect (the
execution model of Databricks serverless), against a local Connect server with Delta."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pytest
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tests.support.connect_server import ConnectServer, connect_server_s3  # noqa: F401  (fixtures)
from tests.support.s3_server import S3Server, s3_server  # noqa: F401
from webscale_rl.spark import is_connect_session

pytestmark = pytest.mark.spark_processes


@pytest.fixture(scope="module")
def remote(connect_server_s3: ConnectServer) -> Iterator[SparkSession]:  # noqa: F811
    """A Connect client session (its server also reaches the moto S3 server). pyspark marks the process as Connect mode through environment
    variables; they are removed afterwards so classic sessions of other tests behave as before."""
    saved = {k: os.environ.get(k) for k in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")}
    spark = SparkSession.builder.remote(connect_server_s3.url).getOrCreate()
    print(f"Connect server ready after {connect_server_s3.start_s} s")
    yield spark
    spark.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def append_once(spark, rows, table: str, version: int) -> None:
    df = spark.createDataFrame(rows, "key string, n int")
    df.write.format("delta").mode("append").option("txnAppId", "e2e").option("txnVersion", version).save(table)


def test_delta_sql_over_connect(remote, tmp_path):
    table = str(tmp_path / "t")
    assert is_connect_session(remote)
    append_once(remote, [("a", 1), ("b", 2)], table, 1)
    append_once(remote, [("a", 1), ("b", 2)], table, 1)  # replayed batch: committed once only
    remote.createDataFrame([("b", 20), ("c", 3)], "key string, n int").createOrReplaceTempView("updates")
    remote.sql(f"MERGE INTO delta.`{table}` AS t USING updates AS u ON t.key = u.key WHEN MATCHED THEN UPDATE SET n = u.n WHEN NOT MATCHED THEN INSERT *")
    history = remote.sql(f"DESCRIBE HISTORY delta.`{table}`").orderBy("version").collect()
    assert [(h["version"], h["operation"]) for h in history] == [(0, "WRITE"), (1, "MERGE")]
    rows = remote.sql(f"SELECT key, n FROM delta.`{table}` ORDER BY key").collect()
    assert [(r["key"], r["n"]) for r in rows] == [("a", 1), ("b", 20), ("c", 3)]
    first = remote.read.format("delta").option("versionAsOf", 0).load(table).orderBy("key").collect()
    assert [(r["key"], r["n"]) for r in first] == [("a", 1), ("b", 2)]


def test_s3a_input_and_delta_table_over_connect(remote, s3_server: S3Server):  # noqa: F811
    docs = "".join(f'{{"id": {i}, "text": "doc {i}"}}\n' for i in range(4))
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="connect-in/part-0.jsonl", Body=docs.encode())
    assert remote.read.json(s3_server.uri("connect-in") + "/").count() == 4
    table = s3_server.uri("connect-wh", "t")
    append_once(remote, [("a", 1)], table, 1)
    append_once(remote, [("a", 1)], table, 1)
    remote.createDataFrame([("a", 10), ("b", 2)], "key string, n int").createOrReplaceTempView("s3_updates")
    remote.sql(f"MERGE INTO delta.`{table}` AS t USING s3_updates AS u ON t.key = u.key WHEN MATCHED THEN UPDATE SET n = u.n WHEN NOT MATCHED THEN INSERT *")
    ops = [r["operation"] for r in remote.sql(f"DESCRIBE HISTORY delta.`{table}`").orderBy("version").collect()]
    assert ops == ["WRITE", "MERGE"]
    assert "connect-wh/t/_delta_log/00000000000000000001.json" in s3_server.keys("connect-wh/")


def test_table_existence_and_listing_without_the_filesystem(remote, tmp_path):
    """What the warehouse can use instead of os.path / iterdir: SQL errors and Spark file listing."""
    table = str(tmp_path / "staged" / "batch-0001")
    remote.range(3).write.format("delta").save(table)
    assert remote.sql(f"DESCRIBE DETAIL delta.`{table}`").first()["format"] == "delta"
    with pytest.raises(PySparkException):
        remote.sql(f"DESCRIBE DETAIL delta.`{tmp_path / 'nothing'}`").collect()
    # Listing below a root needs recursiveFileLookup (sub-folders that are not key=value partitions
    # are not entered otherwise); names starting with "_" or "." are skipped, so _delta_log is not
    # listed and a batch that wrote no data file (an empty batch, a killed write) is not seen.
    listing = remote.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(tmp_path / "staged"))
    paths = [r["path"] for r in listing.select("path").collect()]
    assert paths and all("/staged/batch-0001/part-" in p for p in paths)


def test_pandas_and_arrow_udfs_over_connect(remote):
    def double_pandas(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            yield pdf.assign(id=pdf["id"] * 2)

    def double_arrow(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.RecordBatch.from_arrays([pa.compute.multiply(batch.column(0), 2)], names=["id"])

    @F.pandas_udf("long")
    def plus_one(s: pd.Series) -> pd.Series:
        return s + 1

    df = remote.range(10)
    assert sum(r["id"] for r in df.mapInPandas(double_pandas, "id long").collect()) == 90
    assert sum(r["id"] for r in df.mapInArrow(double_arrow, "id long").collect()) == 90
    assert sum(r["x"] for r in df.select(plus_one("id").alias("x")).collect()) == 55


def test_python_delta_table_api_needs_delta_connect_on_the_server(remote, tmp_path):
    """delta.tables.DeltaTable over Connect needs Delta Connect's server plugin, which this server
    (like a plain Spark Connect deployment) lacks: the warehouse must use SQL MERGE INTO instead."""
    from delta.tables import DeltaTable

    table = str(tmp_path / "t")
    remote.range(3).write.format("delta").save(table)
    with pytest.raises(Exception) as failure:
        DeltaTable.forPath(remote, table).toDF().count()
    print(f"DeltaTable over Connect: {type(failure.value).__name__}: {str(failure.value)[:300]}")
