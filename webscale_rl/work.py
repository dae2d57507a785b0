"""What a stage has still to do: its input rows that no run has handled yet.

Every stage takes only the work no earlier run finished (upstream table minus the keys it already
kept or rejected), so a rerun on the same input adds nothing, new documents are processed alone,
and a killed run resumes where it stopped."""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .llm.engine import TRANSIENT_REASON_SQL
from .stages.base import Stage
from .warehouse import REJECTIONS, Warehouse

# Rows earlier runs kept enter a stage that needs them flagged PRIOR, and leave its output before it lands.
PRIOR = "_prior"


def processed_keys(warehouse: Warehouse, stage: Stage) -> DataFrame | None:
    """Keys of the stage's input rows that some run already landed, kept or rejected."""
    key = list(stage.input_key)
    parts = []
    if warehouse.exists(stage.table):
        parts.append(warehouse.read(stage.table).select(*key))
    if warehouse.exists(REJECTIONS):
        rejected = warehouse.read(REJECTIONS).filter(F.col("stage") == stage.name)
        if stage.uses_llm:  # an endpoint failure is not a result: the next run tries the item again
            rejected = rejected.filter(f"NOT ({TRANSIENT_REASON_SQL})")
        parts.append(rejected.select(*key))
    if not parts:
        return None
    done = reduce(DataFrame.unionByName, parts)
    not_null = reduce(lambda a, b: a & b, [F.col(c).isNotNull() for c in key])
    return done.filter(not_null).distinct()


def without_processed(warehouse: Warehouse, stage: Stage, rows: DataFrame) -> DataFrame:
    done = processed_keys(warehouse, stage)
    return rows if done is None else rows.join(done, list(stage.input_key), "left_anti")


def with_landed_rows(warehouse: Warehouse, stage: Stage, work: DataFrame) -> DataFrame:
    """The work plus, for a stage that judges new rows against old ones, the rows it kept before."""
    if not stage.needs_landed_rows or not warehouse.exists(stage.table):
        return work
    landed = warehouse.read(stage.table).select(*work.columns)
    return work.withColumn(PRIOR, F.lit(False)).unionByName(landed.withColumn(PRIOR, F.lit(True)))


def without_landed_rows(marked: DataFrame) -> DataFrame:
    return marked.filter(~F.col(PRIOR)).drop(PRIOR) if PRIOR in marked.columns else marked


def unaccounted_documents(warehouse: Warehouse, first: Stage, final_table: str) -> list[str]:
    """doc_ids of every document the first stage ever saw (landed or rejected) that are neither
    in the final table nor rejected at some stage."""
    docs = warehouse.read(first.table).select("doc_id")
    accounted = warehouse.read(final_table).select("doc_id")
    if warehouse.exists(REJECTIONS):
        rejections = warehouse.read(REJECTIONS)
        docs = docs.unionByName(rejections.filter(F.col("stage") == first.name).select("doc_id"))
        accounted = accounted.unionByName(rejections.select("doc_id"))
    missing = docs.distinct().join(accounted.distinct(), "doc_id", "left_anti")
    return [r["doc_id"] for r in missing.limit(20).collect()]
