"""spark-submit on a real Spark standalone cluster on 127.0.0.1: a master and two workers started
from the pyspark distribution's own launcher (spark-class), each worker with its own work dir.
The package is built as a wheel and shipped with --py-files, the Delta jars with --jars; the
pipeline runs against the fake LLM endpoint in this process. Checked: the tasks ran in executors
on both workers, and the tables equal a local[*] run of the same input."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark
import pytest

from tests.support.docs import ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from tests.support.warehouse_compare import duplicate_keys, snapshot
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.spark import cached_delta_jars

SPARK_HOME = Path(pyspark.__file__).parent
# ARTICLE_VARIANTS are variants of two articles: near-duplicate dedup (tested in test_dedup) is off so they all go on.
OVERRIDES = ["llm.backoff_base_s=0.01", "llm.rows_per_partition=2", "quality.enabled=false", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "OPENAI_API_KEY": "sk-test",
    }


def master_state(webui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{webui_port}/json/", timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture
def standalone_cluster(tmp_path):
    """(master URL, web UI port, worker work dirs); every process is killed at teardown."""
    port, webui = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    env = cluster_env()
    procs = []

    def start(args, name):
        log = open(tmp_path / f"{name}.log", "w")
        procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    work_dirs = [tmp_path / "worker-1", tmp_path / "worker-2"]
    try:
        start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui)], "master")
        for i, wd in enumerate(work_dirs, 1):
            wd.mkdir()
            start(
                [
                    "org.apache.spark.deploy.worker.Worker",
                    f"spark://127.0.0.1:{port}",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--work-dir",
                    str(wd),
                    "--webui-port",
                    "0",
                ],
                f"worker-{i}",
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                workers = [w for w in master_state(webui).get("workers", []) if w["state"] == "ALIVE"]
                if len(workers) == 2:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = "\n".join((tmp_path / f"{n}.log").read_text()[-1500:] for n in ("master", "worker-1", "worker-2"))
                pytest.fail(f"standalone cluster did not come up:\n{logs}")
            time.sleep(1)
        yield f"spark://127.0.0.1:{port}", webui, work_dirs
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


def build_wheel(out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("webscale_rl-*.whl")
    return wheel


@pytest.mark.spark_processes
def test_spark_submit_on_a_standalone_cluster_equals_a_local_run(spark, standalone_cluster, tmp_path):
    master, webui, work_dirs = standalone_cluster
    jars = cached_delta_jars()
    assert jars, "Delta jars are not in the cache (run `webscale-rl setup`)"
    wheel = build_wheel(tmp_path / "dist")
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS), encoding="utf-8")
    wh_cluster, wh_local = tmp_path / "wh-cluster", tmp_path / "wh-local"

    with FakeOpenAI() as fake:
        sets = [f"llm.base_url={fake.base_url}", *OVERRIDES]
        cmd = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            master,
            "--jars",
            ",".join(str(j) for j in jars),
            "--py-files",
            str(wheel),
            "--driver-memory",
            "1g",
            "--executor-memory",
            "768m",
            "--conf",
            "spark.sql.shuffle.partitions=4",
            "--conf",
            "spark.databricks.delta.snapshotPartitions=2",
            # Delta's SQL extension is static: the launcher must pass it. The Delta catalog is not
            # passed: the job adds it at run time when the launcher did not.
            "--conf",
            "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
            str(REPO / "jobs" / "run_pipeline.py"),
            "--input",
            str(inputs),
            "--warehouse",
            str(wh_cluster),
            "--config",
            "openai",
        ]
        for s in sets:
            cmd += ["--set", s]
        done = subprocess.run(cmd, cwd=tmp_path, env=cluster_env(), capture_output=True, text=True, timeout=900)
        (tmp_path / "submit.out").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
        problems = [ln for ln in done.stderr.splitlines() if " INFO " not in ln and " WARN " not in ln]
        assert done.returncode == 0, (done.stdout[-2000:], "\n".join(problems)[-4000:])
        assert "accounted for" in done.stdout

        run_pipeline([str(inputs)], wh_local, load_config("openai", sets), spark=spark, log=lambda _: None)

    # The application ran on the cluster and its tasks ran in executors on both workers.
    apps = master_state(webui)["completedapps"] + master_state(webui)["activeapps"]
    assert len(apps) == 1, apps
    for wd in work_dirs:
        logs = [p.read_text(errors="replace") for p in wd.glob("app-*/*/stderr")]
        assert any("Running task" in log for log in logs), f"no task ran on the worker with work dir {wd}"

    # The embedded model on a cluster: executors on other hosts cannot reach the driver's loopback,
    # so the run refuses at start with one line naming the setting to use instead (issue 16).
    local_llm = [str(tmp_path / "wh-refused") if a == str(wh_cluster) else a for a in cmd] + ["--set", "llm.provider=local"]
    refused = subprocess.run(local_llm, cwd=tmp_path, env=cluster_env(), capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr[-2000:]
    (tmp_path / "refused.out").write_text(refused.stdout + "\n--- stderr ---\n" + refused.stderr)
    # spark-submit's Python runner merges the driver's stderr into its stdout.
    message = [ln for ln in (refused.stdout + refused.stderr).splitlines() if ln.startswith("error: ")]
    assert len(message) == 1, refused.stdout[-3000:]
    assert "llm.provider=local" in message[0] and f"master {master}" in message[0] and "llm.base_url" in message[0]
    assert not (tmp_path / "wh-refused" / "documents").exists()

    assert duplicate_keys(spark, wh_cluster) == {}
    cluster, local = snapshot(spark, wh_cluster), snapshot(spark, wh_local)
    assert cluster.keys() == local.keys() and len(local["qa"]) == 8
    for table in local:
        assert cluster[table] == local[table], table
