"""ingest: raw reader rows → the `documents` table.

Gives every document a `doc_id` (the input's id, else a stable hash of its content) and rejects
what no later stage can use: records a reader could not decode (`warc_truncated`; a WARC/WET
record that is not a document, `warc_skipped`, or whose body is over the reader's cap, `too_large`,
their doc_id `<file>@<byte offset>`; a JSONL line
that is not a JSON object with a string "text" is `bad_record`, one too large to parse `too_large`,
their detail naming file and line and their doc_id `<file>:<line>`, so a rerun skips them), empty texts,
documents over `limits.max_doc_chars` (`too_large`, unless `limits.on_too_large: truncate`),
binary junk, and a second document reusing an id. Kept texts lose their control characters (NUL
and friends), have PII replaced when `pii.enabled`, and are split into `<doc_id>#<n>` chunks that
each fit one LLM call when `limits.long_document: chunk`. All of it is column expressions: a
10 MB document never reaches the driver.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from ..pii import scrub_pii
from ..readers import READ_ERROR
from .base import COUNT_PREFIX, DETAIL, REASON, Stage, StageContext, StageResult, assert_columns, first_failure

READS = ("id", "url", "text", "source", "source_format")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars")

# Control characters other than tab/newline/CR, and U+FFFD (what undecodable bytes become).
_BINARY_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F\uFFFD]"
_CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F]"
MAX_BINARY_FRACTION = 0.02
# Chunks are cut by characters from the document's mean bytes per character, with this margin
# (a mixed-script chunk can be denser than the mean); `defuse_document` still bounds the bytes.
CHUNK_MARGIN = 0.9


def content_hash(text_col) -> F.Column:
    return F.substring(F.sha2(F.coalesce(text_col, F.lit("")), 256), 1, 32)


def ingest_documents(raw: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(raw, READS, "ingest")
    limits = ctx.cfg.limits
    df = with_ids_and_measures(raw, limits.max_doc_chars, limits.on_too_large == "truncate")
    reason, detail = ingest_verdict(limits.max_doc_chars, limits.on_too_large == "reject")
    marked = cleaned(df.withColumn(REASON, reason).withColumn(DETAIL, detail), ctx)
    if limits.long_document == "chunk":
        # The runner has fitted llm.max_doc_chars to every LLM call's budget (limits.with_call_limits).
        marked = split_into_chunks(marked, ctx.cfg.llm.max_doc_chars)
    marked = marked.withColumn("n_chars", F.coalesce(F.length("text"), F.lit(0)))
    return StageResult(marked.drop("_input_chars", "_read_error", "_binary_fraction", "_id_rank", "_id_first_source"))


def with_ids_and_measures(raw: DataFrame, max_doc_chars: int, truncate: bool) -> DataFrame:
    """Documents with their doc_id (the given id, else a hash of the text), the text (cut to
    `max_doc_chars` when `truncate`) and what the rules measure; a reused id ranks its documents."""
    read_error = F.col(READ_ERROR) if READ_ERROR in raw.columns else F.lit(None).cast("string")
    input_chars = F.coalesce(F.length("text"), F.lit(0))
    text = F.col("text")
    if truncate:  # truncating first keeps every later expression off the 10 MB tail
        text = F.when(input_chars > F.lit(max_doc_chars), F.substring(text, 1, max_doc_chars)).otherwise(text)
    n_chars = F.coalesce(F.length(text), F.lit(0))
    binary_chars = F.length(text) - F.length(F.regexp_replace(text, _BINARY_CHARS, ""))
    df = raw.select(
        F.coalesce(F.trim(F.col("id").cast("string")), content_hash(F.col("text"))).alias("doc_id"),
        "url",
        text.alias("text"),
        "source",
        "source_format",
        n_chars.alias("n_chars"),
        input_chars.alias("_input_chars"),
        read_error.alias("_read_error"),
        (binary_chars / F.greatest(n_chars, F.lit(1))).alias("_binary_fraction"),
    )
    # A reused id keeps its first document (ordered by source, then text) so reruns agree.
    by_id = Window.partitionBy("doc_id").orderBy("source", content_hash(F.col("text")))
    return df.withColumn("_id_rank", F.row_number().over(by_id)).withColumn("_id_first_source", F.first("source").over(by_id))


def ingest_verdict(max_doc_chars: int, reject_too_large: bool) -> tuple[F.Column, F.Column]:
    """(REASON, DETAIL) of the first ingest rule a document breaks; a reader's error comes first."""
    text = F.col("text")
    too_large_rule = []
    if reject_too_large:
        too_large_rule = [
            (
                "too_large",
                F.col("_input_chars") > F.lit(max_doc_chars),
                F.format_string(f"n_chars=%d > limits.max_doc_chars={max_doc_chars}", F.col("_input_chars")),
            )
        ]
    reason, detail = first_failure(
        [
            # "<reason>: <detail>" from the reader, e.g. "warc_truncated: record at byte offset ..." or
            # "bad_record: /in/docs.jsonl line 7: not valid JSON (...)"; its doc_id is the reader's id.
            ("_read", F.col("_read_error").isNotNull(), F.col("_read_error")),
            ("empty_text", F.regexp_replace(F.coalesce(text, F.lit("")), r"[\s\p{Z}]", "") == "", F.lit("text is empty or whitespace")),
            *too_large_rule,
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
    reader_reason = F.split(F.col("_read_error"), ":", 2)
    reason = F.when(reason == "_read", F.trim(reader_reason[0])).otherwise(reason)
    detail = F.when(F.col("_read_error").isNotNull(), F.trim(reader_reason[1])).otherwise(detail)
    return reason, detail


def cleaned(marked: DataFrame, ctx: StageContext) -> DataFrame:
    """Kept text without control characters (and PII, when enabled), with `_count_*` columns of
    what was truncated or replaced."""
    kept = F.col(REASON).isNull()
    counters = {"truncated": kept & (F.col("_input_chars") > F.col("n_chars"))}
    # Kept text only: a few stray NULs in an otherwise good page are dropped, not sent or stored.
    clean = F.when(kept, F.regexp_replace("text", _CONTROL_CHARS, "")).otherwise(F.col("text"))
    if ctx.cfg.pii.enabled:
        clean, pii_counts = scrub_pii(clean, ctx.cfg.pii.kinds)
        counters.update({f"pii__{kind}": F.when(kept, n).otherwise(F.lit(0)) for kind, n in pii_counts.items()})
    # One select: the counts must read the text before it is replaced.
    return marked.select(
        *[clean.alias("text") if c == "text" else c for c in marked.columns if c not in (REASON, DETAIL)],
        *[F.coalesce(flag.cast("long"), F.lit(0)).alias(COUNT_PREFIX + name) for name, flag in counters.items()],
        REASON,
        DETAIL,
    )


def split_into_chunks(marked: DataFrame, bytes_per_call: int) -> DataFrame:
    """Kept documents longer than one call becomes `<doc_id>#1`, `<doc_id>#2`, ...: consecutive
    pieces of at most `bytes_per_call` UTF-8 bytes (by the document's mean bytes per character)."""
    length, octets = F.length("text"), F.octet_length("text")
    size = F.greatest(F.floor(F.lit(bytes_per_call * CHUNK_MARGIN) * length / F.greatest(octets, F.lit(1))), F.lit(1)).cast("int")
    n_pieces = F.ceil(length / size).cast("int")
    split = F.col(REASON).isNull() & (octets > F.lit(bytes_per_call))
    pieces = F.when(split, F.transform(F.sequence(F.lit(0), n_pieces - 1), lambda i: F.substr(F.col("text"), i * size + 1, size))).otherwise(
        F.array(F.col("text"))
    )
    exploded = marked.select("*", F.posexplode(pieces).alias("_piece", "_piece_text"))
    counts = [c for c in marked.columns if c.startswith(COUNT_PREFIX)]
    first = F.col("_piece") == 0
    return exploded.select(
        F.when(split, F.concat("doc_id", F.lit("#"), (F.col("_piece") + 1).cast("string"))).otherwise(F.col("doc_id")).alias("doc_id"),
        *[F.col("_piece_text").alias("text") if c == "text" else c for c in marked.columns if c != "doc_id" and c not in counts],
        # Per-document counts stay on the first piece so sums do not multiply.
        *[F.when(first, F.col(c)).otherwise(F.lit(0)).alias(c) for c in counts],
        F.when(split & first, F.lit(1)).otherwise(F.lit(0)).cast("long").alias(COUNT_PREFIX + "chunked"),
    ).select(*[c for c in marked.columns if c not in (REASON, DETAIL)], COUNT_PREFIX + "chunked", REASON, DETAIL)


STAGE = Stage(
    "ingest",
    READS,
    WRITES,
    "documents",
    ingest_documents,
    rejection_reasons=("empty_text", "binary_text", "duplicate_id", "too_large", "warc_truncated", "warc_skipped", "bad_record"),
)
