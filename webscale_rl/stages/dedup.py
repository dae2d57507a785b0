"""dedup: exact duplicates on normalised text, then near duplicates by MinHash LSH.

Exact: documents whose normalised text (case, punctuation, digits, whitespace as configured) has the
same SHA-256 form a group; the smallest doc_id survives, the others are `exact_duplicate`.

Near: MinHash signatures of word n-gram shingles (`minhash`), LSH bands; inside a bucket every member
is linked to the bucket's smallest doc_id (a star: edges grow with members, never with their square,
and a bucket is an aggregation, so a huge bucket is a long task, not a big one); a candidate edge is
kept when its shingle Jaccard (or signature agreement) reaches the threshold; connected components
of the kept edges by iterative min-label propagation with pointer jumping, so A~B, B~C collapse to
one group. The smallest doc_id of a component survives; the others are `near_duplicate`.

Either way the survivor is named in `duplicate_of` (and the detail), and it does not depend on the
run or on partitioning. No text reaches the driver; only counts do (to stop the propagation).
"""

from __future__ import annotations

from functools import partial

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import DedupConfig, FuzzyDedupConfig
from . import minhash
from .base import DETAIL, DUPLICATE_OF, REASON, Stage, StageContext, StageResult, assert_columns

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


# Set by the pipeline on incremental runs: rows an earlier run already kept. They enter the stage
# only to be judged against, and they win, so a new copy of a kept document is the duplicate.
PRIOR = "_prior"


def survivor_order(df: DataFrame) -> Column:
    """Orders candidates for survival: rows kept by an earlier run first, then the smallest doc_id."""
    prior = F.coalesce(F.col(PRIOR), F.lit(False)) if PRIOR in df.columns else F.lit(False)
    return F.struct((~prior).alias("new"), F.col("doc_id").alias("doc_id"))


def exact_survivors(df: DataFrame) -> DataFrame:
    """doc_id → survivor of its text_hash group (see `survivor_order`), by aggregation and join."""
    first = df.groupBy("text_hash").agg(F.min(survivor_order(df)).getField("doc_id").alias("_survivor"))
    return df.join(first, "text_hash").select("doc_id", "_survivor")


def candidate_edges(signed: DataFrame) -> DataFrame:
    """(src, dst): src shares an LSH bucket with dst, the bucket's smallest doc_id."""
    buckets = signed.filter(F.col("bands").isNotNull()).select("doc_id", F.posexplode("bands").alias("band", "band_hash"))
    roots = buckets.groupBy("band", "band_hash").agg(F.min("doc_id").alias("dst"), F.count(F.lit(1)).alias("size")).filter("size > 1")
    return (
        buckets.join(roots.drop("size"), ["band", "band_hash"])
        .filter(F.col("doc_id") != F.col("dst"))
        .select(F.col("doc_id").alias("src"), "dst")
        .distinct()
    )


def verified_edges(edges: DataFrame, signed: DataFrame, cfg: FuzzyDedupConfig) -> DataFrame:
    if cfg.verify == "none":
        return edges
    column = "shingles" if cfg.verify == "jaccard" else "signature"
    left = signed.select(F.col("doc_id").alias("src"), F.col(column).alias("_a"))
    right = signed.select(F.col("doc_id").alias("dst"), F.col(column).alias("_b"))
    pairs = edges.join(left, "src").join(right, "dst")
    if cfg.verify == "jaccard":
        inter = F.size(F.array_intersect("_a", "_b"))
        similarity = inter / (F.size("_a") + F.size("_b") - inter)
    else:
        agree = F.aggregate(F.zip_with("_a", "_b", lambda x, y: (x == y).cast("int")), F.lit(0), lambda acc, v: acc + v)
        similarity = agree / F.size("_a")
    return pairs.filter(similarity >= F.lit(cfg.threshold)).select("src", "dst")


def connected_components(edges: DataFrame, max_iterations: int, log=print) -> DataFrame:
    """(doc_id, component) for every vertex of `edges`; component = the smallest doc_id reachable.

    Min-label propagation: each vertex takes the smallest label among itself and its neighbours,
    then jumps to its label's label. Each round is checkpointed (no growing lineage); it stops when
    no label changes."""
    both = edges.select("src", "dst").union(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst"))).distinct()
    both = both.localCheckpoint()
    labels = both.groupBy("src").agg(F.least(F.col("src"), F.min("dst")).alias("label")).withColumnRenamed("src", "doc_id")
    labels = labels.localCheckpoint()
    for i in range(1, max_iterations + 1):
        from_neighbours = both.join(labels.withColumnRenamed("doc_id", "dst"), "dst").groupBy("src").agg(F.min("label").alias("nl"))
        step = labels.join(from_neighbours.withColumnRenamed("src", "doc_id"), "doc_id", "left").select(
            "doc_id", "label", F.least("label", F.coalesce("nl", "label")).alias("l1")
        )
        # Pointer jumping: take the label of my label (halves chain lengths per round).
        jump = labels.select(F.col("doc_id").alias("l1"), F.col("label").alias("l2"))
        step = step.join(jump, "l1", "left").select("doc_id", "label", F.least("l1", F.coalesce("l2", "l1")).alias("new")).localCheckpoint()
        changed = step.filter(F.col("new") != F.col("label")).count()
        labels = step.select("doc_id", F.col("new").alias("label"))
        log(f"  [dedup] components: round {i}, {changed} label(s) changed")
        if changed == 0:
            return labels.withColumnRenamed("label", "component")
    raise RuntimeError(f"dedup: connected components did not converge in {max_iterations} rounds (dedup.fuzzy.max_iterations)")


def near_duplicate_survivors(df: DataFrame, cfg: DedupConfig, log=print) -> DataFrame:
    """doc_id → the survivor of its near-duplicate component, for documents that have one."""
    fz = cfg.fuzzy
    schema = T.StructType(
        [T.StructField("doc_id", T.StringType()), T.StructField("bands", T.ArrayType(T.LongType()))]
        + ([T.StructField("shingles", T.ArrayType(T.IntegerType()))] if fz.verify == "jaccard" else [])
        + ([T.StructField("signature", T.ArrayType(T.LongType()))] if fz.verify == "signature" else [])
    )
    body = partial(
        minhash.signature_batches,
        n=fz.ngram,
        bands=fz.bands,
        rows=fz.rows,
        seed=fz.seed,
        with_shingles=fz.verify == "jaccard",
        with_signature=fz.verify == "signature",
    )
    # Computed once (a Python pass), then read by the bucket step and the verification joins.
    signed = df.select("doc_id", "norm_text").mapInPandas(body, schema).localCheckpoint()
    edges = verified_edges(candidate_edges(signed), signed, fz).localCheckpoint()
    components = connected_components(edges, fz.max_iterations, log)
    if PRIOR not in df.columns:  # the component's label is its smallest doc_id: the survivor
        return components.filter(F.col("component") != F.col("doc_id")).select("doc_id", F.col("component").alias("_near_survivor"))
    members = components.join(df.select("doc_id", survivor_order(df).alias("_order")), "doc_id")
    best = members.groupBy("component").agg(F.min("_order").getField("doc_id").alias("_near_survivor"))
    return members.join(best, "component").filter(F.col("_near_survivor") != F.col("doc_id")).select("doc_id", "_near_survivor")


def dedup_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    assert_columns(docs, READS, "dedup")
    cfg = ctx.cfg.dedup
    df = docs.withColumn("norm_text", normalized_text(F.col("text"), cfg)).withColumn("text_hash", F.sha2(F.col("norm_text"), 256))
    df = df.join(exact_survivors(df), "doc_id", "left")
    exact = F.col("_survivor") != F.col("doc_id")
    if cfg.fuzzy.enabled:
        unique = df.filter(~exact)
        df = df.join(near_duplicate_survivors(unique, cfg, ctx.log), "doc_id", "left")
    else:
        df = df.withColumn("_near_survivor", F.lit(None).cast("string"))
    near = F.col("_near_survivor").isNotNull()
    survivor = F.when(exact, F.col("_survivor")).when(near, F.col("_near_survivor"))
    reason = F.when(exact, F.lit("exact_duplicate")).when(near, F.lit("near_duplicate"))
    marked = (
        df.withColumn(REASON, reason)
        .withColumn(DUPLICATE_OF, survivor)
        .withColumn(DETAIL, F.when(survivor.isNotNull(), F.concat(F.lit("duplicate_of="), survivor)))
        .drop("norm_text", "_survivor", "_near_survivor")
    )
    return StageResult(marked)


STAGE = Stage("dedup", READS, WRITES, "deduped", dedup_documents)
