"""Runs that finish and lose nothing (issue 19): a run whose pairs all fail the checks is a result
(exit 0, an empty `qa`), and a persona whose call failed transiently is retried by the next run while
the document's other pairs stay."""

from __future__ import annotations

import json

from tests.support.docs import ARTICLE, ARTICLE2
from tests.support.fake_server import FakeOpenAI
from webscale_rl.cli import main
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import REJECTIONS, Warehouse

TEACHER = "a science teacher planning a lesson"  # the fake's second persona for every document


class TooShortQuestions(FakeOpenAI):
    """Every generated question is too short for the check stage."""

    def chat(self, body, in_batch=False):
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        if schema == "qa_pair":
            reply = {"question": "Why?", "answer": "because", "answer_type": "short_text"}
            message = {"role": "assistant", "content": json.dumps(reply)}
            usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
            return 200, json.dumps({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}).encode(), {}
        return super().chat(body, in_batch)


class TeacherDown(FakeOpenAI):
    """The endpoint answers HTTP 500 to every generate call for one persona while `down` is set."""

    down = True

    def chat(self, body, in_batch=False):
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("name", "")
        text = "\n".join(m.get("content") or "" for m in body.get("messages", []))
        if self.down and schema == "qa_pair" and TEACHER in text:
            return self._fault("500")
        return super().chat(body, in_batch)


def _input(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in (("danube", ARTICLE), ("photo", ARTICLE2))) + "\n")
    return path


def test_a_run_whose_pairs_all_fail_the_checks_exits_0_with_an_empty_qa(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    warehouse = tmp_path / "wh"
    with TooShortQuestions() as fake:
        sets = [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"]
        code = main(["run", "--config", "openai", "--input", str(_input(tmp_path)), "--warehouse", str(warehouse), *[a for s in sets for a in ("--set", s)]])
    out = capsys.readouterr().out
    assert code == 0, out
    wh = Warehouse.open(spark, warehouse)
    assert wh.exists("qa") and wh.read("qa").count() == 0
    assert wh.exists("checked") and wh.read("checked").count() == 0
    reasons = {r["reason"] for r in wh.read(REJECTIONS).filter("stage = 'check'").collect()}
    assert reasons == {"question_too_short"}
    assert "QA pairs 0" in out and "no QA pair survived" in out and "question_too_short" in out


def test_a_persona_that_failed_transiently_is_retried_by_the_next_run(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    warehouse = tmp_path / "wh"
    with TeacherDown() as fake:
        cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.max_retries=0", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"])
        first = run_pipeline([str(_input(tmp_path))], warehouse, cfg, spark=spark, log=lambda _: None)
        wh = Warehouse.open(spark, warehouse)
        candidates = wh.read("qa_candidates").collect()
        assert {(r["doc_id"], r["persona"]) for r in candidates} == {("danube", "a curious high-school student"), ("photo", "a curious high-school student")}
        failed = wh.read(REJECTIONS).filter("stage = 'generate'").collect()
        assert {(r["doc_id"], r["reason"]) for r in failed} == {("danube", "llm_error:server_error"), ("photo", "llm_error:server_error")}
        generate_calls = sum(1 for r in fake.requests if "qa_pair" in json.dumps(r.get("response_format")))
        assert generate_calls == 4

        fake.down = False
        fake.requests.clear()
        second = run_pipeline([str(_input(tmp_path))], warehouse, cfg, spark=spark, log=lambda _: None)
        # Only the two failed personas are asked again; the pairs already landed stay as they were.
        generate_calls = sum(1 for r in fake.requests if "qa_pair" in json.dumps(r.get("response_format")))
        assert generate_calls == 2
    candidates = wh.read("qa_candidates").collect()
    assert sorted((r["doc_id"], r["persona"]) for r in candidates) == sorted(
        (d, p) for d in ("danube", "photo") for p in ("a curious high-school student", TEACHER)
    )
    assert len({r["qa_id"] for r in candidates}) == 4
    # The transient rejections are gone: each pair has exactly one result.
    assert wh.read(REJECTIONS).filter("stage = 'generate'").count() == 0
    assert [s.rows_in for s in first.stages if s.stage == "generate"] == [4]
    assert [s.rows_in for s in second.stages if s.stage == "generate"] == [2]
