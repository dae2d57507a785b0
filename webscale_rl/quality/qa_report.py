"""The data-quality report of one run's QA: what a user reads before deciding to train on it.
Kept pairs per kept document, rejection reasons per stage, how many answers are found in their
document (verbatim, or by value for numbers), and the domain / persona / answer-type mix."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..rules.words import contains_words
from ..warehouse import REJECTIONS, Warehouse


def _numbers(col):
    """Numbers in a text with thousands separators removed: '2,850 km' → ['2850']."""
    return F.filter(F.split(F.regexp_replace(F.regexp_replace(col, r"(\d),(\d{3})", "$1$2"), r"[^0-9.]+", " "), " "), lambda t: t.rlike(r"^\d"))


def qa_report(warehouse: Warehouse, run_id: str, final_table: str = "qa", top: int = 10) -> dict:
    this_run = F.col("run_id") == run_id
    qa: DataFrame = warehouse.read(final_table).filter(this_run)
    report: dict = {"run_id": run_id}
    verbatim = contains_words(F.col("pretrain_text"), F.col("answer"))
    answer_numbers = _numbers(F.col("answer"))
    by_value = (F.size(answer_numbers) > 0) & (F.size(F.array_except(answer_numbers, _numbers(F.col("pretrain_text")))) == 0)
    row = qa.agg(
        F.count("*").alias("pairs"),
        F.countDistinct("doc_id").alias("docs"),
        F.sum(verbatim.cast("int")).alias("verbatim"),
        F.sum((verbatim | by_value).cast("int")).alias("found"),
    ).collect()[0]
    pairs, docs = int(row["pairs"]), int(row["docs"])
    report.update(
        {
            "pairs": pairs,
            "kept_documents": docs,
            "pairs_per_kept_document": round(pairs / docs, 3) if docs else 0.0,
            "answer_verbatim_share": round((row["verbatim"] or 0) / pairs, 3) if pairs else 0.0,
            "answer_verbatim_or_by_value_share": round((row["found"] or 0) / pairs, 3) if pairs else 0.0,
        }
    )

    def counts(col: str) -> dict[str, int]:
        if col not in qa.columns:
            return {}
        rows = qa.groupBy(col).count().orderBy(F.desc("count"), col).limit(top).collect()
        return {str(r[col]): int(r["count"]) for r in rows}

    report["domains"] = counts("domain")
    report["answer_types"] = counts("answer_type")
    report["top_personas"] = counts("persona")
    if warehouse.exists(REJECTIONS):
        rej = warehouse.read(REJECTIONS).filter(this_run)
        rows = rej.groupBy("stage", "reason").count().orderBy("stage", F.desc("count")).collect()
        report["rejections"] = {f"{r['stage']}/{r['reason']}": int(r["count"]) for r in rows}
    else:
        report["rejections"] = {}
    return report


def format_qa_report(report: dict) -> list[str]:
    lines = [
        f"  QA pairs {report['pairs']} from {report['kept_documents']} document(s): {report['pairs_per_kept_document']} per kept document",
        f"  answers found in their document: {report['answer_verbatim_share']:.0%} verbatim, "
        f"{report['answer_verbatim_or_by_value_share']:.0%} verbatim or by value",
    ]
    if not report["pairs"]:
        lines.append("  no QA pair survived this run: the rejections below say why")
    for key, title in (("domains", "domains"), ("answer_types", "answer types"), ("rejections", "rejections")):
        if report.get(key):
            lines.append(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in report[key].items()))
    return lines


def report_metrics(report: dict) -> dict[str, float]:
    keys = ("pairs", "kept_documents", "pairs_per_kept_document", "answer_verbatim_share", "answer_verbatim_or_by_value_share")
    return {f"qa.{k}": float(report[k]) for k in keys}
