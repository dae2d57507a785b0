"""Run in its own process (it needs a JVM with hadoop-aws, and moto's IAM switch is process-wide):
`check_store` on s3a:// URIs, through a classic session or a Spark Connect one. Prints one JSON
object; tests/spark/test_store_errors.py asserts on it.

usage: python -m tests.support.store_error_checks --case NAME=ROLE:URI [--case ...] [--conf k=v ...]
           [--denied-bucket NAME] [--connect]

--denied-bucket starts a second moto server in this process with IAM checks on, makes the bucket
and a user without any policy, and points the bucket at that server with the user's keys (so S3
answers 403). Its keys after the checks are reported as "denied_keys".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import boto3
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer
from pyspark.sql import SparkSession

from tests.support.s3_server import free_port
from webscale_rl.config import Config
from webscale_rl.spark import apply_spark_conf, build_local_session, resolve_connector_jars
from webscale_rl.store_check import check_store


@contextmanager
def denied_server(bucket: str) -> Iterator[tuple[list[str], callable]]:
    """A moto server that refuses a known user without permissions: the bucket's --conf strings, and
    a function listing the bucket's keys (with IAM checks off again)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
        iam.create_user(UserName="no-permissions")
        key = iam.create_access_key(UserName="no-permissions")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # IAM checks on from here

        def keys() -> list[str]:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
            return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

        prefix = f"spark.hadoop.fs.s3a.bucket.{bucket}"
        conf = [f"{prefix}.endpoint={endpoint}", f"{prefix}.access.key={key['AccessKeyId']}", f"{prefix}.secret.key={key['SecretAccessKey']}"]
        yield conf, keys
    finally:
        server.stop()


def session(stack: ExitStack, conf: list[str], connect: bool) -> SparkSession:
    cfg = apply_spark_conf(Config(), conf)
    if not connect:
        cfg.spark.master, cfg.spark.shuffle_partitions = "local[2]", 2
        return build_local_session(cfg, ["s3a://any"])
    from tests.support.connect_server import running_connect_server

    jars = resolve_connector_jars(["s3a://any"])
    server = stack.enter_context(running_connect_server(extra_jars=jars, conf=cfg.spark.conf))
    return SparkSession.builder.remote(server.url).getOrCreate()


def run_case(spark: SparkSession, role: str, uri: str) -> dict:
    t0 = time.monotonic()
    try:
        check_store(spark, uri, role=role)
        error = None
    except Exception as exc:  # noqa: BLE001  (reported, the test asserts on type and text)
        error = {"type": type(exc).__name__, "message": str(exc)}
    return {"error": error, "seconds": round(time.monotonic() - t0, 1)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", action="append", default=[], help="NAME=ROLE:URI")
    ap.add_argument("--conf", action="append", default=[])
    ap.add_argument("--denied-bucket")
    ap.add_argument("--connect", action="store_true")
    args = ap.parse_args(argv)
    out: dict = {"aws_env": sorted(k for k in os.environ if k.startswith("AWS_ACCESS"))}
    with ExitStack() as stack:
        conf, denied_keys = list(args.conf), None
        if args.denied_bucket:
            extra, denied_keys = stack.enter_context(denied_server(args.denied_bucket))
            conf += extra
        spark = session(stack, conf, args.connect)
        for case in args.case:
            name, _, rest = case.partition("=")
            role, _, uri = rest.partition(":")
            out[name] = run_case(spark, role, uri)
        if denied_keys:
            out["denied_keys"] = denied_keys()
        spark.stop()
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main()), flush=True)
