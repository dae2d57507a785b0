"""Run in its own process (it needs a JVM with hadoop-aws, unlike the suite's shared session): the
tables of a warehouse on s3a:// as tests.support.warehouse_compare sees them. Prints one line
`RESULT {"snapshot": {table: [row json, ...]}, "duplicates": {table: n}}`.

usage: python -m tests.support.s3_warehouse_snapshot s3a://bucket/wh [--conf key=value ...]
"""

from __future__ import annotations

import argparse
import json

from tests.support.warehouse_compare import duplicate_keys, snapshot
from webscale_rl.config import Config
from webscale_rl.spark import apply_spark_conf, build_local_session


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("warehouse")
    ap.add_argument("--conf", action="append", default=[])
    args = ap.parse_args(argv)
    cfg = apply_spark_conf(Config(), args.conf)
    cfg.spark.master, cfg.spark.shuffle_partitions = "local[2]", 2
    spark = build_local_session(cfg, [args.warehouse])
    out = {"snapshot": snapshot(spark, args.warehouse), "duplicates": duplicate_keys(spark, args.warehouse)}
    print("RESULT " + json.dumps(out), flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
