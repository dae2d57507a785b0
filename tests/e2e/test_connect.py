"""Spark Connect end to end. pyspark allows no Connect client session in a process that already runs a
classic session (`SESSION_ALREADY_EXIST`), and the suite's shared `spark` fixture is one, so everything
over Connect runs in a process of its own: the Delta/UDF checks in connect_checks.py (beside this file)
under pytest, and whole pipeline runs as `webscale-rl run --remote` / `SPARK_REMOTE` CLI processes
against a local Connect server (webscale_rl.connect_server). The CLI processes get a JAVA_HOME with no
Java in it: a run that started a JVM on the client (a local session, a jar resolution) would fail."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fake_server import FakeOpenAI
from tests.support.paths import FIXTURES, REPO
from tests.support.s3_server import S3Server, s3_server  # noqa: F401  (fixture)
from tests.support.warehouse_compare import duplicate_keys, read_from, snapshot
from webscale_rl.config import load_config
from webscale_rl.connect_server import running_connect_server
from webscale_rl.pipeline import run_pipeline
from webscale_rl.spark import resolve_connector_jars
from webscale_rl.warehouse import Warehouse

pytestmark = pytest.mark.spark_processes

GOLDEN = FIXTURES / "golden"
OVERRIDES = ["llm.max_retries=2", "llm.backoff_base_s=0.01", "llm.rows_per_partition=4", "quality.on_failure=warn"]


def test_the_warehouse_operations_and_udfs_over_spark_connect():
    checks = REPO / "tests" / "e2e" / "connect_checks.py"
    cmd = [sys.executable, "-m", "pytest", str(checks), "-q", "-p", "no:cacheprovider", "-rA"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"^5 passed", done.stdout, re.M), done.stdout[-2000:]  # every check ran


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a Connect client process: no JVM it could start, no MLflow server from outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "MLFLOW_TRACKING_URI", "PYSPARK_GATEWAY_PORT")}
    env.update(PYTHONPATH=str(REPO), JAVA_HOME="/nonexistent/no-java-on-a-connect-client", **extra)
    return env


def cli_run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "webscale_rl.cli", "run", *args]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout[-4000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done


def test_the_whole_pipeline_over_spark_connect_on_s3_gives_the_tables_of_a_classic_run(spark, s3_server: S3Server, tmp_path):  # noqa: F811
    """The issue's command over Connect (`SPARK_REMOTE`), input and warehouse on s3a://, every stage (the
    LLM stages, the GX gates, MLflow, decontamination with an eval set): the server has hadoop-aws but no
    s3a settings, so the run reaches the bucket only through its --conf values (session settings). Its
    tables, read back from the bucket, equal a classic local run's row for row (run ids aside); the LLM
    cache's replies reach the bucket; MLflow and the GX results of a remote warehouse live in a local
    folder of their own."""
    inputs, eval_set = GOLDEN / "input.jsonl", str(GOLDEN / "mini_bench.jsonl")
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="connect-run/in/input.jsonl", Body=inputs.read_bytes())
    warehouse, classic = s3_server.uri("connect-run", "wh"), tmp_path / "classic"
    local_files = Path(Warehouse(spark, warehouse).local_dir())
    shutil.rmtree(local_files, ignore_errors=True)  # left by an earlier test session: this run must make its own
    with FakeOpenAI() as fake:
        settings = [f"llm.base_url={fake.base_url}", *OVERRIDES]
        cfg = load_config("openai", [*settings, "mlflow.enabled=false", f"decontam.eval_sets=[{eval_set}]"])
        run_pipeline([str(inputs)], classic, cfg, spark=spark, log=lambda _: None)
        paid = len(fake.requests)
        with running_connect_server(extra_jars=resolve_connector_jars([s3_server.uri()])) as server:
            args = ["--input", s3_server.uri("connect-run", "in") + "/", "--warehouse", warehouse, "--config", "openai", "--eval-set", eval_set]
            args += [a for c in s3_server.conf_args for a in ("--conf", c)]
            args += [a for s in settings for a in ("--set", s)]
            done = cli_run(args, client_env(SPARK_REMOTE=server.url, OPENAI_API_KEY="sk-connect"))
        assert len(fake.requests) == 2 * paid  # the Connect run paid what the classic run paid, no more
    assert re.search(r"^\s+ingest\s+in\s+12\s+kept\s+10\b", done.stdout, re.M), done.stdout
    assert "decontaminate in" in done.stdout and "=== QA quality report ===" in done.stdout
    assert "accounted for" in done.stdout and "live LLM call counts are off on Spark Connect" in done.stdout
    keys = s3_server.keys("connect-run/wh/")
    for table in ("documents", "filtered", "qa", "rejections", "llm_cache"):
        assert f"connect-run/wh/{table}/_delta_log/00000000000000000000.json" in keys, table
    remote = s3_server.download("connect-run/wh/", tmp_path / "wh-from-s3")
    expected = snapshot(spark, classic)
    rejected_at = {json.loads(r)["stage"] for r in expected["rejections"]}
    assert expected["qa"] and {"ingest", "filter", "dedup", "llm_filter"} <= rejected_at  # not an empty comparison
    # The one difference: each document's `source` names the file it came from, here the bucket's copy.
    on_s3 = read_from(snapshot(spark, remote), s3_server.uri("connect-run", "in", "input.jsonl"), str(inputs))
    assert on_s3 == expected
    assert duplicate_keys(spark, remote) == {}
    assert list((local_files / "_quality").glob("qa_validation_*.json")), "the GX validation of 'qa' left no result"
    assert (local_files / "_mlflow" / "mlflow.db").is_file(), "the MLflow run was not recorded"
    assert not (tmp_path / "s3a:").exists() and not (REPO / "s3a:").exists()


def test_a_launch_only_conf_over_spark_connect_is_refused_by_name(tmp_path):
    """No server is needed: the setting is refused before the client connects."""
    cmd = [sys.executable, "-m", "webscale_rl.cli", "run", "--input", str(GOLDEN / "input.jsonl"), "--warehouse", str(tmp_path / "wh")]
    cmd += ["--remote", "sc://127.0.0.1:1", "--conf", "spark.jars.packages=org.example:x:1"]
    done = subprocess.run(cmd, cwd=REPO, env=client_env(), capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--conf spark.jars.packages: cannot be set from a Spark Connect client" in done.stderr
    assert not Path(tmp_path / "wh").exists() or not any(Path(tmp_path / "wh").iterdir())
