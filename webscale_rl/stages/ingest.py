"""ingest: raw reader rows → the `documents` table.

Gives every document a `doc_id` (the input's id, else a stable hash of its content) and rejects
what no later stage can use: empty texts, binary junk, and a second document reusing an id.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns, first_failure

READS = ("id", "url", "text", "source", "source_format")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars")

# Control characters other than tab/newline/CR, and U+FFFD (what undecodable bytes become).
_BINARY_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\uFFFD]"
MAX_BINARY_FRACTION = 0.02


def content_hash(text_col) -> F.Column:
    return F.substring(F.sha2(F.coalesce(text_col, F.lit("")), 256), 1, 32)


def ingest_documents(raw: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(raw, READS, "ingest")
    text = F.col("text")
    n_chars = F.coalesce(F.length(text), F.lit(0))
    binary_chars = F.length(text) - F.length(F.regexp_replace(text, _BINARY_CHARS, ""))
    df = raw.select(
        F.coalesce(F.trim(F.col("id").cast("string")), content_hash(text)).alias("doc_id"),
        "url",
        "text",
        "source",
        "source_format",
        n_chars.alias("n_chars"),
        (binary_chars / F.greatest(n_chars, F.lit(1))).alias("_binary_fraction"),
    )
    # A reused id keeps its first document (ordered by source, then text) so reruns agree.
    by_id = Window.partitionBy("doc_id").orderBy("source", content_hash(text))
    df = df.withColumn("_id_rank", F.row_number().over(by_id)).withColumn(
        "_id_first_source", F.first("source").over(by_id)
    )
    reason, detail = first_failure(
        [
            ("empty_text", F.regexp_replace(F.coalesce(text, F.lit("")), r"[\s\p{Z}]", "") == "", F.lit("text is empty or whitespace")),
            (
                "binary_text",
                F.col("_binary_fraction") > MAX_BINARY_FRACTION,
                F.format_string("binary/undecodable character fraction %.3f > %.2f", F.col("_binary_fraction"), F.lit(MAX_BINARY_FRACTION)),
            ),
            (
                "duplicate_id",
                F.col("_id_rank") > 1,
                F.concat(F.lit("id already used by a document from "), F.col("_id_first_source")),
            ),
        ]
    )
    marked = df.withColumn(REASON, reason).withColumn(DETAIL, detail).drop("_binary_fraction", "_id_rank", "_id_first_source")
    return StageResult(marked)


STAGE = Stage("ingest", READS, WRITES, "documents", ingest_documents)
