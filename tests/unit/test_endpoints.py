"""Endpoints: Azure OpenAI (deployment URLs, api-version, api-key header), Databricks model serving
(host + token, or a secret scope), and the key in no error text."""

from __future__ import annotations

import pytest

from tests.support.fake_server import FakeOpenAI
from webscale_rl.config import ConfigError, load_config
from webscale_rl.llm.endpoint import llm_endpoint
from webscale_rl.llm.engine import EndpointSpec, FatalLLMError, complete_many
from webscale_rl.llm.pricing import cost_summary, stage_cost_usd
from webscale_rl.prompts import load_prompt
from webscale_rl.stages.llm_filter import REPLY_SCHEMA

CANARY = "sk-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def test_azure_calls_the_deployment_with_api_version_and_api_key_header():
    with FakeOpenAI() as fake:
        host = fake.base_url.removesuffix("/v1")
        spec = EndpointSpec(base_url=None, model="my-gpt41-mini", api_key=CANARY, flavour="azure", azure_endpoint=host, api_version="2024-10-21")
        (res,) = complete_many(spec, [load_prompt("llm_filter").messages(document="A document.")], "document_judgement", REPLY_SCHEMA)
    assert res.ok
    assert fake.paths == ["/openai/deployments/my-gpt41-mini/chat/completions?api-version=2024-10-21"]
    assert fake.api_key_headers == [CANARY]


def test_azure_and_databricks_configs(monkeypatch):
    with pytest.raises(ConfigError, match="azure_endpoint and llm.api_version"):
        load_config(None, ["llm.provider=azure"])
    monkeypatch.setenv("DATABRICKS_HOST", "https://adb-123.azuredatabricks.net/")
    monkeypatch.setenv("DATABRICKS_TOKEN", CANARY)
    cfg = load_config("databricks")
    with llm_endpoint(cfg) as endpoint:
        assert endpoint.base_url == "https://adb-123.azuredatabricks.net/serving-endpoints"
        assert endpoint.api_key == CANARY and CANARY not in repr(endpoint) + endpoint.description
    monkeypatch.delenv("DATABRICKS_TOKEN")
    with pytest.raises(ConfigError, match=r"DATABRICKS_TOKEN"), llm_endpoint(cfg):
        pass


def test_secret_scope_outside_databricks_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)  # a set env variable would win over the secret
    cfg = load_config("databricks", ["llm.api_key_secret=my-scope/serving-token"])
    with pytest.raises(ConfigError, match="not a Databricks runtime"), llm_endpoint(cfg):
        pass
    with pytest.raises(ConfigError, match="scope/key"):
        load_config("databricks", ["llm.api_key_secret=no-slash"])


def test_canary_key_is_in_no_error_text():
    with FakeOpenAI(require_key="sk-the-right-one") as fake:
        spec = EndpointSpec(base_url=fake.base_url, model="m", api_key=CANARY, max_retries=0)
        with pytest.raises(FatalLLMError) as info:
            complete_many(spec, [load_prompt("llm_filter").messages(document="doc")], "document_judgement", REPLY_SCHEMA)
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)
    assert CANARY not in repr(spec)


def test_cost_per_stage_and_run():
    cfg = load_config("openai")
    assert stage_cost_usd(cfg, "generate", 1_000_000, 100_000) == pytest.approx(2.0 + 0.8)
    usage = {
        "llm_filter": {"calls": 10, "prompt_tokens": 1_000_000, "completion_tokens": 0, "cache_hits": 2, "retries": 1, "rate_limited": 1},
        "generate": {"calls": 5, "prompt_tokens": 0, "completion_tokens": 1_000_000},
    }
    metrics, lines = cost_summary(cfg, usage)
    assert metrics["llm_filter.llm.cost_usd"] == pytest.approx(0.4)
    assert metrics["generate.llm.cost_usd"] == pytest.approx(8.0)
    assert metrics["run.llm.cost_usd"] == pytest.approx(8.4)
    assert metrics["run.llm.calls"] == 15 and metrics["run.llm.cache_hits"] == 2
    assert lines[-1].split()[0] == "run" and "$8.4000" in lines[-1]
    unpriced = load_config("openai", ["llm.models.generate=some-new-model"])
    metrics, lines = cost_summary(unpriced, usage)
    assert "run.llm.cost_usd" not in metrics and "no price" in lines[2] and "partly unpriced" in lines[-1]
