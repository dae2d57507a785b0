"""A budget (`run --max-cost-usd`) stops the LLM stages before the spend passes it, and a resume
completes with nothing lost or paid twice; `estimate` brackets what the real run calls and costs.

The cheap stages run once (module fixture); each scenario copies that warehouse and runs the LLM
stages against the fake endpoint, which reports 100 prompt + 20 completion tokens per call."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.support.cli_runs import set_args
from tests.support.docs import TOPIC_DOCS
from tests.support.fake_server import FakeOpenAI
from webscale_rl.cli import main
from webscale_rl.config import load_config
from webscale_rl.estimate import estimate_run
from webscale_rl.llm.pricing import cost_summary
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse

# List prices x 1000, so the spend of a few calls reads well at 4 decimals.
PRICES = {"gpt-4.1-mini": (400.0, 1600.0), "gpt-4.1": (2000.0, 8000.0)}
SETTINGS = [
    "mlflow.enabled=false",
    "quality.enabled=false",
    "llm.backoff_base_s=0.01",
    "llm.slice_rows=2",
    # One key for the map: a model name's dots would split a `llm.prices.<model>` key.
    "llm.prices={" + ", ".join(f"{m}: {{input_per_1m: {i}, output_per_1m: {o}}}" for m, (i, o) in PRICES.items()) + "}",
]
LLM_RUN = {"start": "llm_filter", "until": "check"}
# Spend where profile's second slice can no longer run whole (see test_budget_stop_then_resume).
BUDGET_USD = 1.9


def _cfg(fake, *extra: str):
    return load_config("openai", [f"llm.base_url={fake.base_url}", *SETTINGS, *extra])


def _paid(fake) -> float:
    """What the fake endpoint's calls cost at PRICES (it reports 100 + 20 tokens a call)."""
    return sum((100 * PRICES[r["model"]][0] + 20 * PRICES[r["model"]][1]) / 1e6 for r in fake.requests)


def _outcome(spark, root) -> tuple[set, set]:
    wh = Warehouse(spark, str(root))
    kept = {r["qa_id"] for r in wh.read("checked").collect()}
    rejected = {(r["doc_id"], r["qa_id"], r["stage"], r["reason"]) for r in wh.read("rejections").collect()}
    return kept, rejected


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    """(the input file, a warehouse after ingest..dedup) for every scenario to copy."""
    root = tmp_path_factory.mktemp("budget")
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in TOPIC_DOCS))
    cheap = load_config("openai", SETTINGS)
    run_pipeline([str(docs)], root / "cheap", cheap, until="dedup", spark=spark, log=lambda _: None)
    return docs, root / "cheap"


@pytest.fixture(scope="module")
def uninterrupted(spark, corpus, tmp_path_factory):
    """The LLM stages run whole, no budget: calls made, cost, and what landed."""
    root = tmp_path_factory.mktemp("whole") / "wh"
    shutil.copytree(corpus[1], root)
    with FakeOpenAI() as fake:
        cfg = _cfg(fake)
        summary = run_pipeline([], root, cfg, spark=spark, log=lambda _: None, **LLM_RUN)
        calls, paid = fake.chat_requests, _paid(fake)
    metrics, _ = cost_summary(cfg, {s.stage: s.llm for s in summary.stages if s.llm})
    assert metrics["run.llm.cost_usd"] == pytest.approx(paid)  # the run's own cost report agrees with the endpoint
    calls_by_stage = {s.stage: s.llm["calls"] for s in summary.stages}
    items_by_stage = {s.stage: s.rows_in for s in summary.stages}
    outcome = _outcome(spark, root)
    docs = summary.stages[0].rows_in
    return {"calls": calls, "cost": paid, "calls_by_stage": calls_by_stage, "items_by_stage": items_by_stage, "outcome": outcome, "docs": docs}


def test_budget_stop_then_resume(spark, corpus, uninterrupted, tmp_path, capsys):
    wh = tmp_path / "wh"
    shutil.copytree(corpus[1], wh)
    args = ["run", "--from", "llm_filter", "--until", "check", "--warehouse", str(wh), "--config", "openai"]
    with FakeOpenAI() as fake:
        code = main([*args, "--max-cost-usd", str(BUDGET_USD), *set_args([f"llm.base_url={fake.base_url}", *SETTINGS])])
        first_calls, spent = fake.chat_requests, _paid(fake)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 3
        m = re.fullmatch(
            r"stopped: budget reached: spent \$(\d+\.\d{4}) of llm\.max_cost_usd \$1\.9000; "
            r"stage '(\w+)' did (\d+) item\(s\) and left (\d+) \(and the later stages\) for the next run",
            err[-1],
        )
        assert m, err
        assert float(m[1]) == pytest.approx(spent, abs=5e-5) and spent <= BUDGET_USD
        assert 0 < first_calls < uninterrupted["calls"] and int(m[4]) > 0
        # The stage it stopped in had all its items to do, and did some of them.
        assert int(m[3]) + int(m[4]) == uninterrupted["items_by_stage"][m[2]] and int(m[3]) > 0

        resumed = run_pipeline([], wh, _cfg(fake), spark=spark, log=lambda _: None, **LLM_RUN)
        assert resumed.budget_stop is None
        # Nothing paid twice: both runs together made the calls of one uninterrupted run.
        assert fake.chat_requests == uninterrupted["calls"]
    # Nothing lost: the same pairs and the same rejections as the uninterrupted run.
    assert _outcome(spark, wh) == uninterrupted["outcome"]


def test_estimate_brackets_the_real_run(spark, corpus, uninterrupted):
    with FakeOpenAI() as fake:
        est = estimate_run([str(corpus[0])], _cfg(fake), llm_sample=4, spark=spark, log=lambda _: None)
        measured_calls = fake.chat_requests
    assert est.input_documents == len(TOPIC_DOCS) and est.llm_documents == uninterrupted["docs"]
    assert est.measured_documents == 4 and est.measured["calls"] == measured_calls
    total = est.stages["total"]
    assert total["calls"].contains(uninterrupted["calls"]), (total["calls"], uninterrupted["calls"])
    assert total["cost_usd"].contains(uninterrupted["cost"]), (total["cost_usd"], uninterrupted["cost"])
    for stage, calls in uninterrupted["calls_by_stage"].items():
        assert est.stages[stage]["calls"].contains(calls), (stage, est.stages[stage]["calls"], calls)
    # The stated factor (docs/llm.md): the expected cost within 1.5x of the real run's on this corpus.
    assert uninterrupted["cost"] / 1.5 <= total["cost_usd"].expected <= uninterrupted["cost"] * 1.5
    assert any(line.startswith("  to cap a run at the high end: webscale-rl run ... --max-cost-usd ") for line in est.lines())
