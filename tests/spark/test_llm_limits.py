"""The job-wide LLM limits hold whatever the cluster runs at once: the split comes from the
partitions the stage makes, not from a guess of the cluster's slots (issue 16)."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_server import FakeOpenAI
from webscale_rl.config import load_config
from webscale_rl.stages import llm_filter, llm_stage
from webscale_rl.stages.base import StageContext

WORDS = "river delta basin estuary current meander valley source mouth tributary".split()


@pytest.mark.parametrize("guess", [1, 8])
def test_peak_in_flight_never_exceeds_the_cap_whatever_the_slot_guess(spark, monkeypatch, guess):
    # local[2] runs two tasks at once; the guess says 1 (too few: the old split gave each task the
    # whole cap) or 8 (too many: capacity unused, never exceeded).
    monkeypatch.setattr(llm_stage, "concurrent_tasks", lambda _spark: guess)
    monkeypatch.setattr(llm_stage, "TASK_IN_FLIGHT", 1)  # a cap of 4 split across tasks, as a large cap is
    docs = spark.createDataFrame(
        [(f"d{i}", None, " ".join(WORDS[(i + j) % len(WORDS)] for j in range(60)), "test", 60) for i in range(96)],
        "doc_id string, url string, text string, source string, n_words int",
    )
    with FakeOpenAI(latency_s=0.1) as fake:
        cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.max_concurrency=4", "llm.rows_per_partition=8", "llm.cache=false"])
        ctx = StageContext(cfg=cfg, run_id="r", llm_base_url=fake.base_url, llm_api_key="sk-test", log=lambda _: None)
        t0 = time.monotonic()
        rows = llm_filter.STAGE.run(docs, ctx).marked.collect()
        elapsed = time.monotonic() - t0
        stats = fake.stats()
    assert len(rows) == 96 and stats["requests"] == 96
    assert 1 <= stats["peak_in_flight"] <= 4, stats
    # Requests per minute follow from the cap: never more than 4 in flight at 0.1 s each.
    assert stats["requests"] / elapsed <= 4 / 0.1 * 1.05
