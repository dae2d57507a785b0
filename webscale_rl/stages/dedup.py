"""dedup: exact duplicates on normalised text, then near duplicates by MinHash LSH.

One Python pass (mapInArrow, Arrow in and out) reads the text once and leaves a narrow frame:
doc_id, text_hash, LSH bands and shingles (or the signature). It is checkpointed, and every later
step groups and joins only that; the documents meet the final decisions in one join.

Exact: documents whose normalised text (case, punctuation, digits, whitespace as configured) has the
same SHA-256 form a group; the smallest doc_id survives, the others are `exact_duplicate`.

Near, among the exact survivors: MinHash signatures of word n-gram shingles (`minhash`), LSH bands;
inside a bucket every member is linked to the bucket's smallest doc_id (a star: edges grow with
members, never with their square); a candidate edge is kept when its shingle Jaccard (or signature
agreement) reaches the threshold; connected components of the kept edges by iterative min-label
propagation with pointer jumping, so A~B, B~C collapse to one group. The smallest doc_id of a
component survives; the others are `near_duplicate`.

A cluster is an exact group together with the near-duplicate component of its survivor, and every
rejected row names the survivor of its whole cluster: when B is an exact copy of A and A a near copy
of C, both A and B name C (the near step's answer for A is joined onto A's exact group).

Incremental: the fingerprints of kept documents are stored (`dedup_signatures`, see
`signatures.py`); a run hashes only its new documents and adds the stored fingerprints that share a
text hash or an LSH bucket with one of them, flagged as kept before, so they win their clusters.

Groups (hash groups, buckets) are windows: one shuffle each, and a huge group is one long task whose
buffer spills to disk, not one task's memory. Either way the survivor is named in `duplicate_of`
(and the detail), and it does not depend on the run or on partitioning. No text reaches the driver;
only counts do (to stop the propagation).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import DedupConfig, FuzzyDedupConfig
from ..warehouse import Warehouse, sql_string
from . import arrow_text, minhash, signatures
from .base import DETAIL, DUPLICATE_OF, REASON, BesideTable, Stage, StageContext, StageResult, assert_columns

READS = ("doc_id", "text")
WRITES = ("doc_id", "url", "text", "source", "source_format", "n_chars", "n_words", "text_hash")

# Java's String.toLowerCase (what Spark's lower() did here before) maps two letters differently from
# Arrow's per-character lowering: İ becomes i + combining dot, and a word-final capital sigma ς.
_CASED = r"\p{Lu}\p{Ll}\p{Lt}"
_CASE_IGNORABLE = r"\p{Mn}\p{Me}\p{Cf}\p{Lm}\p{Sk}'’.:·"
_FINAL_SIGMA = rf"([{_CASED}][{_CASE_IGNORABLE}]*)Σ([{_CASE_IGNORABLE}]*(?:[^{_CASED}{_CASE_IGNORABLE}]|$))"
# Java's \s (what the Spark version of this normalisation used): ASCII whitespace only, with \x0B,
# which RE2's \s leaves out. Other Unicode spaces stay; str.split()-style word splitting cuts there.
_WHITESPACE = r"[ \t\n\x0B\f\r]+"
_PUNCTUATION_OR_WHITESPACE = r"[\p{P}\p{S} \t\n\x0B\f\r]+"


def normalized_texts(texts: pa.Array, cfg: DedupConfig) -> pa.Array:
    """The text exact dedup compares and shingles are cut from (Arrow, RE2): case, punctuation and
    symbols, digits as configured; whitespace runs become one space; ends trimmed of spaces."""
    out = texts
    if cfg.lowercase:
        if pc.any(pc.match_substring(out, "İ")).as_py():
            out = pc.replace_substring(out, "İ", "i\u0307")
        if pc.any(pc.match_substring(out, "Σ")).as_py():
            out = pc.replace_substring_regex(out, _FINAL_SIGMA, r"\1ς\2")
        out = pc.utf8_lower(out)
    if cfg.strip_digits:
        out = pc.replace_substring_regex(out, r"\p{N}", "")
    # Punctuation becoming a space and whitespace runs becoming one space, in one regex pass: a run
    # of both is one space either way (digits are neither, so removing them first changes nothing).
    separators = _PUNCTUATION_OR_WHITESPACE if cfg.strip_punctuation else _WHITESPACE
    return pc.utf8_trim(pc.replace_substring_regex(out, separators, " "), " ")


# Rows an earlier run already kept (stored fingerprints, or rows given with their text, as tests do).
# They enter the stage only to be judged against, and they win: a new copy of a kept one is the duplicate.
PRIOR = "_prior"


def survivor_order(df: DataFrame) -> Column:
    """Orders candidates for survival: rows kept by an earlier run first, then the smallest doc_id."""
    prior = F.coalesce(F.col(PRIOR), F.lit(False)) if PRIOR in df.columns else F.lit(False)
    return F.struct((~prior).alias("new"), F.col("doc_id").alias("doc_id"))


def fingerprint_schema(doc_id: T.DataType, cfg: DedupConfig, with_prior: bool) -> T.StructType:
    fz = cfg.fuzzy
    fields = [T.StructField("doc_id", doc_id), T.StructField("text_hash", T.StringType())]
    fields += [T.StructField(PRIOR, T.BooleanType())] if with_prior else []
    if fz.enabled:
        fields.append(T.StructField("bands", T.ArrayType(T.LongType())))
        fields += [T.StructField("shingles", T.ArrayType(T.IntegerType()))] if fz.verify == "jaccard" else []
        fields += [T.StructField("signature", T.ArrayType(T.LongType()))] if fz.verify == "signature" else []
    return T.StructType(fields)


def fingerprint_batches(batches: Iterator[pa.RecordBatch], cfg: DedupConfig, slice_bytes: int | None = None) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (doc_id, text[, _prior]) → doc_id, text_hash (SHA-256 hex of the normalised
    text; null for null text)[, _prior][, bands, shingles | signature]. One pass over the text, cut
    in slices of ~8 MB so memory stays flat whatever the batch size."""
    fz = cfg.fuzzy
    a, b = minhash.permutations(fz.bands * fz.rows, fz.seed)
    for batch in batches:
        for lo, hi in arrow_text.slices(arrow_text.as_strings(batch.column("text")), slice_bytes or arrow_text.SLICE_BYTES):
            part = batch.slice(lo, hi - lo)
            texts = part.column("text")
            normal = normalized_texts(pc.fill_null(texts, ""), cfg)
            columns = {"doc_id": part.column("doc_id"), "text_hash": pc.if_else(pc.is_valid(texts), arrow_text.sha256_hex(normal), None)}
            if PRIOR in part.schema.names:
                columns[PRIOR] = part.column(PRIOR)
            if fz.enabled:
                columns.update(minhash.minhash_columns(normal, fz.ngram, fz.bands, fz.rows, a, b, fz.verify == "jaccard", fz.verify == "signature"))
            yield pa.RecordBatch.from_pydict(columns)


def candidate_edges(signed: DataFrame) -> DataFrame:
    """(src, dst): src shares an LSH bucket with dst, the bucket's smallest doc_id.

    One shuffle: a window per bucket gives every member the bucket's minimum (edges grow with
    members, never with their square; a huge bucket is one long task whose buffer spills, not one
    task's memory)."""
    buckets = signed.filter(F.col("bands").isNotNull()).select("doc_id", F.posexplode("bands").alias("band", "band_hash"))
    root = F.min("doc_id").over(Window.partitionBy("band", "band_hash"))
    return buckets.select(F.col("doc_id").alias("src"), root.alias("dst")).filter(F.col("src") != F.col("dst")).distinct()


def verified_edges(edges: DataFrame, fingerprints: DataFrame, cfg: FuzzyDedupConfig) -> DataFrame:
    """The candidate edges whose ends are similar enough; `fingerprints` has their shingles or signatures."""
    if cfg.verify == "none":
        return edges
    column = "shingles" if cfg.verify == "jaccard" else "signature"
    left = fingerprints.select(F.col("doc_id").alias("src"), F.col(column).alias("_a"))
    right = fingerprints.select(F.col("doc_id").alias("dst"), F.col(column).alias("_b"))
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
    no label changes. `edges` should be checkpointed: every round reads it (repeated edges only
    cost time; a minimum does not change)."""
    both = edges.select("src", "dst").union(edges.select(F.col("dst").alias("src"), F.col("src").alias("dst")))
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


def exact_survivors(keyed: DataFrame) -> DataFrame:
    """Adds _survivor to (doc_id, text_hash, _order, ...): the first of its text_hash group by
    `survivor_order`. One shuffle: a window per hash (a huge group is one long task whose buffer
    spills, not one task's memory). A null hash (no text) is in no group: its _survivor is null."""
    first = F.min("_order").over(Window.partitionBy("text_hash")).getField("doc_id")
    return keyed.withColumn("_survivor", F.when(F.col("text_hash").isNotNull(), first))


def near_duplicate_survivors(signed: DataFrame, narrow: DataFrame, orders: DataFrame | None, cfg: FuzzyDedupConfig, log=print) -> DataFrame | None:
    """doc_id → the survivor of its near-duplicate component, for documents that have one (None when
    no candidate pair passes verification). `signed`: (doc_id, bands) of the documents to compare;
    `narrow` holds their verification column; `orders` (doc_id, _order) is set when earlier runs'
    rows take part."""
    edges = verified_edges(candidate_edges(signed), narrow, cfg).localCheckpoint()
    if edges.isEmpty():
        return None
    components = connected_components(edges, cfg.max_iterations, log)
    if orders is None:  # the component's label is its smallest doc_id: the survivor
        return components.filter(F.col("component") != F.col("doc_id")).select("doc_id", F.col("component").alias("_near_survivor"))
    members = components.join(orders, "doc_id")
    best = members.groupBy("component").agg(F.min("_order").getField("doc_id").alias("_near_survivor"))
    return members.join(best, "component").filter(F.col("_near_survivor") != F.col("doc_id")).select("doc_id", "_near_survivor")


def with_cluster_survivors(decisions: DataFrame, near: DataFrame | None) -> DataFrame:
    """Adds _cluster_survivor to decisions (doc_id, _survivor, ...): the survivor of the document's
    whole cluster, its exact group joined with that group's near-duplicate component.

    `near` (doc_id, _near_survivor) is keyed by exact survivors, so it is joined on the exact group's
    survivor: an exact copy of a near duplicate names the component's survivor, not its own exact
    group's survivor (which the near step removed). The narrow frames only; no text moves."""
    survivor = F.col("_survivor")
    if near is not None:
        decisions = decisions.join(near.withColumnRenamed("doc_id", "_survivor"), "_survivor", "left")
        survivor = F.coalesce(F.col("_near_survivor"), survivor)
    return decisions.withColumn("_cluster_survivor", survivor)


def fingerprints(docs: DataFrame, cfg: DedupConfig) -> DataFrame:
    """The one pass over the text: (doc_id, text_hash[, _prior][, bands, shingles | signature])."""
    with_prior = PRIOR in docs.columns
    schema = fingerprint_schema(docs.schema["doc_id"].dataType, cfg, with_prior)
    return docs.select("doc_id", "text", *([PRIOR] if with_prior else [])).mapInArrow(partial(fingerprint_batches, cfg=cfg), schema)


def stored_fingerprints(ctx: StageContext) -> DataFrame | None:
    """The fingerprints of documents earlier runs kept (`dedup_signatures`, current settings), or
    None without a warehouse or table."""
    wh = ctx.warehouse
    if wh is None or not wh.exists(signatures.SIGNATURES):
        return None
    return signatures.stored(wh.read(signatures.SIGNATURES), ctx.cfg.dedup)


def dedup_documents(docs: DataFrame, ctx: StageContext) -> StageResult:
    """Judges `docs` (new documents; rows flagged _prior are ones kept before, hashed here) against
    each other and against the stored fingerprints of the documents earlier runs kept: those are
    read, never hashed again, and only the ones sharing a text hash or an LSH bucket with a new
    document take part."""
    assert_columns(docs, READS, "dedup")
    cfg = ctx.cfg.dedup
    # The one pass over the text: a narrow frame (hash, bands, shingles) that every later step reads.
    narrow = fingerprints(docs, cfg).localCheckpoint()
    judged, with_prior = narrow, PRIOR in docs.columns
    stored = stored_fingerprints(ctx)
    if stored is not None:
        earlier = signatures.relevant(narrow, stored, cfg)
        columns = [c for c in narrow.columns if c != PRIOR]
        doc_id_type = narrow.schema["doc_id"].dataType
        judged = (
            narrow.select(*columns, (F.col(PRIOR) if with_prior else F.lit(False)).alias(PRIOR))
            .unionByName(earlier.select(F.col("doc_id").cast(doc_id_type).alias("doc_id"), *columns[1:], F.lit(True).alias(PRIOR)))
            .localCheckpoint()
        )
        with_prior = True

    # The exact step carries the bands along, so the fuzzy step needs no join to find the survivors.
    keyed = judged.select("doc_id", "text_hash", survivor_order(judged).alias("_order"), *(["bands"] if cfg.fuzzy.enabled else []))
    decisions = exact_survivors(keyed).localCheckpoint()  # read by the fuzzy step and the final join
    near = None
    if cfg.fuzzy.enabled:
        # Near duplicates among the exact survivors only.
        signed = decisions.filter(F.col("_survivor") == F.col("doc_id")).select("doc_id", "bands")
        orders = decisions.select("doc_id", "_order") if with_prior else None
        near = near_duplicate_survivors(signed, judged, orders, cfg.fuzzy, ctx.log)
    decisions = with_cluster_survivors(decisions, near)
    exact = F.col("_survivor").isNotNull() & (F.col("_survivor") != F.col("doc_id"))
    survivor = F.when(F.col("_cluster_survivor") != F.col("doc_id"), F.col("_cluster_survivor"))
    reason = F.when(exact, F.lit("exact_duplicate")).when(survivor.isNotNull(), F.lit("near_duplicate"))
    decisions = decisions.select(
        "doc_id",
        "text_hash",
        reason.alias(REASON),
        survivor.alias(DUPLICATE_OF),
        F.when(survivor.isNotNull(), F.concat(F.lit("duplicate_of="), survivor)).alias(DETAIL),
    )
    # A kept document's fingerprint rides along to the landing, which stores it (narrow frames only).
    decisions = signatures.with_signature_columns(decisions, narrow, F.col(REASON).isNull(), cfg)
    # The only step that moves the text: one join with the narrow decisions (stored documents,
    # which are not in `docs`, drop out here).
    marked = docs.drop("text_hash").join(decisions, "doc_id", "left")
    return StageResult(marked)


def catch_up_signatures(warehouse: Warehouse, ctx: StageContext) -> None:
    """Before dedup runs: every document of `deduped` has a stored fingerprint of the current
    settings, and no other document has one. Steady state costs two counts; a warehouse older than
    `dedup_signatures` (or changed settings) has its kept documents hashed here, once."""
    table, cfg = STAGE.table, ctx.cfg.dedup
    if not warehouse.exists(table):
        return
    kept = warehouse.read(table)
    have = signatures.stored(warehouse.read(signatures.SIGNATURES), cfg) if warehouse.exists(signatures.SIGNATURES) else None
    n_kept, n_have = kept.count(), (have.count() if have is not None else 0)
    if n_kept == n_have:  # the landing never lets the table get ahead of `deduped`: equal counts, same documents
        return
    if have is not None:
        stale = have.select("doc_id").join(kept.select(F.col("doc_id").cast("string").alias("doc_id")), "doc_id", "left_anti").localCheckpoint()
        n_stale = stale.count()
        if n_stale:
            ctx.log(f"  [dedup] {signatures.SIGNATURES}: dropping the fingerprints of {n_stale} document(s) that are not in '{table}'")
            warehouse.delete_matching(stale, signatures.SIGNATURES, ("doc_id",), f"t.params = '{sql_string(signatures.params(cfg))}'")
        kept = kept.join(have.select(F.col("doc_id").cast(kept.schema["doc_id"].dataType).alias("doc_id")), "doc_id", "left_anti")
    missing = kept.select("doc_id", "text").localCheckpoint()
    n_missing = missing.count()
    if not n_missing:
        return
    why = "no table yet" if have is None and not warehouse.exists(signatures.SIGNATURES) else "settings changed or rows missing"
    ctx.log(
        f"  [dedup] {signatures.SIGNATURES}: hashing {n_missing} document(s) of '{table}' that have no stored fingerprint ({why}); once: later runs read them"
    )
    rows = signatures.table_rows(fingerprints(missing, cfg), cfg, ctx.run_id)
    warehouse.append_once(rows, signatures.SIGNATURES, f"webscale-rl/{signatures.SIGNATURES}/catch-up/{ctx.run_id}")


# needs_landed_rows is off: the documents earlier runs kept take part through their stored
# fingerprints (dedup_signatures, the beside table), not their text.
STAGE = Stage(
    "dedup", READS, WRITES, "deduped", dedup_documents, rejection_reasons=("exact_duplicate", "near_duplicate"),
    beside=BesideTable(signatures.SIGNATURES, signatures.landed_rows, catch_up_signatures),
)  # fmt: skip
