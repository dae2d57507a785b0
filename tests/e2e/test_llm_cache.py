"""The response cache end to end: a re-run of a finished run makes zero LLM calls; a run killed half
way (SIGKILL) resumes paying only for the replies it had not received; `llm.cache: false` bypasses."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from tests.support.docs import ARTICLE, ARTICLE2
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse


def write_docs(path: Path, n: int) -> Path:
    docs = [{"id": f"d{i}", "text": f"Report {i}. " + (ARTICLE if i % 2 else ARTICLE2)} for i in range(n)]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


def config(fake: FakeOpenAI, *extra: str):
    return load_config(
        "openai",
        # The documents are copies of two articles: near-duplicate dedup would leave two of them.
        [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01", "llm.max_concurrency=4", "mlflow.enabled=false", "dedup.fuzzy.enabled=false", *extra],
    )


def test_rerun_makes_zero_calls_and_cache_can_be_bypassed(spark, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    docs = write_docs(tmp_path / "docs.jsonl", 6)
    warehouse = tmp_path / "wh"

    def warehouse_with_cache(name: str) -> Path:
        # Runs are incremental, so a rerun into the same warehouse has no work at all; a new
        # warehouse that holds the first one's response cache redoes every stage, and the cache answers.
        fresh = tmp_path / name
        fresh.mkdir()
        shutil.copytree(warehouse / "llm_cache", fresh / "llm_cache")
        return fresh

    with FakeOpenAI() as fake:
        first = run_pipeline([str(docs)], warehouse, config(fake), until="generate", spark=spark, log=lambda _: None)
        paid = len(fake.requests)
        assert fake.peak_in_flight <= 4  # llm.max_concurrency holds for the whole job (2 tasks at once)
        run_pipeline([str(docs)], warehouse, config(fake), until="generate", spark=spark, log=lambda _: None)
        assert len(fake.requests) == paid  # the same warehouse again: nothing to do
        lines: list[str] = []
        cached = warehouse_with_cache("wh2")
        second = run_pipeline([str(docs)], cached, config(fake), until="generate", spark=spark, log=lines.append)
        assert len(fake.requests) == paid  # zero calls: every reply came from the cache
        run_pipeline([str(docs)], warehouse_with_cache("wh3"), config(fake, "llm.cache=false"), until="llm_filter", spark=spark, log=lambda _: None)
        assert len(fake.requests) == paid + 6  # bypassed: every document asked again
    assert paid == 6 + 6 + 12  # judge 6, profile 6, generate 2 personas each
    by_stage = {s.stage: s.llm for s in second.stages if s.llm}
    assert {k: (v["calls"], v["cache_hits"]) for k, v in by_stage.items()} == {"llm_filter": (0, 6), "profile": (0, 6), "generate": (0, 12)}
    assert any("run.llm" not in ln and ln.strip().startswith("run") and " 0 / 24 / " in ln for ln in lines), lines
    # Same rows as the paid run: the cache answers exactly what the model said.
    q = lambda wh, s: sorted(r["question"] for r in Warehouse(spark, wh).read("qa_candidates").filter(F.col("run_id") == s.run_id).collect())  # noqa: E731
    assert q(warehouse, first) == q(cached, second) and len(q(warehouse, first)) == 12


def test_killed_run_resumes_paying_only_for_what_is_missing(spark, tmp_path):
    """A run killed mid-stage keeps every slice it staged; the next run lands them and pays only for
    the items of slices that never committed (the slice in flight is paid again, nothing else)."""
    docs = write_docs(tmp_path / "docs.jsonl", 40)
    warehouse = tmp_path / "wh"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WEBSCALE_RL_DRIVER_MEMORY": "1g"}
    env.pop("OPENAI_API_KEY", None)
    with FakeOpenAI(latency_s=0.25) as fake:
        args = [
            sys.executable,
            "-m",
            "webscale_rl.cli",
            "run",
            "--config",
            "openai",
            "--input",
            str(docs),
            "--warehouse",
            str(warehouse),
            "--until",
            "llm_filter",
        ]
        for setting in (
            f"llm.base_url={fake.base_url}",
            "llm.max_concurrency=2",
            "llm.slice_rows=8",
            "mlflow.enabled=false",
            "dedup.fuzzy.enabled=false",
            "spark.master=local[2]",
        ):
            args += ["--set", setting]
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        log: list[str] = []
        try:
            for line in proc.stdout:  # killed right after the second slice commits
                log.append(line)
                if "(slice 2/" in line:
                    break
            assert any("(slice 2/5 staged)" in ln for ln in log), "".join(log[-40:])
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its JVM, mid-stage
            proc.wait()
        staged = Warehouse(spark, warehouse).read_batch("llm_filter", Warehouse(spark, warehouse).staged_batches("llm_filter")[0]).count()
        assert 8 <= staged < 40
        time.sleep(2)  # Python workers of the killed JVM hang up within about a second
        fake.requests.clear()
        lines: list[str] = []
        summary = run_pipeline([str(docs)], warehouse, config(fake), until="llm_filter", spark=spark, log=lines.append)
        resumed_calls = len(fake.requests)
    landed = [ln for ln in lines if "[llm_filter] landed batch of interrupted run" in ln]
    assert len(landed) == 1 and re.search(r"kept (\d+), rejected (\d+)", landed[0]), lines
    kept, rejected = map(int, re.search(r"kept (\d+), rejected (\d+)", landed[0]).groups())
    assert kept + rejected == staged
    assert resumed_calls == 40 - staged  # only the items no slice staged are paid again
    usage = summary.stages[-1].llm
    assert (usage["cache_hits"], usage["calls"]) == (0, 40 - staged)
    wh = Warehouse(spark, warehouse)
    ids = lambda table: {r["doc_id"] for r in wh.read(table).select("doc_id").collect()} if wh.exists(table) else set()  # noqa: E731
    assert ids("judged") | ids("rejections") == {f"d{i}" for i in range(40)}  # every document, over both runs
    cache = Warehouse(spark, warehouse).read_llm_cache()
    assert cache is not None and cache.select("key").distinct().count() == 40  # the staged replies reached the cache at landing
    assert Warehouse(spark, warehouse).staged_batches("llm_filter") == []
