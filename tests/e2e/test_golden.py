"""Same input, same tables: the reshaped pipeline gives exactly the `qa`, `rejections` and stage
counts that the code before the reshaping gave (issue 14).

The expected files were recorded on 2026-11-27 by running the pre-reshaping code (commit 2900e60) on
tests/fixtures/golden/input.jsonl through the deterministic fake endpoint, with these overrides, and
dumping every row of `qa` and `rejections` without `run_id` (the only column that differs per run).
A change that alters a table on purpose re-records the file in the same commit and says why. Since
recorded: generate's rows_in counts personas, not documents (its work items are personas, issue 19);
check keeps one pair per fact of a document (issue 17): the fake generator gives every persona of a
document the same answer, so all but one pair per document are rejected `duplicate_fact`; every `qa`
row records the eval set it was checked against in `decontam_checked` (issue 21); the verify stage
(issue 17) adds its counts and four `qa` columns (the fake reader reproduces every kept answer and
knows nothing closed-book), with `qa` and `rejections` otherwise unchanged; the prompts' texts
were reworded for the prompt layout (issue 20: generate-v3, check-v2, verify-v2), which changed
only the recorded versions and the qa_ids made from generate's (re-recorded 2026-11-28)."""

from __future__ import annotations

import json

import pytest

from tests.support.fake_server import FakeOpenAI
from tests.support.paths import FIXTURES
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse

GOLDEN = FIXTURES / "golden"
OVERRIDES = ["llm.max_retries=2", "llm.backoff_base_s=0.01", "llm.rows_per_partition=4", "quality.on_failure=warn", "mlflow.enabled=false"]
CASES = {
    "fuzzy_dedup": [],  # the default: near duplicates removed too
    "exact_dedup": ["dedup.fuzzy.enabled=false"],  # more documents reach the LLM stages
}


def _rows(warehouse: Warehouse, name: str) -> list[dict]:
    rows = [{k: v for k, v in r.asDict(recursive=True).items() if k != "run_id"} for r in warehouse.read(name).collect()]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


@pytest.mark.parametrize("case", list(CASES))
def test_same_tables_as_before_the_reshaping(spark, tmp_path, monkeypatch, case):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-golden")
    expected = json.loads((GOLDEN / f"expected_{case}.json").read_text())
    eval_set = GOLDEN / "mini_bench.jsonl"  # its name is in the rejection reason: contaminated:mini_bench
    with FakeOpenAI() as fake:
        cfg = load_config("openai", [f"llm.base_url={fake.base_url}", *OVERRIDES, f"decontam.eval_sets=[{eval_set}]", *CASES[case]])
        summary = run_pipeline([str(GOLDEN / "input.jsonl")], tmp_path / "wh", cfg, spark=spark, log=lambda _: None)
    warehouse = Warehouse.open(spark, tmp_path / "wh")
    counts = {s.stage: {"rows_in": s.rows_in, "kept": s.kept, "rejected": s.rejected, "reasons": s.rejected_by_reason} for s in summary.stages}
    assert counts == expected["counts"]
    assert json.loads(json.dumps(_rows(warehouse, "rejections"), default=str)) == expected["rejections"]
    assert json.loads(json.dumps(_rows(warehouse, "qa"), default=str)) == expected["qa"]
