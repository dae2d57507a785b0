"""Incremental dedup: ten runs, each bringing 10 % new documents, against one run over them all.

The dedup stage runs as `webscale-rl run --from dedup --until dedup` runs it (`runner.run_stage`:
the work no run has done, the fingerprint pass, matching against `dedup_signatures`, the staged
batch, quality gates, landing into `deduped`, `rejections` and `dedup_signatures`), in one Spark
session, so the JVM start is not counted. Each run's upstream is the documents so far, as the
`filtered` table grows.

Corpus: the Python 3.11 documentation (Debian `python3.11-doc`, cached by tests/support/real_corpora)
scaled as benchmarks/filter_dedup.py does: copies with 30 % of words replaced, then 5 % exact and 10 %
near copies, shuffled, so every run has duplicates of documents kept by earlier runs.

    python benchmarks/incremental_dedup.py                 # scale 3 (~35 MB), 10 runs
    python benchmarks/incremental_dedup.py --scale 1 --runs 10 --no-gates

Prints the seconds of every run, the sum, the one-shot time and the ratio (target <= 1.5), and with
--baseline the same ten runs re-hashing every kept document each time (the cost before the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def log(msg: str) -> None:
    print(msg, flush=True)


def corpus(scale: int, work: Path) -> list[dict]:
    from filter_dedup import scaled_corpus

    from tests.support.real_corpora import python_doc

    base = [d["text"] for d in python_doc()]
    docs, mb = scaled_corpus(base, scale, work / "jsonl")
    log(f"corpus: {len(docs):,} documents, {mb:.1f} MB (python3.11-doc x{scale}, with exact and near copies)")
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-gates", action="store_true", help="land without the quality gates")
    ap.add_argument("--baseline", action="store_true", help="also ten runs that re-hash every kept document (the cost before dedup_signatures)")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import functions as F

    from webscale_rl.config import Config
    from webscale_rl.runner import run_stage
    from webscale_rl.spark import build_local_session
    from webscale_rl.stages import dedup, signatures
    from webscale_rl.stages.base import StageContext
    from webscale_rl.storage import local_path
    from webscale_rl.warehouse import Warehouse

    work = Path(args.work or tempfile.mkdtemp(prefix="incremental_dedup_"))
    docs = corpus(args.scale, work)
    cfg = Config()
    cfg.spark.master = "local[2]"
    cfg.quality.gates = not args.no_gates
    spark = build_local_session(cfg)

    # The filter stage's output for every document, each with the run that brings it.
    n = len(docs)
    rows = [
        (d["id"], f"https://example.org/{d['id']}", d["text"], "bench", "jsonl", len(d["text"]), len(d["text"].split()), None, i * args.runs // n)
        for i, d in enumerate(docs)
    ]
    schema = "doc_id string, url string, text string, source string, source_format string, n_chars int, n_words int, text_hash string, part int"
    spark.createDataFrame(rows, schema).write.mode("overwrite").parquet(str(work / "filtered"))
    filtered = spark.read.parquet(str(work / "filtered"))

    def timed(wh: Warehouse, upto: int, run_id: str) -> tuple[float, object]:
        ctx = StageContext(cfg=cfg, run_id=run_id, warehouse=wh, log=lambda _: None)
        upstream = filtered.filter(F.col("part") <= upto).drop("part")
        t0 = time.perf_counter()
        summary = run_stage(wh, dedup.STAGE, upstream, ctx, first=False)
        return time.perf_counter() - t0, summary

    # Warm-up (Python workers, Delta): 50 documents in a warehouse of their own, not timed.
    warm = Warehouse(spark, str(work / "warmup"))
    ctx = StageContext(cfg=cfg, run_id="warmup", warehouse=warm, log=lambda _: None)
    run_stage(warm, dedup.STAGE, spark.createDataFrame(rows[:50], schema).drop("part"), ctx, first=False)

    whole = Warehouse(spark, str(work / "one-shot"))
    one_shot, summary = timed(whole, args.runs - 1, "one-shot")
    log(f"one run over all {n:,} documents: {one_shot:.1f} s (kept {summary.kept:,}, rejected {summary.rejected:,})")

    def ten_runs(name: str, rehash: bool) -> tuple[Warehouse, list[float]]:
        wh, seconds = Warehouse(spark, str(work / name)), []
        for k in range(args.runs):
            if rehash and k:  # as before dedup_signatures: every run hashes every kept document again
                shutil.rmtree(local_path(wh.path(signatures.SIGNATURES)))
                wh = Warehouse(spark, wh.root)
            s, summary = timed(wh, k, f"run-{k + 1:02d}")
            seconds.append(s)
            log(f"{name} run {k + 1:2d}: {summary.rows_in:,} new documents, {s:.1f} s (kept {summary.kept:,}, rejected {summary.rejected:,})")
        return wh, seconds

    wh, seconds = ten_runs("incremental", rehash=False)
    total = sum(seconds)
    kept, kept_once = wh.read("deduped").count(), whole.read("deduped").count()
    stored = wh.read(signatures.SIGNATURES).count()
    rehash = ten_runs("rehash-every-run", rehash=True)[1] if args.baseline else None
    log("")
    log(f"machine: {platform.node()}, {os.cpu_count()} cores, Spark local[2]; {time.strftime('%Y-%m-%d')}; gates {'on' if cfg.quality.gates else 'off'}")
    log(f"corpus: {n:,} documents; kept by the {args.runs} runs {kept:,}, by the one run {kept_once:,}; dedup_signatures rows {stored:,}")
    log(f"{args.runs} incremental runs: {total:.1f} s (first {seconds[0]:.1f} s, last {seconds[-1]:.1f} s: last / first {seconds[-1] / seconds[0]:.2f})")
    if rehash:
        log(f"{args.runs} runs re-hashing every kept document: {sum(rehash):.1f} s (last {rehash[-1]:.1f} s: last / first {rehash[-1] / rehash[0]:.2f})")
    log(f"one run over the same total: {one_shot:.1f} s")
    log(f"ratio: {total / one_shot:.2f}x (target <= 1.5x)")
    spark.stop()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
