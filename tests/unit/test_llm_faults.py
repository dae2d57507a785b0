"""The engine against the fault-injecting fake server (real HTTP on 127.0.0.1): each error kind ends
retried or as its exact reason, 429s slow the task down as the server asks, the in-flight cap and
the rate limits hold, and no item is ever lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.fake_server import FakeOpenAI
from webscale_rl.llm.engine import EndpointSpec, complete_many
from webscale_rl.llm.ratelimit import AdaptiveLimiter, TokenBucket, exhausted_wait_s, parse_duration_s, server_wait_s
from webscale_rl.prompts import load_prompt
from webscale_rl.stages.llm_filter import REPLY_SCHEMA


def spec_for(fake: FakeOpenAI, **kw) -> EndpointSpec:
    defaults = dict(base_url=fake.base_url, model="fake", api_key="sk-test", timeout_s=5, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=4)
    defaults.update(kw)
    return EndpointSpec(**defaults)


def run(fake, texts, **kw):
    messages = [load_prompt("llm_filter").messages(document=t) for t in texts]
    return complete_many(spec_for(fake, **kw), messages, "document_judgement", REPLY_SCHEMA)


@pytest.mark.parametrize(
    "marker, reason, attempts",
    [
        ("FAULT_REFUSAL", "llm_error:refusal", 1),
        ("FAULT_CONTEXT", "llm_error:context_length", 1),
        ("FAULT_TRUNCATED", "llm_error:truncated", 3),
        ("FAULT_MALFORMED", "llm_error:malformed_reply", 3),
        ("FAULT_BODY", "llm_error:malformed_reply", 3),
    ],
)
def test_each_final_error_kind_has_its_reason(marker, reason, attempts):
    with FakeOpenAI() as fake:
        (res,) = run(fake, [f"{marker} a document"])
    assert (res.ok, res.reason, res.attempts) == (False, reason, attempts)


def test_server_errors_and_rate_limits_end_as_reasons_after_bounded_retries():
    with FakeOpenAI(fault_rate=1.0, seed=3) as fake:
        results = run(fake, [f"doc {i}" for i in range(6)], max_retries=1)
    assert all(not r.ok and r.attempts == 2 for r in results)
    assert {r.reason for r in results} <= {"llm_error:rate_limit", "llm_error:server_error", "llm_error:timeout", "llm_error:truncated"}
    assert len(fake.requests) == 12  # bounded: 6 items × 2 attempts


def test_hang_is_a_timeout_within_the_per_request_limit():
    with FakeOpenAI(hang_s=3) as fake:
        t0 = time.monotonic()
        (res,) = run(fake, ["FAULT_HANG doc"], timeout_s=0.3, max_retries=0)
    assert res.reason == "llm_error:timeout"
    assert "after 0.3 s" in res.detail or "Timeout" in res.detail
    assert time.monotonic() - t0 < 2


def test_twenty_percent_faults_lose_nothing_and_cap_holds():
    with FakeOpenAI(fault_rate=0.2, latency_s=0.02, hang_s=0.5, seed=7) as fake:
        results = run(fake, [f"document number {i}" for i in range(120)], concurrency=6, timeout_s=0.3, max_retries=6)
    assert len(results) == 120 and all(r is not None for r in results)
    assert sum(r.ok for r in results) >= 118  # 6 retries at 20 % faults: failures are rare, never silent
    assert all(r.ok or r.reason.startswith("llm_error:") for r in results)
    assert fake.peak_in_flight <= 6
    assert sum(r.attempts for r in results) > 120  # retries happened and were counted
    assert sum(r.rate_limited for r in results) == fake.faults["429"]


def test_retry_after_is_honoured_and_429_halves_the_cap():
    headers = {"retry-after": "0.4"}
    with FakeOpenAI(rate_limit_headers=headers) as fake:
        t0 = time.monotonic()
        (res,) = run(fake, ["FAULT_429_ONCE doc"], backoff_max_s=5)
    assert res.ok and res.attempts == 2 and res.rate_limited == 1
    assert time.monotonic() - t0 >= 0.4

    limiter = AdaptiveLimiter(8)
    limiter.on_rate_limit(0.01)
    limiter.on_rate_limit(0.01)  # the same burst of 429s halves once
    assert limiter.limit == 4
    for _ in range(20):
        limiter.on_success()
    assert 4 < limiter.limit <= 8


def test_rate_limit_headers():
    assert parse_duration_s("6m0s") == 360 and parse_duration_s("20ms") == 0.02 and parse_duration_s("1.5") == 1.5
    assert parse_duration_s("soon") is None
    assert server_wait_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert (
        server_wait_s(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s", "x-ratelimit-remaining-tokens": "10", "x-ratelimit-reset-tokens": "9s"}
        )
        == 2
    )
    assert exhausted_wait_s({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1s"}) == 1
    assert exhausted_wait_s({"x-ratelimit-remaining-tokens": "5", "x-ratelimit-reset-tokens": "1s"}) is None


def test_requests_per_minute_are_spread_out():
    with FakeOpenAI() as fake:
        t0 = time.monotonic()
        results = run(fake, [f"doc {i}" for i in range(6)], requests_per_minute=600)  # 10/s, burst 10... of 6
        burst = time.monotonic() - t0
        t0 = time.monotonic()
        results += run(fake, [f"doc {i}" for i in range(12)], requests_per_minute=240)  # 4/s, burst 4
        slow = time.monotonic() - t0
    assert all(r.ok for r in results)
    assert burst < 1.0 and slow >= 1.8  # 12 requests at 4/s after a burst of 4: ≥ 2 s


def test_token_bucket_waits_for_tokens():
    async def go():
        bucket = TokenBucket(rate_per_s=100, capacity=100)
        t0 = time.monotonic()
        await bucket.take(100)
        await bucket.take(50)
        return time.monotonic() - t0

    assert 0.45 <= asyncio.run(go()) < 1.0


def test_job_wide_cap_is_divided_so_tasks_at_once_never_exceed_it():
    from webscale_rl.stages.llm_stage import plan_partitions

    for n_rows in (1, 10, 100, 5000):
        for cap in (1, 2, 3, 5, 16, 64):
            for slots in (1, 2, 8, 64):
                n_parts, divisor = plan_partitions(n_rows, cap, 16, slots)
                # Whatever the cluster runs at once (at most every partition), the shares add up to the cap.
                assert n_parts * max(1, cap // divisor) <= cap, (n_rows, cap, slots)
                assert 1 <= n_parts <= max(1, min(slots, cap))
    assert plan_partitions(1000, 256, 16, 2) == (2, 2)  # two tasks of 128 requests in flight each
    assert plan_partitions(10, 16, 16, 8) == (1, 1)  # one partition's worth of rows: one task with all 16
