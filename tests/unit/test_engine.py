"""The LLM engine against a real HTTP fake server: faults are retried or end as a named reason."""

from __future__ import annotations

import time

import pytest

from tests.support.fake_server import FakeOpenAI
from webscale_rl.llm.engine import EndpointSpec, FatalLLMError, complete_many, parse_reply, scrub
from webscale_rl.prompts import load_prompt
from webscale_rl.stages.llm_filter import REPLY_SCHEMA


def spec_for(fake: FakeOpenAI, **kw) -> EndpointSpec:
    defaults = dict(base_url=fake.base_url, model="fake", api_key="sk-test", timeout_s=5, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.05, concurrency=4)
    defaults.update(kw)
    return EndpointSpec(**defaults)


def msgs(text: str):
    return load_prompt("llm_filter").messages(document=text)


def run(fake, texts, **kw):
    return complete_many(spec_for(fake, **kw), [msgs(t) for t in texts], "document_judgement", REPLY_SCHEMA)


def test_replies_are_parsed_and_validated():
    with FakeOpenAI() as fake:
        results = run(fake, ["A useful article.", "NAVIGATION ONLY home | about"])
    assert [r.data for r in results] == [
        {"informative": True, "self_contained": True},
        {"informative": False, "self_contained": True},
    ]
    assert all(r.attempts == 1 and r.prompt_tokens == 100 for r in results)


def test_transient_faults_are_retried():
    with FakeOpenAI() as fake:
        results = run(fake, ["FAULT_429_ONCE doc", "FAULT_500_ONCE doc"])
    assert [r.ok for r in results] == [True, True]
    assert [r.attempts for r in results] == [2, 2]


def test_malformed_reply_is_retried_then_rejected():
    with FakeOpenAI() as fake:
        (res,) = run(fake, ["FAULT_MALFORMED doc"])
    assert not res.ok and res.reason == "llm_error:malformed_reply" and res.attempts == 3
    assert "not JSON" in res.detail


def test_timeout_is_a_reason_not_a_crash():
    with FakeOpenAI(hang_s=3) as fake:
        t0 = time.monotonic()
        results = run(fake, ["FAULT_HANG doc", "fine doc"], timeout_s=0.5, max_retries=1)
    assert results[0].reason == "llm_error:timeout"
    assert results[1].ok
    assert time.monotonic() - t0 < 10


def test_bad_key_stops_the_run():
    with FakeOpenAI(require_key="sk-right") as fake:
        with pytest.raises(FatalLLMError, match="credentials"):
            run(fake, ["doc"], api_key="sk-wrong-canary-123456")


def test_schema_violation_and_fences():
    assert parse_reply('```json\n{"informative": true, "self_contained": false}\n```', REPLY_SCHEMA)[0] == {
        "informative": True,
        "self_contained": False,
    }
    data, reason, detail = parse_reply('{"informative": "yes"}', REPLY_SCHEMA)
    assert data is None and reason == "schema_violation"


def test_scrub_removes_the_key():
    assert "sk-canary" not in scrub("error for key sk-canary-abcdef123456", "sk-canary-abcdef123456")
    assert "sk-***" in scrub("leaked sk-otherkey12345678", None)


def test_spec_repr_hides_key():
    assert "sk-secret" not in repr(EndpointSpec(base_url=None, model="m", api_key="sk-secret"))
