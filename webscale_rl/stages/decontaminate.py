"""decontaminate: reject QA pairs that overlap evaluation benchmarks by word n-grams (13 by default).

As in the Webscale-RL paper (and GPT-3 / the usual decontamination scripts): a QA pair is
contaminated when one of its fields (the source document, the question, the answer) shares an
n-gram of `cfg.ngram` consecutive tokens with a question or answer of an evaluation set. The
rejection names the set (`contaminated:<eval set>`) and the detail quotes the overlapping n-gram.

Tokens: the text is lower-cased and split on runs of characters that are not Unicode letters,
digits or combining marks (`[^\\p{L}\\p{N}\\p{M}]+`), so case and punctuation never hide an
overlap. An n-gram is its tokens joined by one space, hashed to a long with `xxhash64`.

Short eval texts. A benchmark question with fewer than `ngram` tokens has no n-gram at all and
could never match. Following GPT-3 (appendix C), such a text is used *whole*, as one k-gram of its
k tokens, when k >= `min_tokens`; texts shorter than `min_tokens` are ignored, because a 1-3 token
text (an MMLU answer "B", a GSM8K answer "42", "Paris") would flag nearly every document. The
default `min_tokens` is 8 (GPT-3's floor). `min_tokens >= ngram` turns whole-text matching off.
The QA side then also generates the k-grams for each short length k present in the eval sets
(at most ngram - min_tokens extra lengths, found with one small aggregate over the eval n-grams).

Several hits. The reason names the first eval set by name; within it, the detail quotes the first
hit in `cfg.fields` order, then by position, and counts the other hits.

Scale: no cross join of texts. Each QA row's n-gram hashes are exploded (only a row key and the
hashes travel, never the QA columns), joined on the hash with the eval n-gram table (a broadcast
when `cfg.broadcast` is True, else Spark/AQE decides: a shuffle join for big benchmark sets),
reduced to one row per QA key, then left-joined back onto the QA rows, so every input row appears
exactly once in `marked`. The QA frame is read twice (the explode and the final join), so it
should be a materialised table or cached, as stage inputs in the pipeline are. The n-gram text of
the detail is rebuilt only for the rows that hit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import DecontamConfig
from ..readers import InputError, is_local_path
from ..warehouse import REJECTIONS, Warehouse, sql_string
from .base import DETAIL, REASON, Stage, StageContext, StageResult, assert_columns

log = logging.getLogger("webscale_rl.decontaminate")

TOKEN_SPLIT = r"[^\p{L}\p{N}\p{M}]+"
DETAIL_NGRAM_CHARS = 120

# Longest suffix first, so "x.jsonl.gz" is gzip'd JSONL.
EVAL_FORMAT_BY_SUFFIX: dict[str, str] = {
    ".jsonl.gz": "jsonl",
    ".json.gz": "jsonl",
    ".ndjson.gz": "jsonl",
    ".csv.gz": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
}
EVAL_SUFFIXES = ", ".join(EVAL_FORMAT_BY_SUFFIX)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.+-]+$")
GRAM_TYPE = "array<struct<f:int,k:int,pos:int,h:bigint>>"
# The `qa` column of the eval sets a pair was checked against, as "name@<hash>" tags
# (eval_set_tags); null in rows landed before the column existed: checked against none.
CHECKED = "decontam_checked"
TAG_HASH_CHARS = 12
# The staged verdicts of a catch-up (Warehouse staging, like a stage's batch).
CATCH_UP = "decontaminate_catch_up"


# --------------------------------------------------------------------------------------------
# Tokens and n-grams


def tokens(text: Column) -> Column:
    """Lower-cased tokens of letters/digits; an empty array for NULL or blank text."""
    parts = F.split(F.lower(text), TOKEN_SPLIT)
    return F.coalesce(F.filter(parts, lambda w: w != ""), F.array().cast("array<string>"))


def _grams(toks: Column, k: int, field_index: int) -> Column:
    """array<struct<f, k, pos, h>> of every k-gram of a token array (empty if shorter than k).

    `toks` must be a column reference (not an expression), or Spark re-tokenises per element."""
    starts = F.filter(toks, lambda w, i: i <= F.size(toks) - k)  # a prefix: indexes stay aligned
    return F.transform(
        starts,
        lambda w, i: F.struct(
            F.lit(field_index).alias("f"),
            F.lit(k).alias("k"),
            i.alias("pos"),
            F.xxhash64(F.array_join(F.slice(toks, i + 1, k), " ")).alias("h"),
        ),
    ).cast(GRAM_TYPE)


# --------------------------------------------------------------------------------------------
# Eval sets


@dataclass(frozen=True)
class EvalSets:
    """The eval sets of a run: their texts and, per set name, the tag a checked pair records."""

    texts: DataFrame  # (eval_set, text)
    tags: dict[str, str]  # name → "name@<sha256 prefix>"


def load_eval_sets(spark: SparkSession, paths: list[str], cfg: DecontamConfig) -> DataFrame:
    """(eval_set, text): one row per question and per answer text of the given eval-set files.

    Each path is a JSONL (.gz), Parquet or CSV file (or a Spark output folder with such a suffix);
    the set is named after the file stem, or explicitly with `name=path`."""
    return _load(spark, paths, cfg)[0]


def read_eval_sets(spark: SparkSession, paths: list[str], cfg: DecontamConfig) -> EvalSets:
    """The eval sets' texts and their tags (one small aggregate over the texts)."""
    texts, names = _load(spark, paths, cfg)
    return EvalSets(texts, eval_set_tags(texts, names, cfg))


def eval_set_paths(specs: list[str]) -> list[str]:
    """The paths of eval-set specs (`path` or `name=path`): for choosing storage connectors."""
    return [_split_spec(str(spec))[1] for spec in specs]


def _load(spark: SparkSession, paths: list[str], cfg: DecontamConfig) -> tuple[DataFrame, list[str]]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("load_eval_sets needs at least one path")
    frames: list[DataFrame] = []
    names: dict[str, str] = {}
    for spec in paths:
        name, path, explicit = _split_spec(str(spec))
        if name in names and not explicit:
            raise InputError(path, f"eval-set name '{name}' is already used by {names[name]}; name it with NAME=PATH")
        names.setdefault(name, path)  # files named alike explicitly make one set
        frames.append(_read_eval_set(spark, name, path, cfg))
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out, list(names)


def eval_set_tags(texts: DataFrame, names: list[str], cfg: DecontamConfig) -> dict[str, str]:
    """name → "name@<first 12 hex digits of a SHA-256>" over the set's texts (sorted, so row order
    and file format do not matter) and the matching settings (`ngram`, `min_tokens`, `fields`): a
    changed file, or a check made differently, is a new tag and pairs are checked again."""
    digest = F.sha2(F.array_join(F.array_sort(F.collect_list(F.sha2(F.col("text"), 256))), "\n"), 256)
    digests = {r["eval_set"]: r["digest"] for r in texts.groupBy("eval_set").agg(digest.alias("digest")).collect()}
    settings = json.dumps({"ngram": cfg.ngram, "min_tokens": cfg.min_tokens, "fields": list(cfg.fields)}, sort_keys=True)
    return {n: f"{n}@{hashlib.sha256((digests.get(n, '') + settings).encode()).hexdigest()[:TAG_HASH_CHARS]}" for n in names}


def _split_spec(spec: str) -> tuple[str, str, bool]:
    """'name=path' or 'path' → (name, path, named explicitly?)."""
    if "=" in spec and not os.path.exists(spec):
        name, path = spec.split("=", 1)
        if NAME_PATTERN.match(name) and path:
            return name, path, True
    base = os.path.basename(spec.rstrip("/"))
    fmt_suffix = next((s for s in EVAL_FORMAT_BY_SUFFIX if base.lower().endswith(s)), None)
    name = base[: -len(fmt_suffix)] if fmt_suffix else Path(base).stem
    if not name:
        raise InputError(spec, "cannot name the eval set after the file; use NAME=PATH")
    return name, spec, False


def _eval_format(path: str) -> str:
    base = os.path.basename(path.rstrip("/")).lower()
    for suffix, fmt in EVAL_FORMAT_BY_SUFFIX.items():
        if base.endswith(suffix):
            return fmt
    raise InputError(path, f"unsupported eval-set file type; supported extensions: {EVAL_SUFFIXES}")


def _read_eval_set(spark: SparkSession, name: str, path: str, cfg: DecontamConfig) -> DataFrame:
    fmt = _eval_format(path)
    if is_local_path(path):
        local = re.sub(r"^file:(//)?", "", path) if path.startswith("file:") else path
        if not os.path.exists(local):
            raise InputError(path, "no such file or folder")
        if os.path.isfile(local) and os.path.getsize(local) == 0:
            raise InputError(path, "file is empty")
    glob_safe = re.sub(r"([\[\]{}*?\\])", r"\\\1", path)
    try:
        if fmt == "jsonl":
            df = spark.read.json(glob_safe)
        elif fmt == "csv":
            # RFC 4180 quoting ("" inside quotes), quoted fields may span lines.
            df = spark.read.csv(glob_safe, header=True, multiLine=True, escape='"')
        else:
            df = spark.read.parquet(glob_safe)
        columns = df.columns
    except Exception as exc:  # AnalysisException (path, schema), file system errors
        text = str(exc).strip()
        raise InputError(path, f"cannot read {fmt}: {text.splitlines()[0] if text else type(exc).__name__}") from exc

    if "_corrupt_record" in columns and fmt == "jsonl":
        others = [c for c in columns if c != "_corrupt_record"]
        if not others:
            raise InputError(path, "not valid JSON Lines: no line parses as a JSON object")
        # Spark refuses a query that reads only the corrupt-record column of a raw file.
        bad = df.filter(F.col("_corrupt_record").isNotNull()).select("_corrupt_record", F.col(f"`{others[0]}`"))
        first = bad.limit(1).collect()
        if first:
            raise InputError(path, f"not valid JSON: {first[0][0][:80]!r}")
    qcol, acol = cfg.question_column, cfg.answer_column
    if qcol not in columns:
        raise InputError(path, f"no '{qcol}' column (the question column); columns: {columns}")
    text_cols = [qcol] + ([acol] if acol and acol in columns and acol != qcol else [])
    if len(text_cols) == 1:
        log.info("eval set %s (%s) has no '%s' column: only questions are used", name, path, acol)
    parts = [_texts(df, c, path).select(F.lit(name).alias("eval_set"), F.col("text")) for c in text_cols]
    out = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    return out.where(F.col("text").isNotNull() & (F.trim(F.col("text")) != ""))


def _texts(df: DataFrame, column: str, path: str) -> DataFrame:
    """The column as strings; an array of strings (e.g. answer aliases) gives one row per element."""
    dtype = df.schema[column].dataType
    col = F.col(f"`{column}`")
    if isinstance(dtype, T.ArrayType) and not isinstance(dtype.elementType, (T.ArrayType, T.MapType, T.StructType)):
        return df.select(F.explode(col).alias("text")).select(F.col("text").cast("string").alias("text"))
    if isinstance(dtype, (T.ArrayType, T.MapType, T.StructType)):
        raise InputError(path, f"column '{column}' is {dtype.simpleString()}, expected text")
    return df.select(col.cast("string").alias("text"))


def eval_ngrams(eval_texts: DataFrame, cfg: DecontamConfig) -> DataFrame:
    """(ngram_hash long, eval_set string, ngram_len int), distinct.

    ngram_len is cfg.ngram, or k < ngram for a short eval text of k >= cfg.min_tokens tokens used
    whole; the QA side needs it to know which k-grams to generate."""
    n = cfg.ngram
    toks = eval_texts.select("eval_set", tokens(F.col("text")).alias("toks"))
    size = F.size("toks")
    short = (size < n) & (size >= F.lit(max(cfg.min_tokens, 1)))
    grams = F.when(size >= n, _grams(F.col("toks"), n, 0)).when(
        short,
        F.array(F.struct(F.lit(0).alias("f"), size.alias("k"), F.lit(0).alias("pos"), F.xxhash64(F.array_join("toks", " ")).alias("h"))).cast(GRAM_TYPE),
    )
    return toks.select("eval_set", F.explode(grams).alias("g")).select(F.col("g.h").alias("ngram_hash"), "eval_set", F.col("g.k").alias("ngram_len")).distinct()


# --------------------------------------------------------------------------------------------
# The stage


def _short_lengths(eval_grams: DataFrame, cfg: DecontamConfig) -> list[int]:
    if cfg.min_tokens >= cfg.ngram:
        return []
    rows = eval_grams.where(F.col("ngram_len") < cfg.ngram).select("ngram_len").distinct().collect()
    return sorted(r[0] for r in rows)


def decontaminate_qa(qa: DataFrame, eval_grams: DataFrame, cfg: DecontamConfig) -> StageResult:
    """marked = qa rows + REASON/DETAIL; REASON `contaminated:<eval set>` for rows that overlap."""
    fields = list(cfg.fields)
    assert_columns(qa, tuple(fields), "decontaminate")
    lengths = [cfg.ngram] + _short_lengths(eval_grams, cfg)

    # A row key from the id and the checked text, so rows sharing a qa_id are still told apart;
    # identical rows share a key and get the same (correct) verdict.
    key_cols = (["qa_id"] if "qa_id" in qa.columns else []) + fields
    key = F.xxhash64(*[F.col(f"`{c}`") for c in key_cols]).alias("_dc_key")

    tok_names = [f"_dc_t{i}" for i in range(len(fields))]
    toks = qa.select(key, *[tokens(F.col(f"`{c}`")).alias(t) for c, t in zip(fields, tok_names)])
    all_grams = F.concat(*[_grams(F.col(t), k, i) for i, t in enumerate(tok_names) for k in lengths])
    exploded = toks.select("_dc_key", F.explode(all_grams).alias("g")).select(
        "_dc_key", F.col("g.f").alias("f"), F.col("g.k").alias("k"), F.col("g.pos").alias("pos"), F.col("g.h").alias("h")
    )

    right = eval_grams.select("ngram_hash", "ngram_len", "eval_set")
    if cfg.broadcast:
        right = F.broadcast(right)
    hits = (
        exploded.join(right, (F.col("h") == F.col("ngram_hash")) & (F.col("k") == F.col("ngram_len")))
        .groupBy("_dc_key")
        .agg(
            F.min(F.struct("eval_set", "f", "pos", "k")).alias("_dc_first"),
            F.count("*").alias("_dc_hits"),
        )
    )

    joined = qa.select("*", key).join(hits, "_dc_key", "left")
    first = F.col("_dc_first")
    # The quoted n-gram, rebuilt from its field for the rows that hit only (one column, so the
    # field is tokenised once).
    hit_tokens = F.lit(None).cast("array<string>")
    for i, c in reversed(list(enumerate(fields))):
        hit_tokens = F.when(first["f"] == i, tokens(F.col(f"`{c}`"))).otherwise(hit_tokens)
    joined = joined.withColumn("_dc_gram", F.array_join(F.slice(hit_tokens, first["pos"] + 1, first["k"]), " "))
    gram = F.col("_dc_gram")
    quoted = F.when(F.length(gram) > DETAIL_NGRAM_CHARS, F.concat(F.substring(gram, 1, DETAIL_NGRAM_CHARS - 3), F.lit("...")))
    quoted = quoted.otherwise(gram)
    field_name = F.element_at(F.array(*[F.lit(c) for c in fields]), first["f"] + 1)
    what = F.when(first["k"] == cfg.ngram, F.lit(f"{cfg.ngram}-gram overlap")).otherwise(F.format_string("whole eval text (%d tokens) found", first["k"]))
    more = F.when(F.col("_dc_hits") > 1, F.format_string(" (%d overlapping n-grams)", F.col("_dc_hits"))).otherwise(F.lit(""))
    detail = F.concat(what, F.lit(" in "), field_name, F.lit(": '"), quoted, F.lit("'"), more)
    reason = F.concat(F.lit("contaminated:"), first["eval_set"])

    hit = first.isNotNull()
    new_reason = F.when(hit, reason)
    new_detail = F.when(hit, detail)
    if REASON in qa.columns:  # an earlier rejection stands
        new_detail = F.when(F.col(REASON).isNotNull(), F.col(DETAIL)).otherwise(new_detail)
        new_reason = F.coalesce(F.col(REASON), new_reason)
    keep = [F.col(f"`{c}`") for c in qa.columns if c not in (REASON, DETAIL)]
    marked = joined.select(*keep, new_reason.alias(REASON), new_detail.cast("string").alias(DETAIL))
    return StageResult(marked)


def decontaminate(spark: SparkSession, qa: DataFrame, eval_paths: list[str], cfg: DecontamConfig) -> StageResult:
    """Load the eval sets, build their n-grams and mark the QA rows: the three steps in one call."""
    grams = eval_ngrams(load_eval_sets(spark, eval_paths, cfg), cfg)
    return decontaminate_qa(qa, grams, cfg)


def checked_against(tags) -> Column:
    """The CHECKED value of a pair checked against these tags (sorted; empty for none)."""
    return F.array(*[F.lit(t) for t in sorted(tags)]).cast("array<string>")


def decontaminate_stage(qa: DataFrame, ctx: StageContext) -> StageResult:
    """The pipeline stage: new pairs checked against every configured set, which their CHECKED
    column records; with no eval set configured every pair passes (and says so), having been
    checked against nothing."""
    cfg = ctx.cfg.decontam
    if not cfg.eval_sets:
        ctx.log("  [decontaminate] no --eval-set given: nothing to check against")
        marked = qa.withColumn(REASON, F.lit(None).cast("string")).withColumn(DETAIL, F.lit(None).cast("string"))
        return StageResult(marked.withColumn(CHECKED, checked_against([])))
    sets = read_eval_sets(qa.sparkSession, list(cfg.eval_sets), cfg)
    marked = decontaminate_qa(qa, eval_ngrams(sets.texts, cfg), cfg).marked
    return StageResult(marked.withColumn(CHECKED, checked_against(sets.tags.values())))


# --------------------------------------------------------------------------------------------
# Catching up: pairs already in `qa` against eval sets they have not been checked against


@dataclass
class CatchUp:
    """What one catch-up did: the tags now recorded, the pairs checked, those moved out of `qa`."""

    tags: list[str]
    checked: int = 0
    contaminated: dict[str, int] = field(default_factory=dict)  # reason → pairs

    @property
    def moved(self) -> int:
        return sum(self.contaminated.values())

    def describe(self) -> str:
        if not self.checked:
            return f"every pair in 'qa' was already checked against {', '.join(self.tags)}"
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.contaminated.items()))
        moved = f"{self.moved} contaminated pair(s) moved to 'rejections' ({reasons})" if self.moved else "none contaminated"
        return f"checked {self.checked} pair(s) against {', '.join(self.tags)}: {moved}, {self.checked - self.moved} recorded as clean"


def catch_up(wh: Warehouse, eval_paths: list[str], cfg: DecontamConfig, run_id: str, log: Callable[[str], None] = print) -> CatchUp:
    """Check the pairs in `qa` against the configured eval sets each has not been checked against
    (a tag missing from its CHECKED column; a table without the column has checked none), with
    `decontaminate_qa`, as the stage does for new pairs.

    The verdicts are staged once, then landed in an order that loses nothing if killed between:
    contaminated pairs are added to `rejections` (`contaminated:<set>`; a MERGE keyed by stage and
    qa_id, so a replay adds nothing), then one MERGE on `qa` deletes them and records the tags on
    the clean ones. A run killed before that MERGE left the pairs in `qa` without the tags: the next
    run checks them again, finds the same verdict, and finishes the job."""
    sets = read_eval_sets(wh.spark, list(eval_paths), cfg)
    result = CatchUp(sorted(sets.tags.values()))
    if not wh.exists(STAGE.table):
        log(f"  [decontaminate] no '{STAGE.table}' table yet: no pair to check")
        return result
    for stale in wh.staged_batches(CATCH_UP):  # verdicts of a killed catch-up: made again below
        wh.discard_batch(CATCH_UP, stale)
    qa = wh.read(STAGE.table, wh.latest_version(STAGE.table))  # one version throughout
    seen = F.coalesce(F.col(CHECKED), checked_against([])) if CHECKED in qa.columns else checked_against([])
    missing = {name: ~F.array_contains(seen, tag) for name, tag in sets.tags.items()}
    pending_if = reduce(lambda a, b: a | b, missing.values())
    counts = qa.agg(F.sum(pending_if.cast("int")).alias("_n"), *[F.max(m.cast("int")).alias(f"_m{i}") for i, m in enumerate(missing.values())]).first()
    result.checked = int(counts["_n"] or 0)
    if not result.checked:
        log(f"  [decontaminate] {result.describe()}")
        return result
    needed = [name for i, name in enumerate(missing) if counts[f"_m{i}"]]
    log(f"  [decontaminate] {result.checked} pair(s) in '{STAGE.table}' not yet checked against {', '.join(sets.tags[n] for n in needed)}: checking")
    texts = sets.texts.filter(F.col("eval_set").isin(needed))
    marked = decontaminate_qa(qa.filter(pending_if), eval_ngrams(texts, cfg), cfg).marked
    wh.stage_slice(marked.select("qa_id", "doc_id", REASON, DETAIL), CATCH_UP, run_id)
    verdicts = wh.read_batch(CATCH_UP, run_id)
    reasons = {r[REASON]: int(r["count"]) for r in verdicts.groupBy(REASON).count().collect()}
    result.contaminated = {k: v for k, v in reasons.items() if k is not None}
    if result.moved:
        wh.insert_missing(StageResult(verdicts).rejected(STAGE.name, run_id), REJECTIONS, ("stage", "qa_id"))
    wh.add_columns(STAGE.table, {CHECKED: "array<string>"})  # a qa table older than the column
    tags = ", ".join(f"'{sql_string(t)}'" for t in result.tags)
    wh.delete_or_update(
        verdicts.select("qa_id", F.col(REASON).isNotNull().alias("contaminated")),
        STAGE.table,
        ("qa_id",),
        delete_when="s.contaminated",
        updates={CHECKED: f"array_sort(array_distinct(concat(coalesce(t.`{CHECKED}`, cast(array() as array<string>)), array({tags}))))"},
    )
    wh.discard_batch(CATCH_UP, run_id)
    log(f"  [decontaminate] {result.describe()}")
    return result


READS = ("qa_id", "doc_id", "pretrain_text", "question", "answer")
STAGE = Stage("decontaminate", READS, (*READS, CHECKED), "qa", decontaminate_stage, input_key=("qa_id",), rejection_reasons=("contaminated:.+",))
