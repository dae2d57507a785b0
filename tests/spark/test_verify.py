"""The verify stage (issue 17, item 1): a pair is kept only when a reader that never sees the
reference answers it from the document and the reward scores that answer 1; the closed-book
answer is a column, never a rejection; every bad reply ends as a rejection with its reason."""

from __future__ import annotations

import re
import shutil

from pyspark.sql import Row
from pyspark.sql import functions as F

from tests.support.fake_server import FakeOpenAI
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.stages import verify
from webscale_rl.stages.base import DETAIL, REASON, StageContext
from webscale_rl.stages.llm_stage import CALLS, SECOND_CALL, llm_usage
from webscale_rl.warehouse import Warehouse

DOC = (
    "The Lakeside Observatory opened in January 2006 on the northern shore of Lake Erie. Its first "
    "director was Maria Olsen. The main telescope has a mirror 2,850 millimetres wide."
)
REFUSING_DOC = DOC + " FAULT_REFUSAL"


def pair(qa_id: str, question: str, answer: str, answer_type: str, doc: str = DOC) -> Row:
    return Row(
        qa_id=qa_id, doc_id="d", pretrain_text=doc, domain="Natural Science", persona="p", question=question,
        answer=answer, answer_type=answer_type, prompt_version="generate-v2", check_version="check-v1",
    )  # fmt: skip


PAIRS = [
    pair("same", "Who was the first director of the Lakeside Observatory?", "Maria Olsen", "entity"),
    pair("value", "How wide in millimetres is the mirror of the Lakeside Observatory's main telescope?", "2,850 millimetres", "numeric"),
    pair("other", "When did the Lakeside Observatory on Lake Erie open?", "January 2006", "short_text"),
    pair("blank", "Which company built the Lakeside Observatory's telescope?", "Zeiss", "entity"),
    pair("refused", "Who was the first director of the observatory on Lake Erie?", "Maria Olsen", "entity", REFUSING_DOC),
]
# What the reader answers, from the document and closed-book, per question.
FROM_DOCUMENT = {"same": "Maria Olsen", "value": "2850", "other": "March 2007", "blank": ""}
CLOSED_BOOK = {"same": "maria olsen"}


def answers(schema: str, messages: list[dict]) -> dict | None:
    question = re.search(r"^Question: (.*)$", messages[-1]["content"], re.M).group(1)
    (qa_id,) = [p.qa_id for p in PAIRS if p.question == question][:1] or ["?"]
    if schema == "qa_answer":
        return {"answer": FROM_DOCUMENT.get(qa_id, "")}
    if schema == "qa_answer_closed_book":
        return {"answer": CLOSED_BOOK.get(qa_id, "")}
    return None


def run_verify(spark, fake: FakeOpenAI, *settings: str):
    cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01", "llm.max_retries=1", *settings])
    ctx = StageContext(cfg=cfg, run_id="r", llm_base_url=fake.base_url, llm_api_key="sk-test", log=lambda _: None)
    marked = verify.verify_qa(spark.createDataFrame(PAIRS), ctx).marked.cache()
    return marked, {r["qa_id"]: r.asDict() for r in marked.collect()}


def test_a_pair_is_kept_only_when_the_reader_reproduces_its_answer(spark):
    with FakeOpenAI(reply=answers) as fake:
        marked, rows = run_verify(spark, fake)
        schemas = [r["response_format"]["json_schema"]["name"] for r in fake.requests]
        # The reader never sees the reference answer, and the closed-book call never sees the document.
        for request in fake.requests:
            user = request["messages"][-1]["content"]
            assert "Proposed answer" not in user and "Maria Olsen" not in user.split("</document>")[-1]
            if request["response_format"]["json_schema"]["name"] == "qa_answer_closed_book":
                assert "<document>" not in user and "Lakeside Observatory opened" not in user
    assert sorted(schemas) == sorted(["qa_answer"] * 5 + ["qa_answer_closed_book"] * 5)
    verdicts = {k: (r[REASON], r[DETAIL]) for k, r in rows.items()}
    assert verdicts["same"] == (None, None)
    assert verdicts["value"] == (None, None)  # 2850 and "2,850 millimetres" are one number to the reward
    assert verdicts["other"] == ("not_reproduced", "answered from the document: 'March 2007'; reference: 'January 2006'")
    assert verdicts["blank"] == ("not_reproduced", "answered from the document: nothing (the document does not answer it); reference: 'Zeiss'")
    assert verdicts["refused"][0].startswith("llm_error:"), verdicts["refused"]
    assert rows["same"]["verified_answer"] == "Maria Olsen" and rows["value"]["verified_answer"] == "2850"
    assert {k: r["closed_book_correct"] for k, r in rows.items()} == {"same": True, "value": False, "other": False, "blank": False, "refused": False}
    assert rows["same"]["closed_book_answer"] == "maria olsen"
    # Both calls are accounted: two per row; the second call's reply has its columns (filled with a
    # warehouse's cache on: tests/e2e/test_llm_cache.py shows a rerun pays for neither call).
    assert llm_usage(marked)["calls"] == 10
    assert all(r[CALLS] == 2 for r in rows.values())
    assert {SECOND_CALL.key, SECOND_CALL.reply, SECOND_CALL.prompt_tokens} <= set(marked.columns)


def test_without_closed_book_one_call_per_pair_and_no_closed_book_columns(spark):
    with FakeOpenAI(reply=answers) as fake:
        _, rows = run_verify(spark, fake, "verify.closed_book=false")
        assert len(fake.requests) == 5
    assert {k: r[REASON] for k, r in rows.items() if k != "refused"} == {"same": None, "value": None, "other": "not_reproduced", "blank": "not_reproduced"}
    assert all(r["closed_book_correct"] is None for r in rows.values())
    assert rows["same"]["verify_version"] == "verify-v2"


def test_verify_off_keeps_every_pair_unverified_without_a_call(spark):
    with FakeOpenAI(reply=answers) as fake:
        _, rows = run_verify(spark, fake, "verify.enabled=false")
        assert fake.requests == []
    assert all(r[REASON] is None and r["verified_answer"] is None for r in rows.values())


def test_a_rerun_answers_both_calls_from_the_cache(spark, tmp_path):
    """Both calls' replies reach the warehouse's response cache: a new warehouse holding only that
    cache and the same checked pairs verifies them again without a call, to the same rows."""
    first, second = tmp_path / "wh1", tmp_path / "wh2"
    for wh in (first, second):
        spark.createDataFrame(PAIRS[:4]).withColumn("run_id", F.lit("r0")).write.format("delta").save(str(wh / "checked"))
    with FakeOpenAI(reply=answers) as fake:
        cfg = lambda: load_config("openai", [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01", "llm.max_retries=1", "mlflow.enabled=false"])  # noqa: E731
        run_pipeline([], first, cfg(), start="verify", until="verify", spark=spark, log=lambda _: None)
        paid = len(fake.requests)
        shutil.copytree(first / "llm_cache", second / "llm_cache")
        rerun = run_pipeline([], second, cfg(), start="verify", until="verify", spark=spark, log=lambda _: None)
        assert len(fake.requests) == paid
    assert paid == 8  # 4 pairs, 2 calls each
    (stage,) = rerun.stages
    assert (stage.llm["calls"], stage.llm["cache_hits"]) == (0, 8)
    columns = ["qa_id", "verified_answer", "closed_book_answer", "closed_book_correct"]
    verified = lambda wh: sorted(Warehouse(spark, str(wh)).read("verified").select(columns).collect())  # noqa: E731
    assert verified(second) == verified(first) and len(verified(first)) == 2
