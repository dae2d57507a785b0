"""A local Spark Connect server with Delta Lake, started from pyspark's own distribution.

`running_connect_server()` runs pyspark's bin/spark-submit with SPARK_HOME = the pyspark package
dir and the SparkConnectServer class, the cached Delta jars and Delta's two settings, on a free
port of 127.0.0.1; it waits until the port accepts connections and stops the server (its whole
process group) on exit. `connect_server` is the pytest fixture around it. The server's Python
workers run this interpreter with the repository on PYTHONPATH, so UDFs can import webscale_rl.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

from webscale_rl.spark import (
    ARROW_CONF,
    DELTA_CONF,
    resolve_connector_jars,
    resolve_delta_jars,
)

from .s3_server import S3Server, free_port, s3_server  # noqa: F401  (fixture used below)

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
READY_LINE = "Spark Connect server started"


@dataclass
class ConnectServer:
    url: str  # sc://127.0.0.1:PORT, for SPARK_REMOTE or SparkSession.builder.remote
    port: int
    log_path: Path
    start_s: float  # seconds from launch until the server accepted connections

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_command(port: int, jars: Iterable[Path], conf: dict[str, str]) -> list[str]:
    settings = {
        **DELTA_CONF,
        **ARROW_CONF,
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.databricks.delta.snapshotPartitions": "2",
        **conf,
    }
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", "local[2]", "--driver-memory", "1g"]
    cmd += ["--class", SERVER_CLASS, "--name", "webscale-rl Connect test server"]
    cmd += ["--jars", ",".join(str(j) for j in jars)]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    return cmd


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env["SPARK_HOME"] = str(SPARK_HOME)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


def wait_until_listening(proc: subprocess.Popen, port: int, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark Connect server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if READY_LINE in log_path.read_text(errors="replace"):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"Spark Connect server not ready after {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop_process_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextmanager
def running_connect_server(
    extra_jars: Iterable[Path] = (),
    conf: dict[str, str] | None = None,
    timeout_s: float = 300,
    port: int | None = None,
) -> Iterator[ConnectServer]:
    port = port or free_port()
    jars = [*resolve_delta_jars(), *extra_jars]
    with tempfile.TemporaryDirectory(prefix="connect-server-") as workdir:
        log_path = Path(workdir) / "server.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            # its own process group, so stopping it also stops the JVM spark-submit started
            proc = subprocess.Popen(
                server_command(port, jars, conf or {}),
                cwd=workdir,
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_listening(proc, port, log_path, timeout_s)
            yield ConnectServer(f"sc://127.0.0.1:{port}", port, log_path, round(time.monotonic() - t0, 1))
        finally:
            stop_process_group(proc)


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


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.support.connect_server [--port 15002] [--conf k=v ...]`: a local Connect
    server with Delta for trying `SPARK_REMOTE=sc://127.0.0.1:15002 webscale-rl run ...`; Ctrl-C stops it."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--port", type=int, default=15002)
    ap.add_argument("--conf", action="append", default=[], help="extra server setting key=value (repeatable)")
    ap.add_argument("--s3a", action="store_true", help="also load hadoop-aws and its AWS SDK (from the jar cache)")
    args = ap.parse_args(argv)
    conf = dict(item.split("=", 1) for item in args.conf)
    jars = resolve_connector_jars(["s3a://any"]) if args.s3a else []
    with running_connect_server(extra_jars=jars, conf=conf, port=args.port) as server:
        print(f"Spark Connect server with Delta ready in {server.start_s} s: SPARK_REMOTE={server.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
