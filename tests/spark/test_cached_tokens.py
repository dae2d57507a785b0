"""Cached prompt tokens through an LLM stage (issue 20, item 4): the tokens the endpoint says came
from its prompt cache reach the stage's rows and `llm_usage`, verify sums its second call's, and the
cost report prices them at `cached_input_per_1m`. The fake reports 100 prompt + 20 completion tokens
a call; `cached_tokens=` says how many of the 100 were cached."""

from __future__ import annotations

import pytest

from tests.spark.test_verify import PAIRS, answers
from tests.support.fake_server import FakeOpenAI
from webscale_rl.config import load_config
from webscale_rl.llm.pricing import cost_summary
from webscale_rl.stages import llm_filter, verify
from webscale_rl.stages.base import StageContext
from webscale_rl.stages.llm_stage import CACHED_PROMPT_TOKENS, PROMPT_TOKENS, llm_usage

WORDS = "river delta basin estuary current meander valley source mouth tributary".split()
N_DOCS = 12


def _ctx(fake: FakeOpenAI, *settings: str) -> StageContext:
    cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.cache=false", "llm.backoff_base_s=0.01", "llm.max_retries=1", *settings])
    return StageContext(cfg=cfg, run_id="r", llm_base_url=fake.base_url, llm_api_key="sk-test", log=lambda _: None)


def test_an_llm_stage_counts_the_cached_prompt_tokens_and_prices_them_at_the_cached_rate(spark):
    docs = spark.createDataFrame(
        [(f"d{i}", None, " ".join(WORDS[(i + j) % len(WORDS)] for j in range(60)), "test", 60) for i in range(N_DOCS)],
        "doc_id string, url string, text string, source string, n_words int",
    )
    with FakeOpenAI(cached_tokens=lambda messages: 75) as fake:
        ctx = _ctx(fake)
        marked = llm_filter.STAGE.run(docs, ctx).marked.cache()
        usage = llm_usage(marked)
        assert fake.chat_requests == N_DOCS
    assert usage["calls"] == N_DOCS and usage["prompt_tokens"] == 100 * N_DOCS
    assert usage["cached_prompt_tokens"] == 75 * N_DOCS
    # llm_filter runs on gpt-4.1-mini: $0.40 input, $0.10 cached input, $1.60 output per 1M tokens.
    metrics, lines = cost_summary(ctx.cfg, {"llm_filter": usage})
    assert metrics["llm_filter.llm.cost_usd"] == pytest.approx(N_DOCS * (25 * 0.40 + 75 * 0.10 + 20 * 1.60) / 1e6)
    assert metrics["llm_filter.llm.cached_prompt_share"] == pytest.approx(0.75)
    assert lines[1].endswith(f"/ {75 * N_DOCS} (75%)")
    # A batch staged before the column existed: no cached tokens, every prompt token at full price.
    old = llm_usage(marked.drop(CACHED_PROMPT_TOKENS))
    assert old["cached_prompt_tokens"] == 0 and old["prompt_tokens"] == 100 * N_DOCS
    old_metrics, _ = cost_summary(ctx.cfg, {"llm_filter": old})
    assert old_metrics["llm_filter.llm.cost_usd"] == pytest.approx(N_DOCS * (100 * 0.40 + 20 * 1.60) / 1e6)


def test_verify_sums_the_cached_tokens_of_both_calls_into_the_row(spark):
    def cached(messages: list[dict]) -> int:  # the grounded call carries the document, the closed-book one not
        return 60 if "<document>" in messages[-1]["content"] else 30

    with FakeOpenAI(reply=answers, cached_tokens=cached) as fake:
        marked = verify.verify_qa(spark.createDataFrame(PAIRS), _ctx(fake)).marked.cache()
        rows = [r.asDict() for r in marked.collect()]
        assert fake.chat_requests == 2 * len(PAIRS)
    assert {(r["qa_id"], r[PROMPT_TOKENS], r[CACHED_PROMPT_TOKENS]) for r in rows} == {(p.qa_id, 200, 90) for p in PAIRS}
    assert llm_usage(marked)["cached_prompt_tokens"] == 90 * len(PAIRS)
