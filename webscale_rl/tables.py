"""Transitional: the module-level table functions that code outside the pipeline core still
calls (`quality/gates.py`, the notebooks). Each forwards to `Warehouse`, which owns the tables;
delete this module once those call a `Warehouse` directly.

`warehouse` may be a `Warehouse` (its catalog mode applies) or a folder (tables are folders)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from .warehouse import REJECTION_SCHEMA, REJECTIONS, Warehouse

__all__ = ["REJECTIONS", "REJECTION_SCHEMA", "append_once", "exists", "history", "latest_version", "read"]


def _of(spark: SparkSession, warehouse: Warehouse | str | Path) -> Warehouse:
    return warehouse if isinstance(warehouse, Warehouse) else Warehouse(spark, str(warehouse))


def append_once(df: DataFrame, warehouse: Warehouse | str | Path, name: str, batch_id: str) -> int:
    return _of(df.sparkSession, warehouse).append_once(df, name, batch_id)


def exists(spark: SparkSession, warehouse: Warehouse | str | Path, name: str) -> bool:
    return _of(spark, warehouse).exists(name)


def read(spark: SparkSession, warehouse: Warehouse | str | Path, name: str, version: int | None = None) -> DataFrame:
    return _of(spark, warehouse).read(name, version)


def latest_version(spark: SparkSession, warehouse: Warehouse | str | Path, name: str) -> int:
    return _of(spark, warehouse).latest_version(name)


def history(spark: SparkSession, warehouse: Warehouse | str | Path, name: str) -> list[dict]:
    return _of(spark, warehouse).history(name)
