"""Spark Connect server fixtures: the server itself is `webscale_rl.connect_server` (also behind
`webscale-rl connect-server`), one implementation for users and tests. The server's Python workers
import webscale_rl from this checkout (the folder it is imported from goes on their PYTHONPATH)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from webscale_rl.connect_server import ConnectServer, running_connect_server
from webscale_rl.spark import resolve_connector_jars

from .s3_server import S3Server, s3_server  # noqa: F401  (fixture used below)

__all__ = ["ConnectServer", "running_connect_server", "connect_server", "connect_server_s3"]


@pytest.fixture(scope="session")
def connect_server() -> Iterator[ConnectServer]:
    """A Spark Connect server with Delta on 127.0.0.1 for the whole test run."""
    with running_connect_server() as server:
        yield server


@pytest.fixture(scope="session")
def connect_server_s3(s3_server: S3Server) -> Iterator[ConnectServer]:  # noqa: F811
    """A Connect server that also reaches the moto S3 server: hadoop-aws and its AWS SDK bundle
    from the jar cache, the s3a settings as server --conf, the fake credentials in its env."""
    jars = resolve_connector_jars([s3_server.uri()])
    with running_connect_server(extra_jars=jars, conf=s3_server.spark_conf) as server:
        yield server
