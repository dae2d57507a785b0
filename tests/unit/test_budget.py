"""The budget's and the estimate's parts that need no Spark: config checks, the command line, the
stop line, and how an estimate's range is derived. (Runs against the fake endpoint: tests/spark/test_budget.py.)"""

from __future__ import annotations

import math

import pytest

from webscale_rl.budget import BudgetStop
from webscale_rl.cli import build_parser, main, run_overrides
from webscale_rl.config import ConfigError, load_config
from webscale_rl.estimate import _extrapolate
from webscale_rl.llm.pricing import check_prices_for_budget
from webscale_rl.stages.order import LLM_STAGES


def test_max_cost_usd_on_run_sets_the_config_key():
    args = build_parser().parse_args(["run", "--warehouse", "w", "--max-cost-usd", "2.5"])
    assert run_overrides(args) == ["llm.max_cost_usd=2.5000000000"]
    assert load_config("openai", run_overrides(args)).llm.max_cost_usd == 2.5
    tiny = build_parser().parse_args(["run", "--warehouse", "w", "--max-cost-usd", "1e-5"])
    assert load_config("openai", run_overrides(tiny)).llm.max_cost_usd == 1e-5


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_budget_must_be_positive(value):
    with pytest.raises(ConfigError, match=rf"llm.max_cost_usd must be > 0 or null, got {float(value)}"):
        load_config("openai", [f"llm.max_cost_usd={value}"])


def test_a_budget_that_is_no_number_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'llm.max_cost_usd' must be a number, got 'ten'"):
        load_config("openai", ["llm.max_cost_usd=ten"])


def test_a_budget_needs_a_price_for_every_llm_stage_that_runs():
    cfg = load_config("openai", ["llm.max_cost_usd=1", "llm.models.generate=my-model"])
    with pytest.raises(ConfigError, match=r"llm.prices lacks \['my-model'\] \(set llm.prices.<model>\)"):
        check_prices_for_budget(cfg, LLM_STAGES)
    check_prices_for_budget(cfg, ["llm_filter", "profile"])  # generate does not run: no price needed
    check_prices_for_budget(load_config("openai", ["llm.models.generate=my-model"]), LLM_STAGES)  # no budget: no check


def test_the_cli_refuses_an_unpriced_budget_and_a_bad_sample_in_one_line(capsys):
    assert main(["run", "--warehouse", "w", "--input", "x", "--config", "openai", "--max-cost-usd", "1", "--set", "llm.models.check=m2"]) == 2
    assert "llm.prices lacks ['m2']" in capsys.readouterr().err
    assert main(["estimate", "--input", "x", "--llm-sample", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --llm-sample must be >= 1, got 0"


def test_the_stop_line_gives_spend_and_budget():
    line = BudgetStop(0.43219, 1.9, "profile", 3, 4).line()
    assert line == "budget reached: spent $0.4322 of llm.max_cost_usd $1.9000; stage 'profile' did 3 item(s) and left 4 (and the later stages) for the next run"


def _per_doc(values: dict[str, float]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-document usage of llm_filter only: `values` calls each, 100 + 20 tokens a call."""
    usage = {d: {"calls": c, "prompt_tokens": 100 * c, "completion_tokens": 20 * c, "cost_usd": c * 0.5} for d, c in values.items()}
    return {"llm_filter": usage}


def test_the_range_is_a_95_percent_interval_of_the_per_document_mean():
    cfg = load_config("openai")
    # 4 of 10 documents measured: 1, 1, 3, 3 calls → mean 2, sd 2/sqrt(3), finite-population correction sqrt(6/9).
    est = _extrapolate(cfg, _per_doc({"a": 1, "b": 1, "c": 3, "d": 3}), {}, ["a", "b", "c", "d"], 10, 10, 10)
    calls = est.stages["llm_filter"]["calls"]
    half = 1.96 * (2 / math.sqrt(3)) / math.sqrt(4) * math.sqrt(6 / 9) * 10
    assert calls.expected == pytest.approx(20.0)
    assert (calls.low, calls.high) == (pytest.approx(20 - half), pytest.approx(20 + half))
    assert est.stages["total"]["calls"] == calls and est.stages["profile"]["calls"].high == 0.0


def test_measuring_every_document_leaves_no_range_and_a_sample_of_the_input_widens_it():
    cfg = load_config("openai")
    every = _extrapolate(cfg, _per_doc({"a": 1, "b": 3}), {}, ["a", "b"], 2, 2, 2).stages["llm_filter"]["calls"]
    assert (every.expected, every.low, every.high) == (4.0, 4.0, 4.0)
    # The cheap stages saw 10 of 100 input documents and kept 5: about 50 reach the LLM stages.
    cut = _extrapolate(cfg, _per_doc({"a": 2, "b": 2}), {}, ["a", "b"], 100, 10, 5)
    calls = cut.stages["llm_filter"]["calls"]
    share_half = 1.96 * math.sqrt(0.5 / (0.5 * 10)) * math.sqrt(90 / 99) * 100
    assert cut.llm_documents == 50.0 and calls.expected == 100.0
    assert (calls.low, calls.high) == (pytest.approx(100 - share_half), pytest.approx(100 + share_half))


def test_a_sample_of_equal_documents_still_leaves_room_for_a_kind_it_did_not_see():
    # 4 of 8 documents measured, each 1 llm_filter + 5 later calls: no spread, yet up to 3/4 of the
    # rest may be documents llm_filter rejects (1 call): the rule of three keeps the range open.
    usage = lambda c: {"calls": c, "prompt_tokens": 100 * c, "completion_tokens": 20 * c, "cost_usd": c * 0.5}  # noqa: E731
    docs = ["a", "b", "c", "d"]
    per_doc = {"llm_filter": {d: usage(1) for d in docs}, "profile": {d: usage(5) for d in docs}}
    calls = _extrapolate(load_config("openai"), per_doc, {}, docs, 8, 8, 8).stages["total"]["calls"]
    assert (calls.expected, calls.low, calls.high) == (48.0, 8 * (0.25 * 6 + 0.75 * 1), 48.0)
    assert calls.contains(43)  # seven such documents and one junk page (the Spark test's corpus)
