"""The `dedup_signatures` table: the fingerprint of every document dedup kept, so a later run hashes
only its new documents and matches them against these.

A row per kept document: doc_id, text_hash, the LSH band hashes (`bands`), the verification column
the settings need (`shingles` for Jaccard, `signature` for MinHash agreement; the other is null),
`params` (the settings that made them) and the run that landed them. Rows are appended by the
landing of dedup's batch, right after its kept rows and with the same idempotent batch id
(`stages.base.BesideTable`), so the table is never ahead of `deduped`; a run killed between the two
commits left its batch staged, and the next run lands the rest before dedup runs.

Only rows whose `params` equal the current settings are read: changed settings (normalisation,
n-gram, bands, rows, seed, verification) make every kept document lack a row, and the catch-up
(`dedup.catch_up_signatures`) builds them once from `deduped`, as it does for a warehouse older
than this table. Rows of other settings stay (history) and are never read.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import DedupConfig

SIGNATURES = "dedup_signatures"
# In dedup's marked output: a kept document's fingerprint and its settings, which the landing moves
# to SIGNATURES (internal columns: they never reach `deduped`).
PREFIX = "_signature_"
STORED = ("bands", "shingles", "signature")
STORED_TYPES = {"bands": T.ArrayType(T.LongType()), "shingles": T.ArrayType(T.IntegerType()), "signature": T.ArrayType(T.LongType())}


def params(cfg: DedupConfig) -> str:
    """The settings a stored fingerprint depends on, as one readable string (the threshold and
    max_iterations only judge fingerprints, so they are not part of it)."""
    fz = cfg.fuzzy
    parts = [f"lowercase={cfg.lowercase}", f"strip_punctuation={cfg.strip_punctuation}", f"strip_digits={cfg.strip_digits}"]
    if fz.enabled:
        parts += [f"ngram={fz.ngram}", f"bands={fz.bands}", f"rows={fz.rows}", f"seed={fz.seed}", f"verify={fz.verify}"]
    else:
        parts.append("fuzzy=off")
    return "v1;" + ";".join(parts)


def verification_column(cfg: DedupConfig) -> str | None:
    fz = cfg.fuzzy
    return {"jaccard": "shingles", "signature": "signature"}.get(fz.verify) if fz.enabled else None


def fingerprint_columns(cfg: DedupConfig) -> list[str]:
    """The columns of a fingerprint besides doc_id and text_hash, as the fingerprint pass makes them."""
    if not cfg.fuzzy.enabled:
        return []
    verify = verification_column(cfg)
    return ["bands", *([verify] if verify else [])]


def with_signature_columns(marked: DataFrame, fingerprints: DataFrame, kept: F.Column, cfg: DedupConfig) -> DataFrame:
    """`marked` plus the internal signature columns: the kept documents' fingerprints (null for
    rejected rows, so the staged batch carries only what will land)."""
    columns = fingerprint_columns(cfg)
    prints = fingerprints.select("doc_id", *[F.col(c).alias(PREFIX + c) for c in columns])
    out = marked.join(prints, "doc_id", "left") if columns else marked
    out = out.withColumn(PREFIX + "params", F.lit(params(cfg)))
    return out.select(*[F.when(kept, F.col(c)).alias(c) if c.startswith(PREFIX) else F.col(c) for c in out.columns])


def landed_rows(kept: DataFrame, run_id: str) -> DataFrame:
    """The SIGNATURES rows of a landed batch's kept rows (its marked frame)."""
    columns = [F.col(PREFIX + c).alias(c) if PREFIX + c in kept.columns else F.lit(None).cast(STORED_TYPES[c]).alias(c) for c in STORED]
    return kept.select(
        F.col("doc_id").cast("string").alias("doc_id"), "text_hash", *columns, F.col(PREFIX + "params").alias("params"), F.lit(run_id).alias("run_id")
    )


def table_rows(fingerprints: DataFrame, cfg: DedupConfig, run_id: str) -> DataFrame:
    """SIGNATURES rows of a fingerprint frame (the catch-up's)."""
    present = fingerprint_columns(cfg)
    columns = [F.col(c) if c in present else F.lit(None).cast(STORED_TYPES[c]).alias(c) for c in STORED]
    return fingerprints.select(
        F.col("doc_id").cast("string").alias("doc_id"), "text_hash", *columns, F.lit(params(cfg)).alias("params"), F.lit(run_id).alias("run_id")
    )


def stored(table: DataFrame, cfg: DedupConfig) -> DataFrame:
    """The stored fingerprints made with the current settings, in the fingerprint pass's columns."""
    return table.filter(F.col("params") == params(cfg)).select("doc_id", "text_hash", *fingerprint_columns(cfg))


def relevant(new: DataFrame, kept: DataFrame, cfg: DedupConfig) -> DataFrame:
    """The stored fingerprints `kept` that can decide a new document of `new`: the same text_hash,
    or (near dedup) a shared LSH bucket. Every kept member of a bucket a new document falls in is
    there, so the bucket's star edges are those of a run over all of them; buckets of kept documents
    alone are not looked at (their members were judged when they came)."""
    ids = kept.join(new.select("text_hash").filter(F.col("text_hash").isNotNull()).distinct(), "text_hash", "left_semi").select("doc_id")
    if cfg.fuzzy.enabled:
        buckets = new.filter(F.col("bands").isNotNull()).select(F.posexplode("bands").alias("band", "band_hash")).distinct()
        kept_buckets = kept.filter(F.col("bands").isNotNull()).select("doc_id", F.posexplode("bands").alias("band", "band_hash"))
        ids = ids.union(kept_buckets.join(buckets, ["band", "band_hash"], "left_semi").select("doc_id"))
    return kept.join(ids.distinct(), "doc_id", "left_semi")
