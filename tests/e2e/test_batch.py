"""Batch API mode against the fake server's /v1/files and /v1/batches: requests go up as JSONL,
results come back by custom_id, transient failures get a new batch, the rest end with a reason,
and cache hits are never submitted."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from tests.support.docs import ARTICLE
from tests.support.fake_server import FakeOpenAI
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
