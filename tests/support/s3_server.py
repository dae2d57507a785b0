"""An S3-compatible server on 127.0.0.1 (moto's server mode) for tests of s3a:// warehouses.

`running_s3_server()` starts it on a free port, sets fake credentials in the standard AWS env vars
(the S3A default provider chain reads them; a Spark JVM started afterwards inherits them),
creates a bucket, and yields an `S3Server` with the endpoint and the Spark settings a session
needs; everything is stopped and restored on exit. `s3_server` is the pytest fixture around it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    # Spark settings for this server, as `--conf key=value` strings and as a dict.
    conf_args: list[str] = field(default_factory=list)

    @property
    def spark_conf(self) -> dict[str, str]:
        return dict(arg.split("=", 1) for arg in self.conf_args)

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3a://{self.bucket}", *(p.strip("/") for p in parts)])

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=FAKE_CREDENTIALS["AWS_REGION"])

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def copy_prefix(self, source: str, target: str) -> int:
        """Copy every object under `source` to the same key under `target` (a Delta table copies
        this way: its log names files relative to the table). → objects copied."""
        client, keys = self.client(), self.keys(source)
        for key in keys:
            client.copy_object(Bucket=self.bucket, Key=target + key[len(source) :], CopySource={"Bucket": self.bucket, "Key": key})
        return len(keys)

    def download(self, prefix: str, dest: Path) -> Path:
        """The objects under `prefix` as local files under `dest` (e.g. a warehouse, to compare it
        with the suite's own Spark session, which has no S3 connector)."""
        client = self.client()
        for key in self.keys(prefix):
            local = dest / key[len(prefix) :].lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(self.bucket, key, str(local))
        return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3a_conf_args(endpoint: str) -> list[str]:
    """What a Spark session needs to reach a plain-HTTP, path-style S3 server at `endpoint`."""
    return [
        f"spark.hadoop.fs.s3a.endpoint={endpoint}",
        "spark.hadoop.fs.s3a.endpoint.region=us-east-1",
        "spark.hadoop.fs.s3a.path.style.access=true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled=false",
        # fail fast against a dead test server instead of retrying for minutes
        "spark.hadoop.fs.s3a.attempts.maximum=2",
        "spark.hadoop.fs.s3a.retry.limit=2",
    ]


@contextmanager
def fake_aws_credentials() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def running_s3_server(bucket: str = "webscale-rl") -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with fake_aws_credentials():
            endpoint = f"http://127.0.0.1:{port}"
            s3 = S3Server(endpoint=endpoint, bucket=bucket, conf_args=s3a_conf_args(endpoint))
            s3.client().create_bucket(Bucket=bucket)
            yield s3
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server with one empty bucket, fake credentials in the env, for the whole test run."""
    with running_s3_server() as s3:
        yield s3
