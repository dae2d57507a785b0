"""The warehouse: the one owner of the Delta tables and of every file the pipeline keeps beside them.

A warehouse is a URI: a local path, `file:`, `s3a://`, `abfss://`, `gs://`, `dbfs:/` or `/Volumes/...`.
Every table lives at `<root>/<name>` as a Delta table, or as `catalog.schema.<name>` in a metastore
(Unity Catalog on Databricks) when the warehouse is opened with a catalog and schema; staging and
the LLM cache are always Delta tables under the root (a path or volume). Everything here goes
through Spark: no `os`, `pathlib` or `glob` touches a warehouse location, so the same code runs on
a laptop, on a cluster whose workers share no disk with the driver, and over Spark Connect.

A stage's batch is staged in `_staging/<stage>` (one Delta table per stage, a `_batch` partition per
run, appended a slice at a time) and landed with `append_once`: an idempotent Delta append
(txnAppId/txnVersion), so landing the same batch again after a crash adds nothing. Every landing is
a new table version that can be time-travelled to.

The files of runs that are not tables (MLflow's sqlite store, Great Expectations results, gate
JSON) need a driver-local folder: the warehouse root when it is local, else a folder per warehouse
under the cache directory (`local_dir`).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .storage import is_local, join_uri, local_path, normalize_root
from .store_check import check_store

REJECTIONS = "rejections"
LLM_CACHE = "llm_cache"
LLM_BATCHES = "_llm_batches"

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
BATCH_COL = "_batch"  # the run whose stage output a staged row is


class Warehouse:
    """Tables of one warehouse: read, append once, delete by key, merge, versions and history, and
    the staged batches of runs. Catalog mode is a property of the instance."""

    def __init__(self, spark: SparkSession, root: str, catalog: str | None = None, schema: str | None = None):
        self.spark = spark
        self.root = normalize_root(str(root))
        self.catalog = catalog if (catalog and schema) else None
        self.schema = schema if (catalog and schema) else None
        self._seen: set[str] = set()  # locations known to hold a Delta table (tables are never dropped)

    @classmethod
    def open(cls, spark: SparkSession, root: str, catalog: str | None = None, schema: str | None = None) -> Warehouse:
        """The warehouse at `root` and, in catalog mode, its schema created. Nothing is written
        under the root until a table is: Delta makes the folders (or object prefixes) it needs.
        A store that cannot be used (no bucket, no credentials, unreachable) is a StoreError first."""
        warehouse = cls(spark, str(root), catalog, schema)
        if not is_local(warehouse.root):
            check_store(spark, warehouse.root, role="warehouse")
        if warehouse.catalog:
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{warehouse.catalog}`.`{warehouse.schema}`")
        return warehouse

    def __str__(self) -> str:
        return self.root

    def __getstate__(self) -> dict:  # a SparkSession cannot travel to executors
        return {**self.__dict__, "spark": None}

    # --- names ------------------------------------------------------------------------------

    def table_name(self, name: str) -> str | None:
        """The metastore name of a table, or None when tables are folders."""
        return f"`{self.catalog}`.`{self.schema}`.`{name}`" if self.catalog else None

    def path(self, *parts: str) -> str:
        """A location under the warehouse root (tables in folder mode, staging, the LLM cache)."""
        return join_uri(self.root, *parts)

    def where(self, name: str) -> str:
        """A table as a user would look for it: its metastore name or its location."""
        return (self.table_name(name) or self.path(name)).replace("`", "")

    def local_dir(self, *parts: str) -> str:
        """A driver-local folder for the files of runs that are not tables: under the root when the
        warehouse is local, else under the cache directory, one folder per warehouse URI."""
        if is_local(self.root):
            base = local_path(self.root)
        else:
            from .config import cache_dir

            slug = hashlib.sha256(self.root.encode()).hexdigest()[:12]
            base = str(cache_dir() / "warehouses" / slug)
        return join_uri(base, *parts)

    def _sql_ref(self, name: str) -> str:
        return self.table_name(name) or f"delta.`{self.path(name)}`"

    # --- tables -----------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        qualified = self.table_name(name)
        if qualified:
            return self.spark.catalog.tableExists(qualified.replace("`", ""))
        return self.exists_at(self.path(name))

    def exists_at(self, location: str) -> bool:
        """True when `location` holds a committed Delta table (asked of Spark, so any store works).
        Only "no such table/path" means False; an unreachable store raises."""
        if location in self._seen:
            return True
        try:
            self.spark.read.format("delta").load(location).columns  # noqa: B018 (.columns forces analysis, also over Connect)
        except AnalysisException as exc:
            if _is_absent(exc):
                return False
            raise
        self._seen.add(location)
        return True

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
        """The table's latest committed version. In a classic session, for a folder table, from
        Delta's log as it stands now (a listing of `_delta_log`); else DESCRIBE HISTORY, which
        reads commit files and costs ~0.5 s."""
        delta_log = None if self.table_name(name) else _jvm_delta_log(self.spark, self.path(name))
        if delta_log is not None:
            with contextlib.suppress(Exception):  # another Delta build's signature: the SQL way below
                none = self.spark._jvm.scala.Option.empty()
                version = int(delta_log.update(False, none, none).version())
                if version >= 0:  # -1: no table there; DESCRIBE HISTORY says so in its own words
                    return version
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
        qualified = self.table_name(name)
        self._append(df, qualified or self.path(name), batch_id, 1, metastore=bool(qualified))
        return self._version_after_write(name)

    def _version_after_write(self, name: str) -> int:
        """The version of table `name` right after this session wrote it. Delta keeps the snapshot
        its commit made (or, for a skipped replay, the one it checked against) in the session's
        log cache: read from there, a version costs no log read (DESCRIBE HISTORY takes ~0.3 s per
        landing). Over Spark Connect or for a metastore table: DESCRIBE HISTORY."""
        delta_log = None if self.table_name(name) else _jvm_delta_log(self.spark, self.path(name))
        if delta_log is None:
            return self.latest_version(name)
        return int(delta_log.unsafeVolatileSnapshot().version())

    def _append(self, df: DataFrame, target: str, txn_app: str, txn_version: int, *, metastore: bool = False, partition_by: str | None = None) -> None:
        writer = (
            df.write.format("delta")
            .mode("append")
            .option("mergeSchema", "true")  # later issues add columns; old versions stay readable
            .option("txnAppId", txn_app)
            .option("txnVersion", txn_version)
        )
        if partition_by:
            writer = writer.partitionBy(partition_by)
        if metastore:
            writer.saveAsTable(target)
        else:
            writer.save(target)
            self._seen.add(target)

    def delete_matching(self, keys: DataFrame, name: str, key: tuple[str, ...], condition: str) -> None:
        """Delete the rows of table `name` whose `key` columns are among those of `keys` and that
        meet the SQL `condition` (one MERGE: a single atomic commit)."""
        match = " AND ".join(f"t.`{c}` = k.`{c}`" for c in key)
        with _temp_view(keys.select(*key).distinct()) as view:
            self.spark.sql(f"MERGE INTO {self._sql_ref(name)} AS t USING {view} AS k ON {match} AND ({condition}) WHEN MATCHED THEN DELETE")

    def insert_missing(self, rows: DataFrame, name: str, key: tuple[str, ...]) -> None:
        """Insert the rows whose `key` columns table `name` lacks (one MERGE: a replay adds nothing);
        the first call creates the table."""
        if not self.exists(name):
            qualified = self.table_name(name)
            self._append(rows, qualified or self.path(name), f"webscale-rl/insert/{name}", 1, metastore=bool(qualified))
            return
        self._insert_missing(self._sql_ref(name), rows, key)

    def add_columns(self, name: str, columns: dict[str, str]) -> None:
        """Add the columns (name → SQL type) table `name` lacks; old rows read them as null."""
        present = set(self.read(name).columns)
        missing = ", ".join(f"`{c}` {t}" for c, t in columns.items() if c not in present)
        if missing:
            self.spark.sql(f"ALTER TABLE {self._sql_ref(name)} ADD COLUMNS ({missing})")

    def delete_or_update(self, source: DataFrame, name: str, key: tuple[str, ...], delete_when: str, updates: dict[str, str]) -> None:
        """One MERGE (a single atomic commit): each row of table `name` matching a `source` row on
        `key` is deleted when the SQL `delete_when` holds, else its columns are set to the SQL
        expressions of `updates`. Both may refer to the target as `t` and the source as `s`."""
        match = " AND ".join(f"t.`{c}` = s.`{c}`" for c in key)
        assignments = ", ".join(f"t.`{c}` = {expr}" for c, expr in updates.items())
        with _temp_view(source) as view:
            self.spark.sql(
                f"MERGE INTO {self._sql_ref(name)} AS t USING {view} AS s ON {match} "
                f"WHEN MATCHED AND ({delete_when}) THEN DELETE WHEN MATCHED THEN UPDATE SET {assignments}"
            )

    def _insert_missing(self, ref: str, rows: DataFrame, key: tuple[str, ...]) -> None:
        match = " AND ".join(f"t.`{c}` = s.`{c}`" for c in key)
        columns = ", ".join(f"`{c}`" for c in rows.columns)
        values = ", ".join(f"s.`{c}`" for c in rows.columns)
        with _temp_view(rows) as view:
            self.spark.sql(f"MERGE INTO {ref} AS t USING {view} AS s ON {match} WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})")

    # --- staged batches: a stage's output is materialised once, then landed -----------------
    # One Delta table per stage; a run's batch is its `_batch` partition, appended a slice at a
    # time. A slice exists once its commit does: a slice killed mid-write left nothing.

    def _staging(self, stage: str) -> str:
        return self.path(STAGING, stage)

    def stage_slice(self, df: DataFrame, stage: str, run_id: str, slice_no: int = 0) -> None:
        """Add slice `slice_no` of (stage, run)'s output to its staged batch, once."""
        rows = df.withColumn(BATCH_COL, F.lit(run_id))
        self._append(rows, self._staging(stage), f"webscale-rl/staging/{stage}/{run_id}", slice_no + 1, partition_by=BATCH_COL)

    def staged_batches(self, stage: str) -> list[str]:
        """Run ids of this stage's staged batches (some slices or all), oldest first."""
        location = self._staging(stage)
        if not self.exists_at(location):
            return []
        rows = self.spark.read.format("delta").load(location).select(BATCH_COL).distinct().collect()
        return sorted(r[BATCH_COL] for r in rows)

    def read_batch(self, stage: str, run_id: str) -> DataFrame:
        staged = self.spark.read.format("delta").load(self._staging(stage))
        return staged.filter(F.col(BATCH_COL) == run_id).drop(BATCH_COL)

    def read_discarded_batch(self, stage: str, run_id: str) -> DataFrame | None:
        """A landed batch as it was staged, per-row LLM usage included (Delta time travel to the
        version before `discard_batch` dropped it); None when it was never staged or not dropped."""
        location = self._staging(stage)
        if not self.exists_at(location):
            return None
        history = self.spark.sql(f"DESCRIBE HISTORY delta.`{location}`").select("version", "operation", "operationParameters").collect()
        dropped = [int(r["version"]) for r in history if r["operation"] == "DELETE" and run_id in str((r["operationParameters"] or {}).get("predicate", ""))]
        if not dropped:
            return None
        staged = self.spark.read.format("delta").option("versionAsOf", max(dropped) - 1).load(location)
        return staged.filter(F.col(BATCH_COL) == run_id).drop(BATCH_COL)

    def discard_batch(self, stage: str, run_id: str) -> None:
        """Drop a landed batch (its partition: a metadata-only Delta commit)."""
        location = self._staging(stage)
        if self.exists_at(location):
            self.spark.sql(f"DELETE FROM delta.`{location}` WHERE `{BATCH_COL}` = '{sql_string(run_id)}'")

    # --- the LLM response cache (a folder table in both modes) ------------------------------

    def read_llm_cache(self) -> DataFrame | None:
        path = self.path(LLM_CACHE)
        return self.spark.read.format("delta").load(path) if self.exists_at(path) else None

    def merge_into_llm_cache(self, rows: DataFrame, key: str) -> None:
        """Insert the rows whose `key` the cache lacks (one MERGE: replays add nothing)."""
        path = self.path(LLM_CACHE)
        if not self.exists_at(path):
            self._append(rows, path, "webscale-rl/llm_cache/create", 1)
            return
        self._insert_missing(f"delta.`{path}`", rows, (key,))

    # --- Batch API batches of runs (llm/batch_ledger.py owns the rows; a folder table) --------

    def read_llm_batches(self) -> DataFrame | None:
        path = self.path(LLM_BATCHES)
        return self.spark.read.format("delta").load(path) if self.exists_at(path) else None

    def add_llm_batch(self, row: DataFrame, batch_id: str) -> None:
        """Append one batch's row, once (a replay of the same batch id adds nothing)."""
        self._append(row, self.path(LLM_BATCHES), f"webscale-rl/llm_batches/{batch_id}", 1)

    def update_llm_batches_from(self, rows: DataFrame) -> None:
        """Set the columns of `rows` on the batch rows with the same `batch_id` (one MERGE commit)."""
        assignments = ", ".join(f"t.`{c}` = s.`{c}`" for c in rows.columns if c != "batch_id")
        target = f"delta.`{self.path(LLM_BATCHES)}`"
        with _temp_view(rows) as view:
            self.spark.sql(f"MERGE INTO {target} AS t USING {view} AS s ON t.batch_id = s.batch_id WHEN MATCHED THEN UPDATE SET {assignments}")

    def update_llm_batches(self, values: dict[str, str], **match: str) -> None:
        """Set `values` on the batch rows whose columns equal `match` (one UPDATE commit)."""
        assignments = ", ".join(f"`{k}` = '{sql_string(v)}'" for k, v in values.items())
        where = " AND ".join(f"`{k}` = '{sql_string(v)}'" for k, v in match.items())
        self.spark.sql(f"UPDATE delta.`{self.path(LLM_BATCHES)}` SET {assignments} WHERE {where}")


def _jvm_delta_log(spark: SparkSession, location: str):
    """Delta's DeltaLog of `location` in a classic session's JVM (cached by Delta); None over
    Spark Connect, which has no JVM here."""
    try:
        session = getattr(spark, "_jsparkSession", None)
        return None if session is None else spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(session, location)
    except Exception:  # a Connect session's JVM attributes raise; another Delta build may lack this entry point
        return None


def _is_absent(exc: AnalysisException) -> bool:
    """Delta's and Spark's ways of saying there is no table at a location (not: cannot reach it)."""
    condition = exc.getCondition() if hasattr(exc, "getCondition") else None
    if condition in ("PATH_NOT_FOUND", "DELTA_TABLE_NOT_FOUND", "DELTA_MISSING_DELTA_TABLE", "DELTA_PATH_DOES_NOT_EXIST"):
        return True
    text = str(exc)
    return "is not a Delta table" in text or "Path does not exist" in text or "doesn't exist" in text


def sql_string(value: str) -> str:
    """`value` as the body of a single-quoted Spark SQL string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


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
