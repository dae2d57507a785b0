"""The benchmarks that time `webscale-rl run`/`demo` read its printed funnel and LLM usage lines
(benchmarks/run_output.py): they must read what the CLI prints today."""

from __future__ import annotations

import sys

from tests.support.paths import REPO
from webscale_rl.cli import print_report
from webscale_rl.config import load_config
from webscale_rl.llm.pricing import cost_summary
from webscale_rl.summary import RunSummary, StageSummary

sys.path.insert(0, str(REPO))
from benchmarks.run_output import funnel, llm_usage  # noqa: E402


def test_the_funnel_and_usage_lines_as_the_cli_prints_them(capsys):
    stages = [
        StageSummary("llm_filter", "llm_filtered", 8, 6, 2, 41.5, {"not_informative": 2}, 1),
        StageSummary("decontaminate", "qa", 9, 7, 2, 3.25, {"contaminated:x": 2}, 1),
    ]
    print_report(RunSummary(run_id="r1", warehouse="/tmp/wh", stages=stages))
    usage = {"llm_filter": {"calls": 8, "prompt_tokens": 5000, "completion_tokens": 90, "cached_prompt_tokens": 1200}}
    _, usage_lines = cost_summary(load_config("openai"), usage)
    lines = capsys.readouterr().out.splitlines() + usage_lines
    assert funnel(lines) == {
        "llm_filter": {"rows_in": 8, "kept": 6, "rejected": 2, "seconds": 41.5},
        "decontaminate": {"rows_in": 9, "kept": 7, "rejected": 2, "seconds": 3.2},
    }
    assert llm_usage(lines)["llm_filter"] == {"calls": 8, "cache_hits": 0, "prompt_tokens": 5000, "completion_tokens": 90, "cached_prompt_tokens": 1200}
