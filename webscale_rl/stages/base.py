"""The stage contract.

A stage is a pure function of DataFrames: it reads named columns and returns a StageResult whose
`marked` DataFrame holds every output row plus two columns, REASON and DETAIL. REASON is null for
kept rows and names the rule for rejected ones. `kept` and `rejected` are views of the same
`marked` frame, so the pipeline materialises a stage once and then writes both halves — and checks
in one place that nothing vanished.

Everything the runner and the quality suites need to know about a stage is declared on its `Stage`
object (columns read and written, the key of a done input row, whether it needs rows landed
earlier, how it turns input rows into work items, its rejection reasons, whether it calls the LLM); no list elsewhere is
keyed by stage name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ..config import Config
from ..summary import PipelineError

if TYPE_CHECKING:
    from ..budget import Budget
    from ..warehouse import Warehouse

REASON = "_reject_reason"
DETAIL = "_reject_detail"
# Optional in `marked`: the kept document a rejected duplicate repeats (lands in rejections.duplicate_of).
DUPLICATE_OF = "_duplicate_of"
# A stage may add integer columns `_count_<name>` to `marked`; the pipeline sums them after
# materialisation and reports `<stage>.<name>` ("__" in a name becomes "."): e.g. PII replaced.
COUNT_PREFIX = "_count_"


@dataclass
class StageContext:
    cfg: Config
    run_id: str
    # Set by the pipeline for LLM stages: where the model is and how to reach it.
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    progress_dir: str | None = None
    # The run's warehouse: LLM stages keep their response cache there.
    warehouse: Warehouse | None = None
    log: Callable[[str], None] = print
    # The run's spend against llm.max_cost_usd (None: no budget); the runner checks it between slices.
    budget: Budget | None = None


@dataclass
class StageResult:
    marked: DataFrame
    # Tokens and call counts of LLM stages, filled by the stage after materialisation.
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> DataFrame:
        internal = [c for c in self.marked.columns if c.startswith("_")]
        return self.marked.filter(F.col(REASON).isNull()).drop(*internal)

    def rejected(self, stage: str, run_id: str) -> DataFrame:
        cols = self.marked.columns
        qa_id = F.col("qa_id") if "qa_id" in cols else F.lit(None)
        duplicate_of = F.col(DUPLICATE_OF) if DUPLICATE_OF in cols else F.lit(None)
        return self.marked.filter(F.col(REASON).isNotNull()).select(
            F.col("doc_id").cast("string").alias("doc_id"),
            qa_id.cast("string").alias("qa_id"),
            F.lit(stage).alias("stage"),
            F.col(REASON).alias("reason"),
            F.col(DETAIL).cast("string").alias("detail"),
            F.lit(run_id).alias("run_id"),
            duplicate_of.cast("string").alias("duplicate_of"),
        )


@dataclass(frozen=True)
class BesideTable:
    """Rows a stage derives from each row it keeps and keeps in a table of their own, so a later
    run reads them instead of recomputing them (dedup: the MinHash signatures of kept documents).

    `rows(kept, run_id)` selects them from a landed batch's kept rows (the marked frame, internal
    columns included); the landing appends them right after the kept rows, with the same
    idempotent batch id, so a run killed between the two commits leaves the batch staged and the
    next run lands the rest. `catch_up(warehouse, ctx)` runs before the stage: it makes the rows
    the table lacks for rows the stage's table has (a warehouse older than the table, changed
    settings) and drops rows of documents the stage's table does not hold."""

    name: str
    rows: Callable[[DataFrame, str], DataFrame]
    catch_up: Callable[[Warehouse, StageContext], None]


class ContractError(PipelineError):
    """A stage got or made a frame without the columns its contract declares."""


@dataclass(frozen=True)
class Stage:
    """A stage as data: its name, the table it lands, and its contract.

    reads: columns the upstream frame must have; writes: columns every output row has (kept rows
    land them in `table`). input_key: the columns that say an input row is handled (kept or
    rejected), so a rerun skips it. needs_landed_rows: the stage judges new rows against the rows
    earlier runs kept (dedup: a copy of last week's document is still a copy). work_items: turns the
    upstream rows into the stage's items before the runner drops the items some run handled
    (generate: one item per persona, keyed by its qa_id, so a persona whose call failed transiently
    is retried while the document's other pairs stay); every item gives one output row.
    rejection_reasons: regex alternatives of the reasons it gives. beside: a table of rows derived
    from its kept rows, landed with them (`BesideTable`). document: the column whose text an LLM
    stage's call carries (its worst-case cost under a budget). slice_key: the columns an LLM stage's
    slices are cut by (default input_key); a stage whose rule compares rows of one document with
    each other (check: one pair per fact) slices by doc_id, so those rows always meet in one slice.
    The expectation suite of its kept rows
    is `quality.suites.table_suites(q)[stage.table]`."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    table: str
    run: Callable[[DataFrame, StageContext], StageResult]
    uses_llm: bool = False
    input_key: tuple[str, ...] = ("doc_id",)
    needs_landed_rows: bool = False
    work_items: Callable[[DataFrame, StageContext], DataFrame] | None = None
    rejection_reasons: tuple[str, ...] = ()
    beside: BesideTable | None = None
    document: str = "text"
    slice_key: tuple[str, ...] | None = None
    # Model calls per item at most (verify: from the document, then closed-book); the budget's worst case.
    calls_per_item: int = 1
    # An LLM stage's prompt version under a config, as its rows record it (lineage records the same).
    prompt_version: Callable[[Config], str] | None = None

    @property
    def reason_pattern(self) -> str:
        """A regex matching every rejection reason of the stage (any reason if none is declared)."""
        return "|".join(self.rejection_reasons) or ".+"

    def check_reads(self, upstream: DataFrame) -> None:
        _require(upstream, self.reads, f"stage '{self.name}' reads column(s) {{missing}}, which its input lacks")

    def check_writes(self, marked: DataFrame) -> None:
        _require(marked, self.writes, f"stage '{self.name}' declares it writes column(s) {{missing}}, which its output lacks")


def _require(df: DataFrame, needed: tuple[str, ...], message: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ContractError(message.format(missing=", ".join(missing)) + f" (columns: {', '.join(df.columns)})")


def first_failure(rules: list[tuple[str, Column, Column]]) -> tuple[Column, Column]:
    """rules: (reason, failed?, detail) in order → (REASON, DETAIL) of the first rule that fails."""
    reason = F.lit(None).cast("string")
    detail = F.lit(None).cast("string")
    for name, failed, text in reversed(rules):
        reason = F.when(failed, F.lit(name)).otherwise(reason)
        detail = F.when(failed, text).otherwise(detail)
    return reason, detail


def batch_totals(marked: DataFrame) -> tuple[dict[str | None, int], dict[str, int]]:
    """Rows per rejection reason (None: kept) and totals of the `_count_*` columns of a materialised
    `marked` frame, in one pass."""
    columns = [c for c in marked.columns if c.startswith(COUNT_PREFIX)]
    rows = marked.groupBy(REASON).agg(F.count(F.lit(1)).alias("_rows"), *[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in columns]).collect()
    reasons = {r[REASON]: int(r["_rows"]) for r in rows}
    counts = {c[len(COUNT_PREFIX) :].replace("__", "."): sum(int(r[c]) for r in rows) for c in columns}
    return reasons, counts


def assert_columns(df: DataFrame, needed: tuple[str, ...], stage: str) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"stage '{stage}' needs column(s) {missing}; got {df.columns}")
