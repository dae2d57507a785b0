"""Exports of the final `qa` table: the released data set's columns (parquet/jsonl), and the shapes
RL trainers read — verl (chat prompt + rule reward with ground truth) and TRL (prompt, answer).
Transformations are pure DataFrame functions; writing is the CLI's job."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

RELEASED_COLUMNS = ["pretrain_text", "question", "answer", "domain", "persona"]
ID_COLUMNS = ["answer_type", "qa_id", "doc_id", "prompt_version", "run_id"]
# Answered right without the document (stages/verify.py): a difficulty signal a trainer may filter or weight on.
DIFFICULTY_COLUMN = "closed_book_correct"
DATA_SOURCE = "webscale_rl"
# What the policy is asked; the reward (webscale_rl.reward) reads a \boxed{} answer first.
INSTRUCTION = "Answer the question. Put your final answer within \\boxed{}."
SPLIT_BUCKETS = 10_000


def with_split(qa: DataFrame, val_fraction: float) -> DataFrame:
    """A `split` column, train or validation, fixed per qa_id (same answer on every export)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    bucket = F.pmod(F.xxhash64("qa_id"), F.lit(SPLIT_BUCKETS))
    return qa.withColumn("split", F.when(bucket < F.lit(int(val_fraction * SPLIT_BUCKETS)), "validation").otherwise("train"))


def released(qa: DataFrame) -> DataFrame:
    extra = [c for c in [*ID_COLUMNS, DIFFICULTY_COLUMN, "split"] if c in qa.columns]
    return qa.select(*RELEASED_COLUMNS, *extra)


def to_verl(qa: DataFrame, data_source: str = DATA_SOURCE) -> DataFrame:
    """verl's RL data layout (as its examples/data_preprocess scripts write it)."""
    prompt = F.array(F.struct(F.lit("user").alias("role"), F.concat_ws("\n\n", F.col("question"), F.lit(INSTRUCTION)).alias("content")))
    return qa.select(
        F.lit(data_source).alias("data_source"),
        prompt.alias("prompt"),
        F.col("domain").alias("ability"),
        F.struct(F.lit("rule").alias("style"), F.col("answer").alias("ground_truth")).alias("reward_model"),
        F.struct(
            (F.col("split") if "split" in qa.columns else F.lit("train")).alias("split"),
            F.col("qa_id"),
            F.col("doc_id"),
            F.col("domain"),
            F.col("persona"),
            F.col("question"),
            F.col("answer"),
            (F.col("answer_type") if "answer_type" in qa.columns else F.lit(None).cast("string")).alias("answer_type"),
            (F.col(DIFFICULTY_COLUMN) if DIFFICULTY_COLUMN in qa.columns else F.lit(None).cast("boolean")).alias(DIFFICULTY_COLUMN),
        ).alias("extra_info"),
        *(["split"] if "split" in qa.columns else []),
    )


def to_trl(qa: DataFrame) -> DataFrame:
    """TRL's conversational prompt layout; `answer` is passed to reward functions as a column."""
    prompt = F.array(F.struct(F.lit("user").alias("role"), F.concat_ws("\n\n", F.col("question"), F.lit(INSTRUCTION)).alias("content")))
    return qa.select(prompt.alias("prompt"), "answer", "qa_id", *(["split"] if "split" in qa.columns else []))


def write_single_parquet(df: DataFrame, path: Path) -> int:
    """One Parquet file (trainers load files, not Spark folders); returns rows written."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"
    df.coalesce(1).write.mode("overwrite").parquet(str(tmp))
    parts = sorted(tmp.glob("part-*.parquet"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if parts:
        shutil.move(str(parts[0]), str(path))
    else:  # an empty DataFrame writes no part file: write an empty one with the schema
        df.limit(0).toPandas().to_parquet(path)
    shutil.rmtree(tmp, ignore_errors=True)
    return df.count()


def write_jsonl(df: DataFrame, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in df.toLocalIterator():  # streams partition by partition
            fh.write(json.dumps(row.asDict(recursive=True), ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n
