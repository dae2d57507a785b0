"""Helpers for tests that compare whole warehouses: table contents without run ids, and keys
that occur more than once (an idempotent pipeline has none)."""

from __future__ import annotations

import json

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from webscale_rl.warehouse import Warehouse

# Table → the key each of its rows must hold once.
KEYS = {
    "documents": ("doc_id",),
    "filtered": ("doc_id",),
    "deduped": ("doc_id",),
    "dedup_signatures": ("doc_id", "params"),
    "judged": ("doc_id",),
    "profiles": ("doc_id",),
    "qa_candidates": ("qa_id",),
    "checked": ("qa_id",),
    "verified": ("qa_id",),
    "qa": ("qa_id",),
    "rejections": ("stage", "doc_id", "qa_id"),
}


def snapshot(spark: SparkSession, warehouse) -> dict[str, list[str]]:
    """Every table's rows as sorted JSON strings, without run_id (which run made a row differs)."""
    out = {}
    for name in KEYS:
        if not Warehouse(spark, warehouse).exists(name):
            continue
        df = Warehouse(spark, warehouse).read(name).drop("run_id")
        out[name] = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str) for r in df.collect())
    return out


def read_from(tables: dict[str, list[str]], copy: str, original: str) -> dict[str, list[str]]:
    """A snapshot of a run that read its input from `copy` (a bucket's copy of a local file) as if
    it had read `original`: each document's `source` names the file it came from, the one expected
    difference from a run on the original."""
    return {t: sorted(r.replace(copy, original) for r in rows) for t, rows in tables.items()}


def duplicate_keys(spark: SparkSession, warehouse) -> dict[str, int]:
    """Table → number of keys held by more than one row (only tables that have any)."""
    dupes = {}
    for name, key in KEYS.items():
        if not Warehouse(spark, warehouse).exists(name):
            continue
        n = Warehouse(spark, warehouse).read(name).groupBy(*key).count().filter(F.col("count") > 1).count()
        if n:
            dupes[name] = n
    return dupes


def versions(spark: SparkSession, warehouse) -> dict[str, int]:
    return {name: Warehouse(spark, warehouse).latest_version(name) for name in KEYS if Warehouse(spark, warehouse).exists(name)}
