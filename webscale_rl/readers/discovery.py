"""Finding the input files: local folders are walked in Python, other URIs listed through Spark.
A folder holding `_delta_log` is a Delta table, read as a table and never as its part files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from .columns import InputError, first_line
from .paths import (
    FORMAT_BY_SUFFIX,
    HIDDEN_PREFIXES,
    SINGLE_DOCUMENT_FORMATS,
    SUPPORTED_SUFFIXES,
    escape_glob,
    format_of,
    is_local_path,
    local_path,
)

log = logging.getLogger(__name__)


def discover(spark: SparkSession, paths: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Files per format (in a stable order, without repeats) and Delta table folders."""
    files_by_format: dict[str, list[str]] = {fmt: [] for fmt in set(FORMAT_BY_SUFFIX.values())}
    delta_tables: list[str] = []
    seen: set[str] = set()
    for given in paths:
        if is_local_path(given):
            found, tables = list_local(local_path(given))
        else:
            found, tables = list_with_spark(spark, given), []
        delta_tables.extend(t for t in tables if t not in delta_tables)
        for file in found:
            if file not in seen:
                seen.add(file)
                files_by_format[format_of(file)].append(file)
    return files_by_format, delta_tables


def list_local(path: str) -> tuple[list[str], list[str]]:
    """Supported files under a local path, and the Delta tables below it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(path, "no such file or folder")
    p = Path(os.path.abspath(p))  # the same normalised form Spark reports in file paths
    if p.is_file():
        return [_checked_single_file(p)], []
    if (p / "_delta_log").is_dir():
        # Reading the part files directly would include files the table has already removed.
        return [], [str(p)]
    files, tables = _walk_folder(p)
    if not files and not tables:
        raise InputError(str(p), f"folder holds no supported input file (extensions: {SUPPORTED_SUFFIXES})")
    _report_skipped(p)
    return files, tables


def _checked_single_file(p: Path) -> str:
    if format_of(p.name) is None:
        raise InputError(str(p), f"unsupported file type; supported extensions: {SUPPORTED_SUFFIXES}")
    if p.name.startswith(HIDDEN_PREFIXES):
        # Spark silently skips such files even when named explicitly: say so instead.
        raise InputError(str(p), "file names starting with '.' or '_' are ignored by Spark; rename the file")
    return str(p)


def _walk_folder(folder: Path) -> tuple[list[str], list[str]]:
    """Supported, non-hidden files in sorted order; sub-folders holding `_delta_log` are tables."""
    files: list[str] = []
    tables: list[str] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN_PREFIXES))
        for d in list(dirs):
            if (Path(root) / d / "_delta_log").is_dir():
                tables.append(str(Path(root) / d))
                dirs.remove(d)
        files.extend(str(Path(root) / n) for n in sorted(names) if not n.startswith(HIDDEN_PREFIXES) and format_of(n))
    return files, tables


def _report_skipped(folder: Path) -> None:
    """Files a folder walk leaves out are named, never dropped in silence."""
    skipped = [
        str(Path(root) / n)
        for root, dirs, names in os.walk(folder)
        for n in names
        if not n.startswith(HIDDEN_PREFIXES) and format_of(n) is None and "_delta_log" not in root
    ]
    if skipped:
        shown = ", ".join(sorted(skipped)[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning(
            "skipped %d file(s) of unsupported type in %s: %s (supported: %s)",
            len(skipped),
            folder,
            shown,
            SUPPORTED_SUFFIXES,
        )


def list_with_spark(spark: SparkSession, path: str) -> list[str]:
    """Supported files under a remote path, listed by Spark (only names and sizes are read)."""
    try:
        listing = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(escape_glob(path))
            .select("path", "length")  # the content column is pruned, files are not read
            .collect()
        )
    except Exception as exc:  # AnalysisException PATH_NOT_FOUND, or a file system error
        raise InputError(path, f"cannot list: {first_line(exc)}") from exc
    files = sorted(row.path for row in listing if format_of(row.path))
    if not files:
        if len(listing) == 1 and listing[0].path.rstrip("/") == path.rstrip("/"):
            raise InputError(path, f"unsupported file type; supported extensions: {SUPPORTED_SUFFIXES}")
        raise InputError(path, f"holds no supported input file (extensions: {SUPPORTED_SUFFIXES})")
    empty = [row.path for row in listing if row.length == 0 and format_of(row.path) not in (None, *SINGLE_DOCUMENT_FORMATS)]
    if empty:
        raise InputError(empty[0], "file is empty")
    return files
