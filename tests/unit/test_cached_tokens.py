"""Cached prompt tokens (issue 20, item 4): read from the reply in each shape an endpoint uses,
priced at `llm.prices.<model>.cached_input_per_1m` (full input price without it), and shown per
stage in the usage lines and metrics. The Spark side: tests/spark/test_cached_tokens.py."""

from __future__ import annotations

import importlib.util

import pytest

from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from webscale_rl.config import ConfigError, load_config
from webscale_rl.llm.batch import _line_result
from webscale_rl.llm.engine import EndpointSpec, cached_prompt_tokens, complete_many
from webscale_rl.llm.pricing import cost_summary, stage_cost_usd, usage_cost_usd
from webscale_rl.prompts import load_prompt
from webscale_rl.stages.llm_filter import REPLY_SCHEMA

OPENAI_STYLE = {"usage": {"prompt_tokens": 2006, "completion_tokens": 300, "prompt_tokens_details": {"cached_tokens": 1920}}}
# llama-server (tools/server/server-task.cpp): usage.prompt_tokens is the whole prompt, its
# prompt_tokens_details.cached_tokens and timings.cache_n the part reused from the slot's cache,
# timings.prompt_n the part it evaluated.
LLAMA_STYLE = {
    "usage": {"prompt_tokens": 900, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 700}},
    "timings": {"cache_n": 700, "prompt_n": 200, "prompt_ms": 812.5, "predicted_n": 40},
}
# An older llama-server build: the reuse only in timings.
LLAMA_TIMINGS_ONLY = {"usage": {"prompt_tokens": 900, "completion_tokens": 40}, "timings": {"cache_n": 650, "prompt_n": 250}}


@pytest.mark.parametrize(
    "reply, cached",
    [
        (OPENAI_STYLE, 1920),
        (LLAMA_STYLE, 700),
        (LLAMA_TIMINGS_ONLY, 650),
        ({"usage": {"prompt_tokens": 100, "completion_tokens": 20}}, 0),  # not reported: none
        ({}, 0),
        ({"usage": None, "timings": None}, 0),
        # The usage field wins over timings when both are there.
        ({"usage": {"prompt_tokens": 900, "prompt_tokens_details": {"cached_tokens": 0}}, "timings": {"cache_n": 650}}, 0),
        # Null details (some proxies) fall back to timings.
        ({"usage": {"prompt_tokens": 900, "prompt_tokens_details": None}, "timings": {"cache_n": 650}}, 650),
        # Nonsense is no count; never more than the reply's prompt tokens.
        ({"usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": "80"}}}, 0),
        ({"usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": True}}}, 0),
        ({"usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": -5}}}, 0),
        ({"usage": {"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 150}}}, 100),
    ],
)
def test_cached_prompt_tokens_are_read_from_each_reply_shape(reply, cached):
    assert cached_prompt_tokens(reply) == cached


def _spec(fake: FakeOpenAI) -> EndpointSpec:
    return EndpointSpec(base_url=fake.base_url, model="fake", api_key="sk-test", timeout_s=5, max_retries=2, backoff_base_s=0.01, concurrency=4)


def _call(fake: FakeOpenAI, texts: list[str]):
    requests = [load_prompt("llm_filter").messages(document=t) for t in texts]
    return complete_many(_spec(fake), requests, "document_judgement", REPLY_SCHEMA)


def test_the_engine_records_the_cached_tokens_of_every_attempt():
    with FakeOpenAI(cached_tokens=lambda messages: 64) as fake:
        ok, retried = _call(fake, ["A useful article.", "A useful article. FAULT_500_ONCE"])
    assert (ok.prompt_tokens, ok.cached_prompt_tokens) == (100, 64)
    assert retried.ok and retried.attempts == 2 and retried.cached_prompt_tokens == 64  # the 500 reported no usage
    with FakeOpenAI() as fake:  # an endpoint that does not report them
        (plain,) = _call(fake, ["A useful article."])
    assert plain.ok and plain.prompt_tokens == 100 and plain.cached_prompt_tokens == 0


def test_a_batch_result_line_carries_the_cached_tokens():
    spec = EndpointSpec(base_url="http://unused", model="fake")
    body = {
        "choices": [{"message": {"content": '{"informative": true, "self_contained": true}'}, "finish_reason": "stop"}],
        **OPENAI_STYLE,
    }
    res, retry = _line_result({"custom_id": "k", "response": {"status_code": 200, "body": body}}, REPLY_SCHEMA, spec)
    assert retry is None and res.ok and (res.prompt_tokens, res.completion_tokens, res.cached_prompt_tokens) == (2006, 300, 1920)


def _prices(model: str, **price: float) -> list[str]:
    # One key for the map: a model name's dots would split a `llm.prices.<model>` key.
    return ["llm.prices={" + model + ": {" + ", ".join(f"{k}: {v}" for k, v in price.items()) + "}}"]


def test_cached_prompt_tokens_cost_the_cached_price_or_the_full_one_without_it():
    # A model of its own: --set merges into a preset's entry, which would keep its cached price.
    model = ["llm.models.llm_filter=my-model"]
    discounted = load_config("openai", model + _prices("my-model", input_per_1m=0.4, cached_input_per_1m=0.1, output_per_1m=1.6))
    # 1M prompt tokens of which 600k cached, 100k completion tokens.
    assert stage_cost_usd(discounted, "llm_filter", 1_000_000, 100_000, 600_000) == pytest.approx(0.4 * 0.4 + 0.6 * 0.1 + 0.1 * 1.6)
    assert stage_cost_usd(discounted, "llm_filter", 1_000_000, 100_000) == pytest.approx(0.4 + 0.16)  # none cached: full price
    full = load_config("openai", model + _prices("my-model", input_per_1m=0.4, output_per_1m=1.6))
    assert stage_cost_usd(full, "llm_filter", 1_000_000, 100_000, 600_000) == pytest.approx(0.4 + 0.16)  # no cached price: no discount
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 100_000, "cached_prompt_tokens": 600_000}
    assert usage_cost_usd(discounted, "llm_filter", usage) == pytest.approx(0.38)
    assert usage_cost_usd(discounted, "llm_filter", {"prompt_tokens": 1_000_000, "completion_tokens": 100_000}) == pytest.approx(0.56)  # an old summary


def test_the_presets_carry_openais_cached_input_prices():
    for cfg in (load_config("openai"), load_config()):  # the preset file and the built-in defaults
        assert cfg.llm.prices["gpt-4.1"] == {"input_per_1m": 2.0, "cached_input_per_1m": 0.5, "output_per_1m": 8.0}
        assert cfg.llm.prices["gpt-4.1-mini"] == {"input_per_1m": 0.4, "cached_input_per_1m": 0.1, "output_per_1m": 1.6}


@pytest.mark.parametrize(
    "price, message",
    [
        (dict(input_per_1m=0.4, cached_per_1m=0.1, output_per_1m=1.6), r"llm.prices.m has unknown key\(s\) \['cached_per_1m'\]"),
        (dict(input_per_1m=0.4, cache_read_per_1m=0.1, output_per_1m=1.6), r"unknown key\(s\) \['cache_read_per_1m'\].*cached_input_per_1m"),
        (dict(input_per_1m=0.4, cached_input_per_1m=0.1), r"llm.prices.m lacks \['output_per_1m'\]"),
        (dict(input_per_1m=0.4, cached_input_per_1m=-0.1, output_per_1m=1.6), r"llm.prices.m.cached_input_per_1m must be a number >= 0"),
        (dict(input_per_1m=0.4, cached_input_per_1m="cheap", output_per_1m=1.6), r"config key 'llm.prices.m.cached_input_per_1m' must be a number"),
        (dict(input_per_1m=0.4, cached_input_per_1m=0.5, output_per_1m=1.6), r"llm.prices.m.cached_input_per_1m \(0.5\) is more than"),
    ],
)
def test_a_price_with_a_bad_key_is_refused_naming_it(price, message):
    with pytest.raises(ConfigError, match=message):
        load_config("openai", _prices("m", **price))


def test_usage_lines_and_metrics_show_the_cached_share_per_stage():
    cfg = load_config("openai")  # gpt-4.1-mini for llm_filter, gpt-4.1 for generate, cached prices set
    usage = {
        "llm_filter": {"calls": 10, "prompt_tokens": 1_000_000, "completion_tokens": 0, "cached_prompt_tokens": 750_000},
        "generate": {"calls": 5, "prompt_tokens": 200_000, "completion_tokens": 0},  # a stage landed before the column
    }
    metrics, lines = cost_summary(cfg, usage)
    assert metrics["llm_filter.llm.cost_usd"] == pytest.approx(0.25 * 0.4 + 0.75 * 0.1)
    assert metrics["generate.llm.cost_usd"] == pytest.approx(0.2 * 2.0)
    assert metrics["llm_filter.llm.cached_prompt_share"] == pytest.approx(0.75)
    assert metrics["generate.llm.cached_prompt_share"] == 0.0
    assert metrics["run.llm.cached_prompt_tokens"] == 750_000
    assert metrics["run.llm.cached_prompt_share"] == pytest.approx(750_000 / 1_200_000)
    assert "prompt tokens cached" in lines[0]
    assert lines[1].split()[0] == "llm_filter" and lines[1].endswith("/ 750000 (75%)")
    assert lines[2].split()[0] == "generate" and lines[2].endswith("/ 0 (0%)")
    assert lines[-1].split()[0] == "run" and lines[-1].endswith("/ 750000 (62%)")


def test_the_benchmarks_read_the_usage_lines_cached_tokens_included():
    spec = importlib.util.spec_from_file_location("qa_quality_bench", REPO / "benchmarks" / "qa_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # qa_quality and llm_layout read them with benchmarks/run_output.py
    usage = {"check": {"calls": 4, "cache_hits": 1, "prompt_tokens": 400, "completion_tokens": 80, "cached_prompt_tokens": 300}}
    _, lines = cost_summary(load_config("openai"), usage)
    parsed = bench.llm_usage(["noise", *lines, "after"])
    assert parsed["check"] == {"calls": 4, "cache_hits": 1, "prompt_tokens": 400, "completion_tokens": 80, "cached_prompt_tokens": 300}
    assert parsed["run"]["prompt_tokens"] == 400 and parsed["run"]["cached_prompt_tokens"] == 300
