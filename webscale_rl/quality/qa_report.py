"""The data-quality report of one run's QA: what a user reads before deciding to train on it.
Kept pairs per kept document, rejection reasons per stage, how many answers are found in their
document (verbatim, or by value for numbers), the share verified by answering (stages/verify.py)
and answerable closed-book, LLM tokens per kept pair, and the domain / persona / answer-type mix."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..rules.words import contains_words
from ..warehouse import REJECTIONS, Warehouse


def _numbers(col):
    """Numbers in a text with thousands separators removed: '2,850 km' → ['2850']."""
    return F.filter(F.split(F.regexp_replace(F.regexp_replace(col, r"(\d),(\d{3})", "$1$2"), r"[^0-9.]+", " "), " "), lambda t: t.rlike(r"^\d"))


def _share(part, whole) -> float:
    return round((part or 0) / whole, 3) if whole else 0.0


def qa_report(warehouse: Warehouse, run_id: str, final_table: str = "qa", top: int = 10, llm_tokens: float | None = None) -> dict:
    """`llm_tokens`: the run's LLM tokens (prompt + completion, every stage), for tokens per kept pair."""
    this_run = F.col("run_id") == run_id
    qa: DataFrame = warehouse.read(final_table).filter(this_run)
    report: dict = {"run_id": run_id}
    verbatim = contains_words(F.col("pretrain_text"), F.col("answer"))
    answer_numbers = _numbers(F.col("answer"))
    by_value = (F.size(answer_numbers) > 0) & (F.size(F.array_except(answer_numbers, _numbers(F.col("pretrain_text")))) == 0)
    optional = lambda c, value: value if c in qa.columns else F.lit(None)  # noqa: E731 (pairs landed before verify existed)
    row = qa.agg(
        F.count("*").alias("pairs"),
        F.countDistinct("doc_id").alias("docs"),
        F.sum(verbatim.cast("int")).alias("verbatim"),
        F.sum((verbatim | by_value).cast("int")).alias("found"),
        F.count(optional("verified_answer", F.col("verified_answer"))).alias("verified"),
        F.count(optional("closed_book_correct", F.col("closed_book_correct"))).alias("closed_book_asked"),
        F.sum(optional("closed_book_correct", F.col("closed_book_correct").cast("int"))).alias("closed_book_correct"),
    ).collect()[0]
    pairs, docs = int(row["pairs"]), int(row["docs"])
    report.update(
        {
            "pairs": pairs,
            "kept_documents": docs,
            "pairs_per_kept_document": round(pairs / docs, 3) if docs else 0.0,
            "answer_verbatim_share": _share(row["verbatim"], pairs),
            "answer_verbatim_or_by_value_share": _share(row["found"], pairs),
            # Kept pairs whose answer a reader reproduced from the document (0 with verify off).
            "verified_share": _share(row["verified"], pairs),
            # Of the pairs asked closed-book, those answered right without the document: easy for RL.
            "closed_book_share": _share(row["closed_book_correct"], int(row["closed_book_asked"])),
            "tokens_per_kept_pair": round(llm_tokens / pairs, 1) if llm_tokens is not None and pairs else None,
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
        f"  verified by answering from the document: {report['verified_share']:.0%}; answered right closed-book: {report['closed_book_share']:.0%}"
        + (f"; LLM tokens per kept pair: {report['tokens_per_kept_pair']:,.0f}" if report.get("tokens_per_kept_pair") is not None else ""),
    ]
    if not report["pairs"]:
        lines.append("  no QA pair survived this run: the rejections below say why")
    for key, title in (("domains", "domains"), ("answer_types", "answer types"), ("rejections", "rejections")):
        if report.get(key):
            lines.append(f"  {title}: " + ", ".join(f"{k}={v}" for k, v in report[key].items()))
    return lines


def report_metrics(report: dict) -> dict[str, float]:
    keys = (
        "pairs", "kept_documents", "pairs_per_kept_document", "answer_verbatim_share", "answer_verbatim_or_by_value_share",
        "verified_share", "closed_book_share", "tokens_per_kept_pair",
    )  # fmt: skip
    return {f"qa.{k}": float(report[k]) for k in keys if report.get(k) is not None}
