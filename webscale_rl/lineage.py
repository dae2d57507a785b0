"""Lineage: the exact Delta versions every stage run read and wrote, kept in the warehouse itself.

The table `_lineage` has one row per (run, stage, table, role):
- `input`: ingest's input paths (no version: they are files, not tables);
- `read`: the upstream table at the version the stage resolved when it started. The stage reads
  that version (Delta time travel), so a writer committing to the upstream table meanwhile cannot
  change what it reads; its rows are taken by the next run;
- `wrote`: the stage's table and `rejections` at the version its batch landed (a batch a killed run
  staged and a later run landed is recorded under the run that made it).
An LLM stage's rows carry its prompt version and model. A stage's reads are committed before it
runs and its writes after it landed, each an idempotent append keyed by (run, stage, role), so a
per-stage job (`--from X --until X`) records both like a whole run does. MLflow gets the same
versions as dataset inputs of the stage's nested run (`quality/report.py`), and `webscale-rl explain`
reads them back to say at which version a document's or a pair's row was written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .config import Config
from .stages.base import Stage
from .summary import PipelineError, StageSummary
from .warehouse import REJECTIONS, Warehouse

LINEAGE = "_lineage"
INPUT, READ, WROTE = "input", "read", "wrote"

SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("table", T.StringType(), False),  # a table of the warehouse, or an input path (role input)
        T.StructField("role", T.StringType(), False),
        T.StructField("version", T.LongType(), True),
        T.StructField("prompt_version", T.StringType(), True),  # LLM stages
        T.StructField("model", T.StringType(), True),  # LLM stages
        T.StructField("recorded_at", T.TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class TableVersion:
    """One table a stage read or wrote, at one version (None: an input path, which has none)."""

    table: str
    version: int | None
    role: str


def prompt_version(stage: Stage, cfg: Config) -> str | None:
    """The prompt version an LLM stage runs with: the stage's own rule, as its rows record it."""
    return stage.prompt_version(cfg) if stage.uses_llm and stage.prompt_version else None


def read_pinned(wh: Warehouse, stage: Stage, table: str) -> tuple[DataFrame, TableVersion]:
    """The upstream `table` at its latest version now, pinned: later evaluations of the frame read
    the same snapshot whatever is committed meanwhile."""
    if not wh.exists(table):
        raise PipelineError(f"stage '{stage.name}' reads table '{table}', which is not in {wh.root}: run the earlier stages first")
    version = wh.latest_version(table)
    return wh.read(table, version=version), TableVersion(table, version, READ)


def written(summary: StageSummary) -> list[TableVersion]:
    """The versions a landed batch made (none for a quarantined batch or one with nothing to land)."""
    out = []
    if summary.table_version is not None:
        out.append(TableVersion(summary.table, summary.table_version, WROTE))
    if summary.rejections_version is not None:
        out.append(TableVersion(REJECTIONS, summary.rejections_version, WROTE))
    return out


def record(wh: Warehouse, run_id: str, stage: Stage, cfg: Config, tables: list[TableVersion]) -> None:
    """Append the rows of `tables` for (run, stage) in one commit, once (a replay adds nothing).
    The pipeline records what a stage read together with what it wrote, when the stage ends: one
    commit a stage instead of two (a commit is about a second of a small run). A run killed inside
    a stage leaves no read rows for it; the run that lands its batch records what it wrote."""
    if not tables:
        return
    now = dt.datetime.now(dt.timezone.utc)
    prompt = prompt_version(stage, cfg)
    model = cfg.llm.models.get(stage.name) if stage.uses_llm else None
    rows = [(run_id, stage.name, t.table, t.role, t.version, prompt, model, now) for t in tables]
    wh.append_once(wh.spark.createDataFrame(rows, SCHEMA), LINEAGE, f"webscale-rl/lineage/{stage.name}/{run_id}")


def records(wh: Warehouse, run_ids: list[str] | None = None) -> list[dict]:
    """The lineage rows (of these runs), oldest first; [] for a warehouse without lineage."""
    if not wh.exists(LINEAGE):
        return []
    df = wh.read(LINEAGE)
    if run_ids is not None:
        if not run_ids:
            return []
        df = df.filter(F.col("run_id").isin(list(run_ids)))
    return [r.asDict() for r in df.orderBy("recorded_at", "run_id", "stage", "role", "table").collect()]
