"""The warehouse: the one owner of the Delta tables and of every file the pipeline keeps beside them.

Every table lives at `<root>/<name>` as a Delta table, or as `catalog.schema.<name>` in a metastore
(Unity Catalog on Databricks) when the warehouse is opened with a catalog and schema. A stage's
batch is landed with `append_once`: an idempotent Delta append (txnAppId/txnVersion), so landing
the same batch again after a crash adds nothing. Every landing is a new table version that can be
time-travelled to.

Beside the tables, the warehouse holds the staged batches of stages (`_staging/batches`), the LLM
call counters of a run (`_staging/progress`), the LLM response cache (`llm_cache`, always a folder
table, fed by spill files under `_llm_cache/spill`) and the quality and MLflow files of runs.
All path handling lives here, so a warehouse on object storage changes this module only.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

REJECTIONS = "rejections"
LLM_CACHE = "llm_cache"

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

STAGING = "_staging"
_LLM_CACHE_SPILL = "_llm_cache/spill"
# A committed Delta table has its first commit file; a staged batch without it was killed mid-write.
_FIRST_COMMIT = "_delta_log/00000000000000000000.json"


class Warehouse:
    """Tables of one warehouse: read, append once, delete by key, merge, versions and history, and
    the staged batches and scratch folders of runs. Catalog mode is a property of the instance."""

    def __init__(self, spark: SparkSession, root: str, catalog: str | None = None, schema: str | None = None):
        self.spark = spark
        self.root = str(Path(root).resolve())
        self.catalog = catalog if (catalog and schema) else None
        self.schema = schema if (catalog and schema) else None

    @classmethod
    def open(cls, spark: SparkSession, root: str | Path, catalog: str | None = None, schema: str | None = None) -> Warehouse:
        """The warehouse at `root`, its folder made and, in catalog mode, its schema created."""
        warehouse = cls(spark, str(root), catalog, schema)
        Path(warehouse.root).mkdir(parents=True, exist_ok=True)
        if warehouse.catalog:
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{warehouse.catalog}`.`{warehouse.schema}`")
        return warehouse

    def __str__(self) -> str:
        return self.root

    def __fspath__(self) -> str:  # local warehouses: code that writes files beside the tables
        return self.root

    def __getstate__(self) -> dict:  # a SparkSession cannot travel to executors
        return {**self.__dict__, "spark": None}

    # --- names ------------------------------------------------------------------------------

    def table_name(self, name: str) -> str | None:
        """The metastore name of a table, or None when tables are folders."""
        return f"`{self.catalog}`.`{self.schema}`.`{name}`" if self.catalog else None

    def path(self, *parts: str) -> str:
        """A location under the warehouse root (tables in folder mode, staging, quality files)."""
        return str(Path(self.root).joinpath(*parts))

    def _sql_ref(self, name: str) -> str:
        return self.table_name(name) or f"delta.`{self.path(name)}`"

    # --- tables -----------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        qualified = self.table_name(name)
        if qualified:
            return self.spark.catalog.tableExists(qualified.replace("`", ""))
        return _is_delta(self.path(name))

    def read(self, name: str, version: int | None = None) -> DataFrame:
        if not self.exists(name):
            where = self.table_name(name) or f"warehouse {self.root}"
            raise FileNotFoundError(f"no Delta table '{name}' in {where} (run the pipeline first)")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        qualified = self.table_name(name)
        return reader.table(qualified) if qualified else reader.load(self.path(name))

    def latest_version(self, name: str) -> int:
        row = self.spark.sql(f"DESCRIBE HISTORY {self._sql_ref(name)} LIMIT 1").collect()[0]
        return int(row["version"])

    def history(self, name: str) -> list[dict]:
        rows = self.spark.sql(f"DESCRIBE HISTORY {self._sql_ref(name)}").collect()
        return [{"version": r["version"], "operation": r["operation"], "timestamp": r["timestamp"]} for r in rows]

    def append_once(self, df: DataFrame, name: str, batch_id: str) -> int:
        """Append a batch exactly once; returns the table version. Delta records (txnAppId,
        txnVersion) in the same commit as the rows and skips a later write with a version it has
        already seen, so re-landing a batch whose first landing was killed just before or after its
        commit converges to one copy."""
        writer = (
            df.write.format("delta")
            .mode("append")
            .option("mergeSchema", "true")  # later issues add columns; old versions stay readable
            .option("txnAppId", batch_id)
            .option("txnVersion", 1)
        )
        qualified = self.table_name(name)
        if qualified:
            writer.saveAsTable(qualified)
        else:
            writer.save(self.path(name))
        return self.latest_version(name)

    def delete_matching(self, keys: DataFrame, name: str, key: tuple[str, ...], condition: str) -> None:
        """Delete the rows of table `name` whose `key` columns are among those of `keys` and that
        meet the SQL `condition` (one MERGE: a single atomic commit)."""
        match = " AND ".join(f"t.`{c}` = k.`{c}`" for c in key)
        with _temp_view(keys.select(*key).distinct()) as view:
            self.spark.sql(f"MERGE INTO {self._sql_ref(name)} AS t USING {view} AS k ON {match} AND ({condition}) WHEN MATCHED THEN DELETE")

    # --- staged batches: a stage's output is materialised once, then landed -----------------

    def _batch_root(self, stage: str) -> Path:
        return Path(self.root) / STAGING / "batches" / stage

    def stage_batch(self, df: DataFrame, stage: str, run_id: str) -> None:
        """Materialise a stage's output as the batch of (stage, run); replaces a half-written one."""
        path = str(self._batch_root(stage) / run_id)
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)

    def staged_batches(self, stage: str) -> list[str]:
        """Run ids of this stage's batches whose materialisation committed (landing may not have).
        A folder without a Delta commit is a batch killed while being written: it is not work done."""
        root = self._batch_root(stage)
        if not root.is_dir():
            return []
        committed = []
        for path in sorted(root.iterdir()):
            if path.name.startswith(".trash-"):  # a removal that a kill interrupted
                shutil.rmtree(path, ignore_errors=True)
            elif self.is_committed_batch(stage, path.name):
                committed.append(path.name)
            else:
                _discard(path)
        return committed

    def is_committed_batch(self, stage: str, run_id: str) -> bool:
        return (self._batch_root(stage) / run_id / _FIRST_COMMIT).is_file()

    def read_batch(self, stage: str, run_id: str) -> DataFrame:
        return self.spark.read.format("delta").load(str(self._batch_root(stage) / run_id))

    def discard_batch(self, stage: str, run_id: str) -> None:
        _discard(self._batch_root(stage) / run_id)

    # --- scratch folders of runs ------------------------------------------------------------

    def progress_dir(self, run_id: str | None = None) -> str:
        """Where executors count the LLM calls of a run (all runs' folders when run_id is None)."""
        parts = (STAGING, "progress") + ((run_id,) if run_id else ())
        return self.path(*parts)

    def clear_progress(self, run_id: str | None = None) -> None:
        shutil.rmtree(self.progress_dir(run_id), ignore_errors=True)

    # --- the LLM response cache (a folder table in both modes) ------------------------------

    def llm_cache_spill_dir(self) -> str:
        return self.path(_LLM_CACHE_SPILL)

    def llm_cache_spills(self) -> list[str]:
        """The non-empty spill files executors wrote and no fold has merged yet."""
        root = Path(self.llm_cache_spill_dir())
        return sorted(str(p) for p in root.glob("**/*.jsonl") if p.stat().st_size > 0) if root.is_dir() else []

    def remove_llm_cache_spills(self, files: list[str]) -> None:
        for file in files:
            try:
                Path(file).unlink()
            except OSError:  # already gone, or not ours to remove: that reply is merged anyway
                pass

    def read_llm_cache(self) -> DataFrame | None:
        path = self.path(LLM_CACHE)
        return self.spark.read.format("delta").load(path) if _is_delta(path) else None

    def merge_into_llm_cache(self, rows: DataFrame, key: str) -> int:
        """Insert the rows whose `key` the cache lacks (one MERGE); returns the rows added."""
        path = self.path(LLM_CACHE)
        if not _is_delta(path):
            rows.write.format("delta").mode("append").save(path)
            return self.spark.read.format("delta").load(path).count()
        before = self.spark.read.format("delta").load(path).count()
        with _temp_view(rows) as view:
            self.spark.sql(f"MERGE INTO delta.`{path}` AS t USING {view} AS s ON t.`{key}` = s.`{key}` WHEN NOT MATCHED THEN INSERT *")
        return self.spark.read.format("delta").load(path).count() - before


def _is_delta(path: str) -> bool:
    return (Path(path) / "_delta_log").is_dir()


def _discard(path: Path) -> None:
    """Remove a folder so that a kill half-way never leaves a half-deleted batch under its name."""
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:6]}")
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


class _temp_view:
    """A DataFrame as a uniquely named temporary view for one SQL statement."""

    def __init__(self, df: DataFrame):
        self.df = df
        self.name = f"_wsrl_{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> str:
        self.df.createOrReplaceTempView(self.name)
        return self.name

    def __exit__(self, *exc) -> None:
        self.df.sparkSession.catalog.dropTempView(self.name)
