"""Crash safety: the CLI run is SIGKILLed (its whole process group: driver, JVM, Python workers)
at several points — while ingesting, between the two commits of dedup's landing, with profile's
batch staged but not landed, in the middle of the LLM generate stage — each time resumed by the
next run, which is killed at a later point. The final run completes, and the warehouse equals one
clean uninterrupted run: same rows, no duplicate key, nothing missing.

The input and the warehouse are in object storage (a local moto S3 server), where a kill between
staging and landing meets S3's semantics rather than a disk's; every warehouse operation goes
through the same Delta code whatever the URI, so a local warehouse takes the same paths. `export`
then reads the converged `qa` from the bucket."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.support.cli_runs import run_cli, set_args
from tests.support.docs import ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from tests.support.s3_server import s3_server  # noqa: F401  (fixture)
from tests.support.warehouse_compare import duplicate_keys, read_from, snapshot
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline


def overrides(fake) -> list[str]:
    return [
        f"llm.base_url={fake.base_url}",
        "llm.backoff_base_s=0.01",
        "llm.max_concurrency=2",
        "llm.rows_per_partition=2",
        "quality.enabled=false",
        "mlflow.enabled=false",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "dedup.fuzzy.enabled=false",  # ARTICLE_VARIANTS are variants of two articles (near-dup dedup: test_dedup)
    ]


def run(inputs: str, wh: str, fake, *extra: str, **kill) -> tuple[int, str]:
    args = ["run", "--input", inputs, "--warehouse", wh, "--config", "openai", *set_args(overrides(fake)), *extra]
    return run_cli(args, timeout_s=600, **kill)


# (log line that triggers the kill, seconds after it, or a fault-injection point)
KILLS = [
    (r"^\[ingest\] start", 0.0, None),  # while reading and ingesting
    (None, 0.0, "kept:dedup"),  # dedup's kept rows committed, its rejection (the copy) not
    (None, 0.0, "staged:profile"),  # profile's LLM results committed to staging, nothing landed
    (r"\[generate\] \d+ LLM call", 1.5, None),  # in the middle of the generate stage's LLM calls
]


def killed_runs_then_a_full_one(inputs: str, wh: str, fake, kills, *extra: str) -> list[str]:
    """Each kill point in turn (each run resumes the last), then a run to the end. → the logs."""
    logs = []
    for line, delay, point in kills:
        code, log = run(inputs, wh, fake, *extra, kill_on_line=line, delay_s=delay, kill_at=point)
        logs.append(log)
        assert code == -signal.SIGKILL, f"run was not killed at {line or point}:\n{log[-2000:]}"
    code, log = run(inputs, wh, fake, *extra)
    assert code == 0, log[-3000:]
    assert "accounted for" in log
    return [*logs, log]


def assert_equals_a_clean_run(spark, resumed_wh: Path, inputs: Path, copy: str, fake, tmp_path: Path) -> None:
    """The clean run reads `inputs` from disk; the resumed runs read its copy at `copy`."""
    clean = tmp_path / "wh-clean"
    run_pipeline([str(inputs)], clean, load_config("openai", overrides(fake)), spark=spark, log=lambda _: None)
    assert duplicate_keys(spark, resumed_wh) == {}
    resumed = read_from(snapshot(spark, resumed_wh), copy, str(inputs))
    reference = snapshot(spark, clean)
    assert resumed.keys() == reference.keys()
    for table in reference:
        assert resumed[table] == reference[table], table
    assert len(reference["qa"]) == 4  # 4 documents, one fact each (the fake gives both personas one answer): not an empty comparison


def write_inputs(path: Path) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS), encoding="utf-8")
    return path


@pytest.mark.spark_processes
def test_killed_runs_converge_with_the_warehouse_on_s3(spark, s3_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    inputs = write_inputs(tmp_path / "docs.jsonl")
    s3_server.client().upload_file(str(inputs), s3_server.bucket, "crash/in/docs.jsonl")
    conf = [arg for c in s3_server.conf_args for arg in ("--conf", c)]
    with FakeOpenAI(latency_s=0.4) as fake:
        logs = killed_runs_then_a_full_one(s3_server.uri("crash", "in") + "/", s3_server.uri("crash", "wh"), fake, KILLS, *conf)
        generate_log = logs[3]
        assert "[generate] done" not in generate_log and "LLM call(s) to make" in generate_log
        # Batches of killed runs were picked up, not redone; the last run had only the rest to do.
        # Profile's batch, staged by run 3, was landed by run 4 with no profile call made again.
        assert "[profile] landed batch of interrupted run" in logs[3]
        assert re.search(r"\[profile\] done .*nothing new to process", logs[3]), logs[3][-3000:]
        local = s3_server.download("crash/wh/", tmp_path / "wh-from-s3")
        assert_equals_a_clean_run(spark, local, inputs, s3_server.uri("crash", "in", "docs.jsonl"), fake, tmp_path)
    # export reads the table from the bucket
    out = tmp_path / "qa.jsonl"
    code, exported = run_cli(["export", "--warehouse", s3_server.uri("crash", "wh"), "--format", "jsonl", "--out", str(out), *conf])
    assert code == 0, exported[-3000:]
    assert sorted(json.loads(line)["qa_id"] for line in out.read_text().splitlines()) == sorted(json.loads(r)["qa_id"] for r in snapshot(spark, local)["qa"])
    assert not (REPO / "s3a:").exists()  # the warehouse really was in the bucket
