"""What a run reports: one StageSummary per stage run, and the RunSummary of the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .budget import BudgetStop
    from .quality.expectations import ValidationOutcome
    from .quality.gates import GateOutcome
    from .quality.report import RunReport
    from .warehouse import Warehouse


class PipelineError(RuntimeError):
    pass


@dataclass
class StageSummary:
    """One stage's batch as landed (or quarantined): rows in, kept, rejected per reason, the
    table versions written and read, LLM usage, the `_count_*` totals and the landing gate's outcome."""

    stage: str
    table: str
    rows_in: int
    kept: int
    rejected: int
    elapsed_s: float
    rejected_by_reason: dict[str, int]
    table_version: int | None
    llm: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # the stage's `_count_*` totals (PII replaced, ...)
    gate: GateOutcome | None = None  # not ok → the batch is in quarantine
    rejections_version: int | None = None
    read: dict[str, int | None] = field(default_factory=dict)  # upstream table → the version read (ingest: input path → None)

    @property
    def quarantined(self) -> bool:
        return self.gate is not None and not self.gate.ok


@dataclass
class RunSummary:
    run_id: str
    warehouse: Warehouse
    stages: list[StageSummary] = field(default_factory=list)
    final_table: str | None = None
    validation: ValidationOutcome | None = None
    mlflow: RunReport | None = None
    qa_report: dict | None = None
    elapsed_s: float = 0.0
    budget_stop: BudgetStop | None = None  # the run stopped for llm.max_cost_usd (the CLI exits 3)

    @property
    def counts(self) -> dict[str, int]:
        return {s.stage: s.kept for s in self.stages}
