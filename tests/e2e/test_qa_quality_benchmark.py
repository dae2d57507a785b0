"""benchmarks/qa_quality.py end to end against the fake OpenAI-compatible server: it builds the
warehouse, runs `webscale-rl run --from check` as a child process, and its report adds up (every
case kept or rejected, precision and recall computed from the counts, the LLM calls the server
answered). The numbers themselves are the benchmark's business, not this test's: the fake checker
approves every pair. The real documents come from tests.support.real_corpora (fetched and cached on
first use)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.support.cli_runs import cli_env, set_args
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO

pytestmark = pytest.mark.spark_processes

# Small and quick: the first document's six cases (good ones, a duplicate, a type mismatch, a
# question pointing at its source), one local Spark per process, no MLflow or GX.
LIMIT = 6
QUICK = ["mlflow.enabled=false", "quality.enabled=false", "spark.master=local[2]", "spark.shuffle_partitions=2"]


# The verify stage's reader, played by the fake: it answers each case's question with the case's
# own answer (so verification keeps what the checks kept); closed-book it knows nothing.
ANSWERS = {c["question"]: c["answer"] for c in map(json.loads, (REPO / "benchmarks" / "qa_quality" / "cases.jsonl").open(encoding="utf-8"))}


def reader(schema: str, messages: list[dict]) -> dict | None:
    if schema != "qa_answer":
        return None
    question = re.search(r"^Question: (.*)$", messages[-1]["content"], re.M).group(1)
    return {"answer": ANSWERS.get(question, "")}


@pytest.mark.timeout(600)
def test_the_benchmark_report_adds_up(tmp_path):
    out = tmp_path / "report.json"
    with FakeOpenAI(reply=reader) as fake:
        cmd = [sys.executable, str(REPO / "benchmarks" / "qa_quality.py"), "--config", "openai", "--limit", str(LIMIT), "--out", str(out)]
        cmd += set_args([f"llm.base_url={fake.base_url}", *QUICK])
        proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=540)
        requests = fake.stats()["requests"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text(encoding="utf-8"))

    assert r["cases"] >= LIMIT and r["good"] + r["bad"] == r["cases"]
    assert r["unaccounted"] == [] and r["kept"] + r["rejected"] == r["cases"]
    assert r["good_kept"] + r["repaired"] + r["bad_kept"] == r["kept"] > 0
    assert r["precision"] == round((r["good_kept"] + r["repaired"]) / r["kept"], 4)
    assert r["recall"] == round(r["good_kept"] / r["good"], 4)
    assert r["targets"]["met"] == (r["precision"] >= r["targets"]["precision"] and r["recall"] >= r["targets"]["recall"])

    kinds = r["per_failure"].values()
    assert sum(k["cases"] for k in kinds) == r["bad"]
    assert all(k["rejected"] + k["kept"] == k["cases"] and sum(k["reasons"].values()) == k["rejected"] for k in kinds)
    assert r["bad_kept"] == sum(len(k["kept_ids"]) for k in kinds) and r["repaired"] == sum(len(k["repaired_ids"]) for k in kinds)
    good_rejected = sum(len(ids) for ids in r["good_rejected_by_reason"].values())
    assert good_rejected == r["good"] - r["good_kept"]

    # LLM usage is the run's own summary: every call the fake server answered, once.
    run = r["llm_usage"]["by_stage"]["run"]
    assert run["calls"] == requests > 0 and run["cache_hits"] == 0
    assert r["llm_usage"]["per_kept_pair"]["calls"] == round(run["calls"] / r["kept"], 3)
    assert "source:" in proc.stdout and "targets: precision >= 0.90 with recall >= 0.50" in proc.stdout
