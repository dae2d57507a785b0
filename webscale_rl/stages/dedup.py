"""dedup: exact duplicates on normalised text (case, punctuation, digits, whitespace as configured).

One document per group survives, the one with the smallest doc_id, so the choice is the same on
every run; the others are rejected as `exact_duplicate` with the survivor named in the detail.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from ..config import DedupConfig
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns

READS = ("doc_id", "text")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars", "n_words", "text_hash")


def normalized_text(text: Column, cfg: DedupConfig) -> Column:
    out = text
    if cfg.lowercase:
        out = F.lower(out)
    if cfg.strip_punctuation:
        out = F.regexp_replace(out, r"[\p{P}\p{S}]", " ")
    if cfg.strip_digits:
        out = F.regexp_replace(out, r"\p{N}", "")
    return F.trim(F.regexp_replace(out, r"\s+", " "))


def dedup_exact(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "dedup")
    df = docs.withColumn("text_hash", F.sha2(normalized_text(F.col("text"), ctx.cfg.dedup), 256))
    # Rows an earlier run already kept (flagged `_prior` by the pipeline on incremental runs) win,
    # so a new copy of a kept document is the duplicate, never the old one.
    order = [F.col("_prior").desc(), "doc_id"] if "_prior" in docs.columns else ["doc_id"]
    group = Window.partitionBy("text_hash").orderBy(*order)
    df = df.withColumn("_rank", F.row_number().over(group)).withColumn("_survivor", F.first("doc_id").over(group))
    duplicate = F.col("_rank") > 1
    marked = (
        df.withColumn(REASON, F.when(duplicate, F.lit("exact_duplicate")))
        .withColumn(DETAIL, F.when(duplicate, F.concat(F.lit("duplicate_of="), F.col("_survivor"))))
        .drop("_rank", "_survivor")
    )
    return StageResult(marked)


STAGE = Stage("dedup", READS, WRITES, "deduped", dedup_exact)
