"""Batch API mode against the fake server's /v1/files and /v1/batches: requests go up as JSONL,
results come back by custom_id, transient failures get a new batch, the rest end with a reason,
and cache hits are never submitted. A driver SIGKILLed while its batch is in progress costs a wait,
not a second payment: the next run resumes the same batch."""

from __future__ import annotations

import json
import signal

import pytest
from pyspark.sql import functions as F

from tests.support.cli_runs import run_cli, set_args
from tests.support.docs import ARTICLE, ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.warehouse_compare import snapshot
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse


def test_batch_mode_maps_results_back_retries_and_loses_nothing(spark, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    texts = {
        "ok1": "Report one. " + ARTICLE,
        "ok2": "Report two. " + ARTICLE,
        "flaky": "FAULT_500_ONCE " + ARTICLE,
        "expires": "FAULT_HANG " + ARTICLE,
        "refused": "FAULT_REFUSAL " + ARTICLE,
        "failed": "FAULT_BATCH_FAIL " + ARTICLE,
    }
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": k, "text": v}) for k, v in texts.items()) + "\n")
    warehouse = tmp_path / "wh"
    with FakeOpenAI() as fake:
        cfg = load_config(
            "openai",
            [
                f"llm.base_url={fake.base_url}",
                "llm.mode=batch",
                "llm.batch_poll_s=0.01",
                "llm.batch_max_requests=1",
                "llm.batch_max_rounds=1",
                "mlflow.enabled=false",
                "dedup.fuzzy.enabled=false",
            ],  # the documents are copies of one article
        )
        lines: list[str] = []
        summary = run_pipeline([str(docs)], warehouse, cfg, until="llm_filter", spark=spark, log=lines.append)
        assert not fake.requests  # no online calls at all
        # Round 0 runs 5 lines (the failed batch runs none), round 1 runs flaky and expires again.
        assert fake.batch_lines == 5 + 2
        first_lines = fake.batch_lines
        run_pipeline([str(docs)], warehouse, cfg, until="llm_filter", spark=spark, log=lambda _: None)
        resubmitted = fake.batch_lines - first_lines
    this_run = F.col("run_id") == summary.run_id
    kept = {r["doc_id"] for r in Warehouse(spark, warehouse).read("judged").filter(this_run).collect()}
    # Over both runs: the re-run replaced the endpoint failures' rejections, so each item has one.
    rejected = Warehouse(spark, warehouse).read("rejections").collect()
    reasons = {r["doc_id"]: r["reason"] for r in rejected}
    assert len(rejected) == len(reasons)
    assert kept == {"ok1", "ok2", "flaky"}
    assert reasons == {"expires": "llm_error:batch_expired", "refused": "llm_error:refusal", "failed": "llm_error:batch_failed"}
    usage = summary.stages[-1].llm
    assert usage["calls"] == 6 and usage["retries"] == 3  # flaky, expires and failed went twice
    assert any("round 1" in ln for ln in lines) and any("ended 'failed'" in ln for ln in lines)
    # The re-run tries again only what an endpoint failure rejected (a refusal is the model's
    # answer): expires twice (it expires again, then one more round); the failing batch runs none.
    assert resubmitted == 2


def batch_overrides(fake: FakeOpenAI) -> list[str]:
    return [
        f"llm.base_url={fake.base_url}",
        "llm.mode=batch",
        "llm.batch_poll_s=0.05",
        "quality.enabled=false",
        "mlflow.enabled=false",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "dedup.fuzzy.enabled=false",  # ARTICLE_VARIANTS are variants of two articles
    ]


@pytest.mark.spark_processes
def test_a_driver_killed_while_its_batch_runs_resumes_it_and_pays_once(spark, tmp_path):
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS), encoding="utf-8")
    wh, clean = tmp_path / "wh", tmp_path / "wh-clean"
    with FakeOpenAI(batch_polls=10**6) as fake:  # every batch stays in_progress until the test says
        args = ["run", "--input", str(inputs), "--warehouse", str(wh), "--config", "openai", "--until", "llm_filter", *set_args(batch_overrides(fake))]
        code, log = run_cli(args, kill_on_line=r"\[llm_filter\] round 0: 0/1 batch\(es\) finished", timeout_s=300)
        assert code == -signal.SIGKILL, log[-3000:]
        killed_run = log.split("webscale-rl run ", 1)[1].split(":", 1)[0]
        assert fake.uploads == 1 and list(fake.batches) == ["batch_1"]
        fake.batch_polls = 1  # the provider finishes the batch while no driver waits for it
        lines: list[str] = []
        cfg = load_config("openai", batch_overrides(fake))
        resumed = run_pipeline([str(inputs)], wh, cfg, until="llm_filter", spark=spark, log=lines.append)
        # Over both runs the judge's requests went up once, in the batch the killed run paid for.
        assert (fake.uploads, list(fake.batches)) == (1, ["batch_1"])
        assert f"  [llm_filter] resuming batch batch_1 submitted by run {killed_run} (5 requests)" in lines, lines
        judged = resumed.stages[-1]
        assert (judged.stage, judged.rows_in, judged.llm["calls"]) == ("llm_filter", 5, 5)
        run_pipeline([str(inputs)], clean, cfg, until="llm_filter", spark=spark, log=lambda _: None)
        assert fake.uploads == 2  # the never-killed run's one batch
    ledger = [(r["batch_id"], r["stage"], r["run_id"], r["used_by"], r["status"]) for r in Warehouse(spark, wh).read_llm_batches().collect()]
    assert ledger == [("batch_1", "llm_filter", killed_run, resumed.run_id, "collected")]
    got, want = snapshot(spark, wh), snapshot(spark, clean)
    assert got == want and len(want["judged"]) == 4  # the same tables as a run never killed
