"""A local Spark Connect server with Delta Lake, for trying runs over Spark Connect on one machine.

`running_connect_server()` runs pyspark's own bin/spark-submit (SPARK_HOME = the pyspark package)
with the SparkConnectServer class, the cached Delta jars (and hadoop-aws when asked) and Delta's two
settings, on 127.0.0.1; it waits until the port accepts connections and stops the server (its whole
process group) on exit. `serve()` is `webscale-rl connect-server`: the same, in the foreground until
Ctrl-C. The server's Python workers run this interpreter with this package importable, so the
stages' UDFs unpickle there. The server shares this machine's disk: a local --warehouse works.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyspark

from .spark import ARROW_CONF, DELTA_CONF, EnvironmentProblem, resolve_connector_jars, resolve_delta_jars

SPARK_HOME = Path(pyspark.__file__).resolve().parent
PACKAGE_PARENT = Path(__file__).resolve().parents[1]  # the folder webscale_rl is imported from
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
READY_LINE = "Spark Connect server started"
DEFAULT_PORT = 15002  # Spark Connect's own default


@dataclass
class ConnectServer:
    url: str  # sc://127.0.0.1:PORT, for SPARK_REMOTE or SparkSession.builder.remote
    port: int
    log_path: Path
    start_s: float  # seconds from launch until the server accepted connections
    process: subprocess.Popen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(port: int, jars: Iterable[Path], conf: dict[str, str], master: str = "local[2]", driver_memory: str = "1g") -> list[str]:
    settings = {
        **DELTA_CONF,
        **ARROW_CONF,
        "spark.connect.grpc.binding.address": "127.0.0.1",  # this machine only: the server runs any client's code
        "spark.connect.grpc.binding.port": str(port),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.databricks.delta.snapshotPartitions": "2",
        **conf,
    }
    cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", master, "--driver-memory", driver_memory]
    cmd += ["--class", SERVER_CLASS, "--name", "webscale-rl local Spark Connect server"]
    cmd += ["--jars", ",".join(str(j) for j in jars)]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    return cmd


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SPARK_REMOTE", None)  # the server is a classic Spark application
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    env["SPARK_HOME"] = str(SPARK_HOME)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH")) if p)
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
    master: str = "local[2]",
    driver_memory: str = "1g",
) -> Iterator[ConnectServer]:
    port = port or free_port()
    jars = [*resolve_delta_jars(), *extra_jars]
    with tempfile.TemporaryDirectory(prefix="connect-server-") as workdir:
        log_path = Path(workdir) / "server.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            # its own process group, so stopping it also stops the JVM spark-submit started
            proc = subprocess.Popen(
                server_command(port, jars, conf or {}, master, driver_memory),
                cwd=workdir,
                env=server_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_listening(proc, port, log_path, timeout_s)
            yield ConnectServer(f"sc://127.0.0.1:{port}", port, log_path, round(time.monotonic() - t0, 1), proc)
        finally:
            stop_process_group(proc)


def serve(
    port: int = DEFAULT_PORT,
    s3a: bool = False,
    conf: dict[str, str] | None = None,
    master: str = "local[*]",
    driver_memory: str = "4g",
    log: Callable[[str], None] = print,
) -> int:
    """`webscale-rl connect-server`: run the server until Ctrl-C (→ 0) or until it dies (→ 1)."""
    jars = resolve_connector_jars(["s3a://any"]) if s3a else []
    # The server runs in its own session (Ctrl-C does not reach it): SIGTERM (kill, timeout) must
    # unwind like Ctrl-C so the server's process group is stopped, not orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with running_connect_server(extra_jars=jars, conf=conf, port=port, master=master, driver_memory=driver_memory) as server:
            return _serve_until_stopped(server, s3a, log)
    except (RuntimeError, TimeoutError) as exc:  # did not start: the message holds the server log's tail
        raise EnvironmentProblem(f"the Spark Connect server on port {port} did not start: {exc}") from exc


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _serve_until_stopped(server: ConnectServer, s3a: bool, log: Callable[[str], None]) -> int:
    log(f"Spark Connect server with Delta{' and s3a' if s3a else ''} ready in {server.start_s} s (log: {server.log_path})")
    log(f"use it with: export SPARK_REMOTE={server.url}   (or webscale-rl run --remote {server.url} ...); Ctrl-C stops it")
    try:
        while server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        log("stopping the Spark Connect server")
        return 0
    log(f"the Spark Connect server exited with {server.process.returncode}:\n{server.log()[-3000:]}")
    return 1
