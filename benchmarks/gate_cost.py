"""What a landing gate costs next to a Great Expectations validation of the same `qa` batch,
measured side by side in one run (one Spark session, same data, same suite from suites.py).

    python benchmarks/gate_cost.py [--rows 20000] [--repeats 3]

Prints the median seconds of each and their ratio. The gate runs on every stage's batch, GX once
per run on `qa`; on a shared 2-core machine the absolute numbers are noisy, the ratio less so.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from pyspark.sql import functions as F

    from webscale_rl import DOMAINS
    from webscale_rl.config import Config, QualityConfig
    from webscale_rl.quality.expectations import validate_qa
    from webscale_rl.quality.gates import gate_batch
    from webscale_rl.spark import build_local_session
    from webscale_rl.warehouse import REJECTION_SCHEMA

    cfg = Config()
    cfg.spark.master = "local[2]"
    cfg.spark.shuffle_partitions = 2
    spark = build_local_session(cfg)
    domains = F.array(*[F.lit(d) for d in DOMAINS])
    qa = (
        spark.range(args.rows)
        .select(
            F.concat(F.lit("q"), F.col("id").cast("string")).alias("qa_id"),
            F.concat(F.lit("d"), (F.col("id") / 3).cast("long").cast("string")).alias("doc_id"),
            F.lit("Some pretraining text about rivers and cities. " * 20).alias("pretrain_text"),
            domains[F.col("id") % 10].alias("domain"),
            F.concat(F.lit("persona "), (F.col("id") % 7).cast("string")).alias("persona"),
            F.concat(F.lit("Which city is number "), F.col("id").cast("string"), F.lit("?")).alias("question"),
            F.concat(F.lit("City "), (F.col("id") * 7919 % 100003).cast("string")).alias("answer"),
            F.lit("entity").alias("answer_type"),
            F.lit("bench").alias("run_id"),
        )
        .cache()
    )
    qa.count()
    rejected = spark.createDataFrame([], REJECTION_SCHEMA)
    q = QualityConfig()
    with tempfile.TemporaryDirectory() as tmp:
        gate_s, gx_s = [], []
        validate_qa(spark, qa, q, Path(tmp), "warmup")  # GX's first call builds its project (not counted)
        for i in range(args.repeats):
            t0 = time.perf_counter()
            outcome = gate_batch(spark, "decontaminate", "qa", qa, rejected, args.rows, q, tmp, f"r{i}")
            gate_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = validate_qa(spark, qa, q, Path(tmp), f"r{i}")
            gx_s.append(time.perf_counter() - t0)
        assert outcome.ok and result.success, (outcome.message(), result.summary())
    g, x = statistics.median(gate_s), statistics.median(gx_s)
    print(f"rows={args.rows} repeats={args.repeats}")
    print(f"landing gate (Spark aggregates): {g:.2f} s   ({len(outcome.results)} checks)")
    print(f"Great Expectations (same suite): {x:.2f} s   ({result.evaluated} expectations, Data Docs)")
    print(f"ratio GX / gate: {x / g:.1f}x")
    spark.stop()


if __name__ == "__main__":
    main()
