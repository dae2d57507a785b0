"""Delta I/O: the one place tables are written and read.

Every table lives at `<warehouse>/<name>` as a Delta table. The pipeline lands a stage's batch
with `append_once`: an idempotent Delta append (txnAppId/txnVersion), so landing the same batch
again after a crash adds nothing. Every landing is a new table version that can be time-travelled to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

REJECTIONS = "rejections"

REJECTION_SCHEMA = T.StructType(
    [
        T.StructField("doc_id", T.StringType(), False),
        T.StructField("qa_id", T.StringType(), True),
        T.StructField("stage", T.StringType(), False),
        T.StructField("reason", T.StringType(), False),
        T.StructField("detail", T.StringType(), True),
        T.StructField("run_id", T.StringType(), False),
        # dedup only: the doc_id of the kept document this one duplicates; null for other stages.
        T.StructField("duplicate_of", T.StringType(), True),
    ]
)


# Warehouse folder → "catalog.schema" for warehouses whose tables live in a metastore (Unity
# Catalog on Databricks). Set once per run by `use_catalog`; every function below consults it, so
# callers name tables the same way in both modes.
_SCHEMAS: dict[str, str] = {}


def use_catalog(spark: SparkSession, warehouse: str | Path, catalog: str | None, schema: str | None) -> None:
    """Tables of this warehouse become `catalog.schema.<name>` (creating the schema if needed);
    with no catalog they are folders `<warehouse>/<name>` again."""
    key = str(Path(warehouse).resolve())
    if not (catalog and schema):
        _SCHEMAS.pop(key, None)
        return
    _SCHEMAS[key] = f"`{catalog}`.`{schema}`"
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{catalog}`.`{schema}`")


def table_name(warehouse: str | Path, name: str) -> str | None:
    """The metastore name of a table, or None when tables are folders."""
    schema = _SCHEMAS.get(str(Path(warehouse).resolve()))
    return f"{schema}.`{name}`" if schema else None


def table_path(warehouse: str | Path, name: str) -> str:
    return str(Path(warehouse) / name)


def _sql_ref(warehouse: str | Path, name: str) -> str:
    return table_name(warehouse, name) or f"delta.`{table_path(warehouse, name)}`"


def exists(spark: SparkSession, warehouse: str | Path, name: str) -> bool:
    qualified = table_name(warehouse, name)
    if qualified:
        return spark.catalog.tableExists(qualified.replace("`", ""))
    return (Path(warehouse) / name / "_delta_log").is_dir()


def latest_version(spark: SparkSession, warehouse: str | Path, name: str) -> int:
    row = spark.sql(f"DESCRIBE HISTORY {_sql_ref(warehouse, name)} LIMIT 1").collect()[0]
    return int(row["version"])


def history(spark: SparkSession, warehouse: str | Path, name: str) -> list[dict]:
    rows = spark.sql(f"DESCRIBE HISTORY {_sql_ref(warehouse, name)}").collect()
    return [{"version": r["version"], "operation": r["operation"], "timestamp": r["timestamp"]} for r in rows]


def _save(writer, warehouse: str | Path, name: str) -> None:
    qualified = table_name(warehouse, name)
    if qualified:
        writer.saveAsTable(qualified)
    else:
        writer.save(table_path(warehouse, name))


def append(df: DataFrame, warehouse: str | Path, name: str) -> int:
    """Append rows; returns the table version written."""
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("mergeSchema", "true")  # later issues add columns; old versions stay readable
    )
    _save(writer, warehouse, name)
    return latest_version(df.sparkSession, warehouse, name)


def append_once(df: DataFrame, warehouse: str | Path, name: str, batch_id: str) -> int:
    """Append a batch exactly once. Delta records (txnAppId, txnVersion) in the same commit as the
    rows and skips a later write with a version it has already seen, so re-landing a batch whose
    first landing was killed just before or after its commit converges to one copy."""
    writer = (
        df.write.format("delta")
        .mode("append")
        .option("mergeSchema", "true")
        .option("txnAppId", batch_id)
        .option("txnVersion", 1)
    )
    _save(writer, warehouse, name)
    return latest_version(df.sparkSession, warehouse, name)


def delete_matching(keys: DataFrame, warehouse: str | Path, name: str, key: str, condition: str) -> None:
    """Delete the rows of table `name` whose `key` is among `keys[key]` and that meet the SQL
    `condition` (one MERGE: a single atomic commit)."""
    import uuid

    view = f"_wsrl_keys_{uuid.uuid4().hex[:8]}"
    keys.select(key).distinct().createOrReplaceTempView(view)
    try:
        keys.sparkSession.sql(
            f"MERGE INTO {_sql_ref(warehouse, name)} AS t USING {view} AS k ON t.`{key}` = k.`{key}` AND ({condition}) "
            "WHEN MATCHED THEN DELETE"
        )
    finally:
        keys.sparkSession.catalog.dropTempView(view)


def overwrite(df: DataFrame, path: str) -> None:
    df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)


def read(spark: SparkSession, warehouse: str | Path, name: str, version: int | None = None) -> DataFrame:
    if not exists(spark, warehouse, name):
        where = table_name(warehouse, name) or f"warehouse {warehouse}"
        raise FileNotFoundError(f"no Delta table '{name}' in {where} (run the pipeline first)")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    qualified = table_name(warehouse, name)
    return reader.table(qualified) if qualified else reader.load(table_path(warehouse, name))


@dataclass
class Lineage:
    """Table versions read and written during one run (logged to MLflow)."""

    written: dict[str, list[int]] = field(default_factory=dict)

    def record(self, name: str, version: int) -> None:
        self.written.setdefault(name, []).append(version)
