"""What the MLflow runs hold besides the config: per stage (nested run) the model, prompt version,
lineage (inputs and the Delta table versions read and written), row counts, pass rates, tokens,
cost and speed; per pipeline run (parent) the funnel, domain / persona / answer-length charts, a
sample of QA rows as an MLflow table, the gate results and the Great Expectations Data Docs.

Charts are matplotlib figures (Agg backend, no display needed) built from small aggregates.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from ..lineage import prompt_version
from ..warehouse import REJECTIONS, Warehouse
from .report import DatasetRef

if TYPE_CHECKING:
    from ..config import Config
    from ..stages.base import Stage
    from ..summary import RunSummary, StageSummary
    from .report import RunReport


def stage_params(stage: Stage, cfg: Config, inputs: list[str], summary: StageSummary) -> dict[str, Any]:
    params: dict[str, Any] = {"stage": stage.name, "table": stage.table, "reads": ",".join(stage.reads), "writes": ",".join(stage.writes)}
    if stage.uses_llm:
        params["model"] = cfg.llm.models.get(stage.name)
        params["prompt_version"] = prompt_version(stage, cfg)
    if stage.name == "ingest":
        params["lineage.read.inputs"] = ",".join(inputs)
    params.update({f"lineage.read.{t}": v for t, v in summary.read.items() if v is not None})  # the version the stage read (pinned)
    if summary.table_version is not None:
        params[f"lineage.written.{stage.table}"] = summary.table_version
    if summary.rejections_version is not None:
        params[f"lineage.written.{REJECTIONS}"] = summary.rejections_version
    return params


def stage_metrics(stage: Stage, summary: StageSummary, cfg: Config) -> dict[str, float]:
    m: dict[str, float] = {
        "rows_in": summary.rows_in,
        "rows_out": summary.kept,
        "rows_rejected": summary.rejected,
        "pass_rate": summary.kept / summary.rows_in if summary.rows_in else 0.0,
        "elapsed_s": summary.elapsed_s,
        "rows_per_s": summary.rows_in / summary.elapsed_s if summary.elapsed_s > 0 else 0.0,
    }
    for reason, n in summary.rejected_by_reason.items():
        m[f"rejected.{reason}"] = n  # RunReport.log_metrics sanitizes the name
    if summary.llm:
        m.update({f"llm.{k}": v for k, v in summary.llm.items()})
        m["tokens"] = summary.llm.get("prompt_tokens", 0) + summary.llm.get("completion_tokens", 0)
        from ..llm.pricing import cached_share, usage_cost_usd  # one price list: llm.prices

        m["llm.cached_prompt_share"] = cached_share(summary.llm)
        cost = usage_cost_usd(cfg, stage.name, summary.llm)
        if cost is not None:
            m["cost_usd"] = cost
    gate = summary.gate
    if gate is not None:
        m["gate.pass_rate"] = gate.pass_rate
        m["gate.critical_failures"] = len(gate.critical_failures)
        m["gate.warnings"] = len(gate.warnings)
        m["gate.passed"] = 1.0 if gate.ok else 0.0
    return m


def stage_datasets(warehouse: Warehouse, summary: StageSummary) -> list[DatasetRef]:
    """What the stage read (the upstream table at the version it read, or the input paths) and the
    tables its batch landed in at the versions it made."""

    def table(name: str, version: int, context: str) -> DatasetRef:
        if warehouse.table_name(name):
            return DatasetRef(name, context, version, delta_table=warehouse.where(name))
        return DatasetRef(name, context, version, delta_path=warehouse.path(name))

    refs = [table(t, v, "read") if v is not None else DatasetRef(t, "input", spark_path=t) for t, v in summary.read.items()]
    if summary.table_version is not None:
        refs.append(table(summary.table, summary.table_version, "wrote"))
    if summary.rejections_version is not None:
        refs.append(table(REJECTIONS, summary.rejections_version, "wrote"))
    return refs


def log_stage_run(stage_report: RunReport, stage: Stage, summary: StageSummary, cfg: Config, inputs: list[str], warehouse: Warehouse) -> None:
    if not stage_report.enabled:
        return
    stage_report.log_params(stage_params(stage, cfg, inputs, summary))
    stage_report.log_datasets(stage_datasets(warehouse, summary))
    stage_report.log_metrics(stage_metrics(stage, summary, cfg))
    if summary.gate is not None and summary.gate.results_path is not None:
        stage_report.log_file(Path(summary.gate.results_path), "gate")


def _figure(title: str, width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster or in CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_title(title)
    return fig, ax


def funnel_figure(stages: list[StageSummary]):
    fig, ax = _figure("Funnel: rows kept per stage", height=0.45 * len(stages) + 1.5)
    names = [f"{s.stage} → {s.table}" for s in stages][::-1]
    kept = [s.kept for s in stages][::-1]
    rejected = [s.rejected for s in stages][::-1]
    ax.barh(names, kept, color="#2b7bba", label="kept")
    ax.barh(names, rejected, left=kept, color="#e0a040", label="rejected")
    for i, (k, r) in enumerate(zip(kept, rejected)):
        ax.text(k + r, i, f" {k} / {k + r}", va="center", fontsize=8)
    ax.set_xlabel("rows")
    ax.set_xlim(0, max([k + r for k, r in zip(kept, rejected)] + [1]) * 1.2)  # room for the labels
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def _bar_figure(title: str, counts: list[tuple[str, int]]):
    fig, ax = _figure(title, height=0.35 * max(len(counts), 1) + 1.5)
    labels = [str(k)[:40] for k, _ in counts][::-1]
    ax.barh(labels, [v for _, v in counts][::-1], color="#4c9a5a")
    ax.set_xlabel("rows")
    fig.tight_layout()
    return fig


def log_run_artifacts(report: RunReport, warehouse: Warehouse, run_id: str, summary: RunSummary, cfg: Config) -> None:
    """Charts, the QA sample, lineage, gate results and Data Docs on the parent run."""
    if not report.enabled:
        return
    report.log_params({f"lineage.written.{s.table}": s.table_version for s in summary.stages if s.table_version is not None})
    if summary.stages:
        report.log_figure(funnel_figure(summary.stages), "plots/funnel.png")
    final = summary.final_table
    if final and warehouse.exists(final):
        log_final_table(report, warehouse.read(final).filter(F.col("run_id") == run_id), final, cfg)
    gates_dir = Path(warehouse.local_dir("_quality", "gates", run_id))
    if gates_dir.is_dir():
        report.log_file(gates_dir, "quality")


def log_final_table(report: RunReport, df: Any, final: str, cfg: Config) -> None:
    """Domain, persona and answer-length charts and a sample of rows of this run's final table."""
    cols = set(df.columns)
    if "domain" in cols:
        counts = [(r[0], int(r[1])) for r in df.groupBy("domain").count().orderBy(F.desc("count")).collect()]
        report.log_figure(_bar_figure(f"Domains ({final})", counts), "plots/domains.png")
    persona = "persona" if "persona" in cols else None
    if persona is None and "personas" in cols:
        df_p = df.select(F.explode("personas").alias("persona"))
    else:
        df_p = df if persona else None
    if df_p is not None:
        counts = [(r[0], int(r[1])) for r in df_p.groupBy("persona").count().orderBy(F.desc("count")).limit(15).collect()]
        report.log_figure(_bar_figure(f"Top personas ({final})", counts), "plots/personas.png")
    if "answer" in cols:
        lengths = [int(r[0]) for r in df.select(F.size(F.split(F.trim("answer"), r"\s+")).alias("n")).collect()]
        fig, ax = _figure(f"Answer length in words ({final}, {len(lengths)} pairs)")
        ax.hist(lengths, bins=range(0, max(lengths + [1]) + 2), color="#8a5cb8")
        ax.set_xlabel("words")
        ax.set_ylabel("pairs")
        fig.tight_layout()
        report.log_figure(fig, "plots/answer_length.png")
        keep = [c for c in ("qa_id", "doc_id", "domain", "persona", "question", "answer", "answer_type", "pretrain_text") if c in cols]
        sample = df.select(*keep).orderBy("qa_id").limit(int(cfg.mlflow.sample_qa_rows)).toPandas()
        if "pretrain_text" in sample.columns:
            sample["pretrain_text"] = sample["pretrain_text"].str.slice(0, 500)
        report.log_table(sample, "qa_sample.json")


def log_data_docs(report: RunReport, data_docs_index: Path | None) -> None:
    if report.enabled and data_docs_index is not None and Path(data_docs_index).is_file():
        report.log_file(Path(data_docs_index).parent, "quality/data_docs")
