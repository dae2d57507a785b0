"""What watches a run without steering it: MLflow reporting, the LLM cost summary, the QA report and
the final Great Expectations validation. The runner calls their hooks at run and stage events;
none of them decides what a stage does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .llm.pricing import cost_summary
from .progress import fmt_seconds
from .quality.expectations import ValidationOutcome, validate_qa
from .quality.qa_report import qa_report, report_metrics
from .quality.report import DatasetRef, RunReport
from .quality.run_artifacts import log_data_docs, log_run_artifacts, log_stage_run
from .stages.base import Stage
from .summary import RunSummary, StageSummary
from .warehouse import Warehouse


@dataclass(frozen=True)
class RunStart:
    run_id: str
    inputs: list[str]
    stages: tuple[Stage, ...]
    until: str
    limit: int | None
    t0: float = 0.0  # time.monotonic() when the run began


class RunObserver:
    """Hooks of a run, called in this order: run_scope is entered, on_run_start, on_endpoint (LLM
    runs), per stage stage_scope is entered and on_stage_end called inside it, on_run_end. A scope
    sees the run's or the stage's exception when it exits. The defaults do nothing."""

    def run_scope(self) -> ContextManager[object]:
        return contextlib.nullcontext()

    def on_run_start(self, run: RunStart) -> None: ...

    def on_endpoint(self, description: str) -> None: ...

    def stage_scope(self, stage: Stage) -> ContextManager[object]:
        return contextlib.nullcontext()

    def on_stage_end(self, stage: Stage, summary: StageSummary) -> None: ...

    def on_run_end(self, summary: RunSummary) -> None: ...


class MlflowObserver(RunObserver):
    """One MLflow run per pipeline run, a nested one per stage (FAILED if the stage raises or its
    batch is quarantined): config and lineage as params, the Delta tables each stage read and wrote
    as MLflow dataset inputs with their versions, counts, tokens and cost as metrics."""

    def __init__(self, report: RunReport, cfg: Config, warehouse: Warehouse):
        self.report, self.cfg, self.warehouse = report, cfg, warehouse
        self.inputs: list[str] = []
        self.stage_report: RunReport | None = None
        self.t0 = time.monotonic()

    def run_scope(self) -> ContextManager[object]:
        self.t0 = time.monotonic()
        return self.report

    def on_run_start(self, run: RunStart) -> None:
        self.inputs = run.inputs
        params = {"run.inputs": ",".join(run.inputs), "run.from": run.stages[0].name, "run.until": run.until, "run.limit": run.limit}
        self.report.log_params({**self.cfg.flat(), **params, "run.id": run.run_id})
        self.report.log_datasets(DatasetRef(uri, "input", spark_path=uri) for uri in dict.fromkeys(run.inputs))

    def on_endpoint(self, description: str) -> None:
        self.report.log_params({"llm.endpoint": description})

    def stage_scope(self, stage: Stage) -> ContextManager[object]:
        tags = {"webscale_rl.run_id": self.report.run_name, "webscale_rl.stage": stage.name}
        self.stage_report = self.report.nested(stage.name, tags=tags)
        return self.stage_report

    def on_stage_end(self, stage: Stage, summary: StageSummary) -> None:
        s = summary
        self.report.log_stage(stage.name, s.rows_in, s.kept, s.rejected, s.elapsed_s, s.rejected_by_reason)
        if s.counts:
            self.report.log_metrics({f"{stage.name}.{k}": v for k, v in s.counts.items()})
        if s.llm:
            self.report.log_metrics({f"{stage.name}.llm.{k}": v for k, v in s.llm.items()})
        log_stage_run(self.stage_report, stage, s, self.cfg, self.inputs, self.warehouse)

    def on_run_end(self, summary: RunSummary) -> None:
        log_run_artifacts(self.report, self.warehouse, summary.run_id, summary, self.cfg)
        if summary.validation is not None:
            log_data_docs(self.report, summary.validation.data_docs)
        self.report.log_metrics({"run.elapsed_s": time.monotonic() - self.t0})
        self.report.log_dict({"stages": [s.__dict__ for s in summary.stages], "run_id": summary.run_id}, "run_summary.json")


class CostObserver(RunObserver):
    """Calls, cache hits, retries, tokens and cost of the LLM stages: printed and logged."""

    def __init__(self, cfg: Config, report: RunReport, log: Callable[[str], None]):
        self.cfg, self.report, self.log = cfg, report, log

    def on_run_end(self, summary: RunSummary) -> None:
        usage = {s.stage: s.llm for s in summary.stages if s.llm}
        if not usage:
            return
        metrics, lines = cost_summary(self.cfg, usage)
        for line in lines:
            self.log(line)
        self.report.log_metrics(metrics)


class QAReportObserver(RunObserver):
    """The data-quality report of the run's QA pairs (summary.qa_report), when it made some."""

    def __init__(self, warehouse: Warehouse, report: RunReport):
        self.warehouse, self.report = warehouse, report

    def on_run_end(self, summary: RunSummary) -> None:
        if summary.final_table != "qa" or summary.budget_stop is not None:  # a budget stop never reaches qa
            return
        tokens = sum(s.llm.get("prompt_tokens", 0.0) + s.llm.get("completion_tokens", 0.0) for s in summary.stages)
        summary.qa_report = qa_report(self.warehouse, summary.run_id, llm_tokens=tokens)
        self.report.log_metrics(report_metrics(summary.qa_report))
        self.report.log_dict(summary.qa_report, "qa_report.json")


class ValidationObserver(RunObserver):
    """Great Expectations over the whole `qa` table (summary.validation): a rerun must not have
    added a duplicate. The runner decides what a failure means (quality.on_failure)."""

    def __init__(self, cfg: Config, warehouse: Warehouse, report: RunReport, log: Callable[[str], None]):
        self.cfg, self.warehouse, self.report, self.log = cfg, warehouse, report, log

    def on_run_end(self, summary: RunSummary) -> None:
        if summary.final_table == "qa" and self.cfg.quality.enabled and summary.budget_stop is None:
            summary.validation = self.validate(summary.run_id)

    def validate(self, run_id: str) -> ValidationOutcome:
        t0 = time.monotonic()
        self.log("[validate] Great Expectations suite on 'qa'")
        qa = self.warehouse.read("qa")
        outcome = validate_qa(self.warehouse.spark, qa, self.cfg.quality, Path(self.warehouse.local_dir("_quality")), run_id)
        self.log(f"[validate] {outcome.summary()} in {fmt_seconds(time.monotonic() - t0)}; results: {outcome.results_path}")
        self.report.log_file(Path(outcome.results_path), "validation")
        self.report.log_metrics({"validation.success": 1.0 if outcome.success else 0.0})
        return outcome


def run_observers(cfg: Config, warehouse: Warehouse, run_id: str, log: Callable[[str], None]) -> tuple[RunReport, list[RunObserver]]:
    """The MLflow report of the run and the observers in the order their on_run_end must run
    (the QA report and validation before MLflow logs the artifacts that include them)."""
    report = RunReport(cfg.mlflow, Path(warehouse.local_dir()), run_name=run_id, tags={"webscale_rl.run_id": run_id}, secret_env_vars=(cfg.llm.api_key_env,))
    observers = [
        CostObserver(cfg, report, log),
        QAReportObserver(warehouse, report),
        ValidationObserver(cfg, warehouse, report, log),
        MlflowObserver(report, cfg, warehouse),
    ]
    return report, observers
