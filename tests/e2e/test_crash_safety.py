"""Crash safety: the CLI run is SIGKILLed (its whole process group: driver, JVM, Python workers)
at several points — while ingesting, between the two commits of dedup's landing, with profile's
batch staged but not landed, in the middle of the LLM generate stage, right after check landed —
each time resumed by the next run, which is killed at a later point. The final run completes, and
the warehouse equals one clean uninterrupted run: same rows, no duplicate key, nothing missing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.docs import ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from tests.support.warehouse_compare import duplicate_keys, snapshot
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


def run_cli(inputs: Path, wh: Path, fake, *, kill_on_line: str | None = None, delay_s: float = 0.0, kill_at: str | None = None):
    """Run the CLI in its own process group; SIGKILL the group once a log line matches the regex
    `kill_on_line` (after `delay_s`), or let WEBSCALE_RL_KILL_AT kill it. Returns (code, log)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "OPENAI_API_KEY": "sk-test",
        "WEBSCALE_RL_DRIVER_MEMORY": "1g",
    }
    env.pop("WEBSCALE_RL_KILL_AT", None)
    if kill_at:
        env["WEBSCALE_RL_KILL_AT"] = kill_at
    args = [sys.executable, "-m", "webscale_rl.cli", "run", "--input", str(inputs), "--warehouse", str(wh), "--config", "openai"]
    for o in overrides(fake):
        args += ["--set", o]
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    killer = None
    try:
        for line in proc.stdout:
            lines.append(line)
            if kill_on_line and killer is None and re.search(kill_on_line, line):
                killer = threading.Timer(delay_s, os.killpg, (proc.pid, signal.SIGKILL))
                killer.start()
        code = proc.wait(timeout=300)
    finally:
        if killer:
            killer.join()
        try:  # whatever survived the driver (the JVM, Python workers) goes too
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return code, "".join(lines)


# (log line that triggers the kill, seconds after it, or a fault-injection point)
KILLS = [
    (r"^\[ingest\] start", 0.0, None),  # while reading and ingesting
    (None, 0.0, "kept:dedup"),  # dedup's kept rows committed, its rejection (the copy) not
    (None, 0.0, "staged:profile"),  # profile's LLM results committed to staging, nothing landed
    (r"\[generate\] \d+ LLM call", 1.5, None),  # in the middle of the generate stage's LLM calls
    (r"^\[check\] done", 0.0, None),  # right after check landed
]


@pytest.mark.spark_processes
def test_killed_runs_converge_to_a_clean_run(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS), encoding="utf-8")
    wh = tmp_path / "wh"
    with FakeOpenAI(latency_s=0.4) as fake:
        logs = []
        for line, delay, point in KILLS:
            code, log = run_cli(inputs, wh, fake, kill_on_line=line, delay_s=delay, kill_at=point)
            logs.append(log)
            assert code == -signal.SIGKILL, f"run was not killed at {line or point}:\n{log[-2000:]}"
        generate_log = logs[3]
        assert "[generate] done" not in generate_log and "LLM call(s) to make" in generate_log
        code, log = run_cli(inputs, wh, fake)
        assert code == 0, log[-3000:]
        # Batches of killed runs were picked up, not redone; the last run had only the rest to do.
        # Profile's batch, staged by run 3, was landed by run 4 with no profile call made again.
        assert "[profile] landed batch of interrupted run" in logs[3]
        assert re.search(r"\[profile\] done .*nothing new to process", logs[3]), logs[3][-3000:]
        assert "accounted for" in log

        clean = tmp_path / "wh-clean"
        cfg = load_config("openai", overrides(fake))
        run_pipeline([str(inputs)], clean, cfg, spark=spark, log=lambda _: None)
    assert duplicate_keys(spark, wh) == {}
    resumed, reference = snapshot(spark, wh), snapshot(spark, clean)
    assert resumed.keys() == reference.keys()
    for table in reference:
        assert resumed[table] == reference[table], table
    assert len(reference["qa"]) == 8  # 4 documents × 2 personas: the comparison is not of empty tables
