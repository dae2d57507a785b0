"""The check stage's answer-type rule and one pair per fact (issue 17, items 2 and 3): exact
reasons and details, the retyped type that lands, and pairs kept by an earlier run."""

from __future__ import annotations

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F

from tests.support.fake_server import FakeOpenAI
from webscale_rl.config import Config, load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.stages import check
from webscale_rl.stages.base import DETAIL, REASON, StageContext
from webscale_rl.warehouse import Warehouse

DOC = (
    "The Lakeside Observatory opened in January 2006 on the northern shore of Lake Erie. "
    "Lake-effect snowfall often closes the road to it in winter. The main telescope has a mirror "
    "2,850 millimetres wide and weighs 42 tonnes. Visitors may enter on Sundays between May and "
    "October. The observatory was funded by the regional council and a private foundation."
)
BASE = dict(pretrain_text=DOC, domain="Natural Science", persona="p", prompt_version="generate-v1")


def pair(qa_id, question, answer, answer_type, doc_id="d"):
    return Row(qa_id=qa_id, doc_id=doc_id, question=question, answer=answer, answer_type=answer_type, **BASE)


@pytest.fixture
def ctx():
    return StageContext(cfg=Config(), run_id="test-run")


def test_answer_type_rule_among_the_deterministic_checks(spark, ctx):
    qa = spark.createDataFrame(
        [
            pair("date", "In which month and year did the Lakeside Observatory on Lake Erie open?", "January 2006", "numeric"),
            pair("bool", "What do the winters on the northern shore of Lake Erie often do?", "close the road to it", "boolean"),
            pair("expr", "What often closes the road to the Lakeside Observatory in winter?", "Lake-effect snowfall", "expression"),
            pair("km", "How wide is the mirror of the main telescope at the Lakeside Observatory?", "2,850 millimetres", "short_text"),
            pair("yes", "Can visitors enter the Lakeside Observatory on Sundays in the summer?", "yes", "entity"),
            pair("long", "Who funded the Lakeside Observatory on the northern shore of Lake Erie?", "a b " * 7, "numeric"),
        ]
    )
    reason, detail = check.deterministic_checks(qa, ctx)
    verdict = check.type_verdict(qa, ctx)
    judged = qa.select("qa_id", reason.alias("reason"), detail.alias("detail"), verdict["answer_type"].alias("type"))
    got = {r["qa_id"]: (r["reason"], r["detail"], r["type"]) for r in judged.collect()}
    assert got == {
        "date": (None, None, "short_text"),  # a date is retyped, not rejected
        "bool": ("answer_type_mismatch", "answer_type boolean, but 'close the road to it' is not yes/no/true/false", None),
        "expr": ("answer_type_mismatch", "answer_type expression, but 'Lake-effect snowfall' is not a math expression", None),
        "km": (None, None, "numeric"),
        "yes": (None, None, "boolean"),
        "long": ("answer_too_long", "answer has 14 words, max 12", None),  # the earlier rule names it
    }


def marked_frame(spark, rows):
    """A checked frame as the LLM stage leaves it: pairs with REASON/DETAIL."""
    return spark.createDataFrame(
        [(*r, "check-v1") for r in rows],
        f"qa_id string, doc_id string, question string, answer string, answer_type string, {REASON} string, {DETAIL} string, check_version string",
    )


def test_one_pair_per_fact_of_a_document(spark):
    marked = marked_frame(
        spark,
        [
            ("a1", "d", "When did the Lakeside Observatory on Lake Erie open its doors to the public?", "January 2006", "short_text", None, None),
            ("a2", "d", "In which month and year did the Lakeside Observatory open?", "january 2006.", "short_text", None, None),
            ("a3", "d", "When did it open?", "January 2006", "short_text", "incorrect", "checker: the answer does not answer the question"),
            ("a4", "d", "In what month of which year did the Lake Erie observatory open?", "January 2006", "short_text", None, None),
            ("n1", "d", "How wide is the main telescope's mirror at the observatory?", "2,850 millimetres", "numeric", None, None),
            ("n2", "d", "What is the mirror width of the Lakeside telescope?", "2850 millimetres", "numeric", None, None),
            ("y1", "d", "Can visitors enter the observatory on Sundays in the summer?", "yes", "boolean", None, None),
            ("y2", "d", "Was the observatory funded by the regional council?", "yes", "boolean", None, None),
            ("o1", "other", "When did the sister observatory open?", "January 2006", "short_text", None, None),
        ],
    )
    got = {r["qa_id"]: (r[REASON], r[DETAIL]) for r in check.collapse_repeated_facts(marked).collect()}
    assert got == {
        "a2": (None, None),  # the shortest question of the pairs that passed: a3 failed the checker
        "a1": ("duplicate_fact", "duplicate_of=a2 (same answer: january 2006.)"),
        "a3": ("incorrect", "checker: the answer does not answer the question"),
        "a4": ("duplicate_fact", "duplicate_of=a2 (same answer: january 2006.)"),
        "n2": (None, None),
        "n1": ("duplicate_fact", "duplicate_of=n2 (same answer: 2850 millimetres)"),  # equal by value and unit
        "y1": (None, None),  # yes/no answers are shared by different facts: never collapsed
        "y2": (None, None),
        "o1": (None, None),  # another document
    }
    assert check.collapse_repeated_facts(marked).columns == marked.columns


def test_a_pair_kept_by_an_earlier_run_wins(spark):
    marked = marked_frame(
        spark,
        [
            ("new1", "d", "When did it open?", "January 2006", "short_text", None, None),
            ("new2", "d", "Which telescope part is 2,850 millimetres wide?", "the mirror", "entity", None, None),
        ],
    )
    landed = spark.createDataFrame(
        [("old", "d", "In which month and year did the Lakeside Observatory on Lake Erie open?", "January 2006", "short_text")],
        "qa_id string, doc_id string, question string, answer string, answer_type string",
    )
    got = {r["qa_id"]: (r[REASON], r[DETAIL]) for r in check.collapse_repeated_facts(marked, landed).collect()}
    assert got == {"new1": ("duplicate_fact", "duplicate_of=old (same answer: January 2006)"), "new2": (None, None)}


def test_check_stage_lands_the_retyped_type_and_one_pair_per_fact(spark):
    rows = [
        pair("t1", "In which month and year did the Lakeside Observatory on Lake Erie open?", "January 2006", "numeric"),
        pair("t2", "When did the observatory on the northern shore of Lake Erie first open?", "January 2006", "numeric"),
        pair("t3", "What often closes the road to the Lakeside Observatory in winter?", "Lake-effect snowfall", "expression"),
        pair("t4", "How many tonnes does the main telescope of the Lakeside Observatory weigh?", "42 tonnes", "short_text"),
        pair("t5", "Which body, besides a private foundation, funded the observatory on Lake Erie?", "the regional council", "entity"),
    ]
    landed = [pair("old", "Which public body paid for the Lakeside Observatory together with a foundation?", "Regional council", "entity")]
    candidates = spark.createDataFrame(rows).withColumn("_prior", F.lit(False))
    candidates = candidates.unionByName(spark.createDataFrame(landed).withColumn("_prior", F.lit(True)))
    with FakeOpenAI() as fake:
        cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "llm.cache=false", "llm.max_retries=0"])
        ctx = StageContext(cfg=cfg, run_id="r", llm_base_url=fake.base_url, llm_api_key="sk-test", log=lambda _: None)
        result = check.STAGE.run(candidates, ctx)
        marked = {r["qa_id"]: r for r in result.marked.collect()}
        requests = fake.stats()["requests"]
    assert {q: (r[REASON], r[DETAIL]) for q, r in marked.items()} == {
        "t1": (None, None),
        "t2": ("duplicate_fact", "duplicate_of=t1 (same answer: January 2006)"),
        "t3": ("answer_type_mismatch", "answer_type expression, but 'Lake-effect snowfall' is not a math expression"),
        "t4": (None, None),
        "t5": ("duplicate_fact", "duplicate_of=old (same answer: Regional council)"),
    }
    assert {q: r["answer_type"] for q, r in marked.items() if r[REASON] is None} == {"t1": "short_text", "t4": "numeric"}
    assert requests == 4  # the pairs that passed the free checks; the landed pair is not sent again
    assert set(check.REJECTION_REASONS) >= {"answer_type_mismatch", "duplicate_fact"}


def test_one_pair_per_fact_holds_when_a_stage_runs_in_many_slices(spark, tmp_path):
    """An LLM stage commits slice by slice; check's slices are cut by document, so the pairs of one
    document meet in one slice and one pair per fact holds however small the slices are."""
    wh = tmp_path / "wh"
    same_fact = [
        pair("s1", "In which month and year did the Lakeside Observatory on Lake Erie open?", "January 2006", "short_text"),
        pair("s2", "When did the observatory on the northern shore of Lake Erie first open?", "January 2006", "short_text"),
        pair("s3", "When did the Lake Erie observatory open its doors to the public?", "January 2006", "short_text"),
        pair("o1", "How many tonnes does the main telescope of the Lakeside Observatory weigh?", "42 tonnes", "numeric", doc_id="e"),
    ]
    spark.createDataFrame(same_fact).withColumn("run_id", F.lit("r0")).write.format("delta").save(str(wh / "qa_candidates"))
    lines: list[str] = []
    with FakeOpenAI() as fake:
        settings = [f"llm.base_url={fake.base_url}", "llm.slice_rows=1", "mlflow.enabled=false", "quality.enabled=false"]
        run_pipeline([], wh, load_config("openai", settings), start="check", until="check", spark=spark, log=lines.append)
    assert any("in 4 slices" in ln for ln in lines), lines
    kept = sorted(r["qa_id"] for r in Warehouse(spark, str(wh)).read("checked").collect())
    assert kept == ["o1", "s3"]  # the shortest question of the fact
