"""Landing gates: suites per table evaluated on a batch, severities from config, and a corrupted
batch sent to quarantine while its table stays at its previous version (runs stop at `dedup`: no LLM)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pyspark.sql import functions as F

from tests.support.docs import ARTICLE, ARTICLE2
from webscale_rl.config import Config, ConfigError, QualityConfig, load_config
from webscale_rl.pipeline import PIPELINE, PipelineError, check_config, run_pipeline
from webscale_rl.quality.gates import QUARANTINE, evaluate, gate_batch
from webscale_rl.quality.suites import table_suites
from webscale_rl.stages import check
from webscale_rl.stages.base import StageContext
from webscale_rl.warehouse import REJECTION_SCHEMA, Warehouse

QA_SCHEMA = (
    "qa_id string, doc_id string, pretrain_text string, domain string, persona string, question string, answer string, answer_type string, run_id string"
)


def _qa(qa_id, domain="Math", answer="4", answer_type="numeric", question="What is two plus two?"):
    return (qa_id, "d1", "text", domain, "a teacher", question, answer, answer_type, "r1")


def _results(results):
    return {r.expectation: r for r in results}


def test_qa_suite_reports_each_violation(spark):
    q = QualityConfig(max_answer_chars=10)
    df = spark.createDataFrame(
        [
            _qa("q1"),
            _qa("q1", domain="Cooking"),  # duplicate qa_id, domain outside the ten
            _qa("q3", answer="", answer_type="essay"),  # empty answer, unknown answer type
            _qa("q4", answer="x" * 11),  # too long for max_answer_chars=10
            (None, "d1", "text", "Math", "p", "Q?", "a", "entity", "r1"),  # null key
        ],
        QA_SCHEMA,
    )
    rows, results = evaluate(df, "qa", table_suites(q)["qa"], q)
    r = _results(results)
    assert rows == 5
    assert not r["unique(qa_id)"].success and r["unique(qa_id)"].observed == "1 duplicate values of 5 violate"
    assert not r["in_set(domain)"].success and r["in_set(domain)"].observed == "1 rows of 5 violate"
    assert not r["length_between(answer)"].success and r["length_between(answer)"].observed == "2 rows of 5 violate"
    assert not r["not_null(qa_id)"].success
    assert not r["in_set(answer_type)"].success and r["in_set(answer_type)"].severity == "warning"
    assert r["schema"].success and r["not_null(doc_id)"].success
    assert r["max_share(domain)"].success and r["max_share(domain)"].observed == "skipped: 5 rows < 20"


def test_distribution_check_catches_a_broken_model(spark):
    q = QualityConfig(distribution_min_rows=10, severity={"max_share(domain)": "critical"})
    df = spark.createDataFrame([_qa(f"q{i}", domain="Math" if i else "Coding", answer=str(i)) for i in range(20)], QA_SCHEMA)
    r = _results(evaluate(df, "qa", table_suites(q)["qa"], q)[1])
    assert not r["max_share(domain)"].success and r["max_share(domain)"].severity == "critical"
    assert r["max_share(domain)"].observed == "top value 'Math' has 95% of 20 rows, max 90%"
    assert r["max_share(answer)"].success


def test_schema_and_missing_column(spark):
    q = QualityConfig()
    df = spark.createDataFrame([("d1", 3)], "doc_id string, text int")
    r = _results(evaluate(df, "documents", table_suites(q)["documents"], q)[1])
    assert r["schema"].observed == "text is int, expected string"
    bad = spark.createDataFrame([("d1",)], "doc_id string")
    r = _results(evaluate(bad, "documents", table_suites(q)["documents"], q)[1])
    assert r["not_null(text)"].observed == "column text missing" and not r["not_null(text)"].success


def test_gate_batch_relations_and_severity(spark, warehouse):
    q = QualityConfig()
    kept = spark.createDataFrame([("d1", "some text"), ("d2", "more text")], "doc_id string, text string")
    rejected = spark.createDataFrame(
        [("d3", None, "filter", "too_few_words", "n_words=2", "r1", None), ("d4", None, "filter", "made_up_reason", None, "r1", None)],
        REJECTION_SCHEMA,
    )
    gate = gate_batch(spark, "filter", "filtered", kept, rejected, 5, q, Warehouse(spark, warehouse), "r1")
    r = _results(gate.results)
    assert not gate.ok
    assert [f.expectation for f in gate.critical_failures] == ["value_between(n_words)", "rows_accounted"]
    assert r["value_between(n_words)"].observed == "column n_words missing"
    assert r["rows_accounted"].observed == "in 5, kept 2 + rejected 2" and r["rows_at_most_input"].success
    assert [w.expectation for w in gate.warnings] == ["matches(reason)"]
    assert gate.results_path == warehouse / "_quality" / "gates" / "r1" / "filter.json"
    assert json.loads(gate.results_path.read_text())["ok"] is False
    assert "CRITICAL: filtered:" in gate.message() and "warning: rejections:matches(reason)" in gate.message()

    # Severities from config: "off" drops an expectation, "warning" lets the batch land.
    q2 = QualityConfig(severity={"rows_accounted": "warning", "filtered:value_between(n_words)": "off"})
    gate2 = gate_batch(spark, "filter", "filtered", kept, rejected, 5, q2, Warehouse(spark, warehouse), "r1")
    assert gate2.ok and "rows_accounted" in {w.expectation for w in gate2.warnings}
    assert "value_between(n_words)" not in _results(gate2.results)


ISO_QUESTION = "What is the first letter of the ISO basic Latin alphabet?"
ISO_TEXT = "The ISO basic Latin alphabet has 26 letters; its first letter is A and its last is Z."


@pytest.mark.parametrize(
    "question, answer, leaks",
    [
        (ISO_QUESTION, "A", False),  # "a" is among the question's letters, not among its words
        ("Which letter of the ISO basic Latin alphabet comes after the letter A?", "The letter A", True),
    ],
)
def test_check_and_gate_judge_answer_in_question_alike(spark, warehouse, question, answer, leaks):
    """The gate's not_in(answer) and check's answer_in_question are one rule: the ISO pair passes
    both (a substring test quarantined its whole batch), a real leak fails both."""
    pair = spark.createDataFrame([("q1", "d1", ISO_TEXT, "Other", "a teacher", question, answer, "entity", "r1")], QA_SCHEMA)
    reason, _ = check.deterministic_checks(pair, StageContext(cfg=Config(), run_id="r1"))
    assert pair.select(reason.alias("reason")).first()["reason"] == ("answer_in_question" if leaks else None)
    no_rejections = spark.createDataFrame([], REJECTION_SCHEMA)
    gate = gate_batch(spark, "check", "checked", pair, no_rejections, 1, QualityConfig(), Warehouse(spark, warehouse), "r1")
    assert gate.failed_expectations == (["checked:not_in(answer) (1 rows of 1 violate)"] if leaks else []), gate.message()


def test_severity_config_is_checked():
    cfg = load_config(overrides=["quality.severity.qa:max_share(domain)=critical"])
    assert cfg.quality.severity == {"qa:max_share(domain)": "critical"}
    check_config(cfg)
    # Unknown expectation names are checked where the pipeline is assembled (the config is a leaf).
    with pytest.raises(ConfigError, match="unknown expectation 'no_such_check'"):
        check_config(load_config(overrides=["quality.severity.no_such_check=warning"]))
    with pytest.raises(ConfigError, match="must be one of critical, warning, off"):
        load_config(overrides=["quality.severity.unique(qa_id)=fatal"])


def _docs(tmp_path, suffix: str = ""):
    path = tmp_path / f"docs{suffix}.jsonl"
    docs = [
        {"id": "danube" + suffix, "text": ARTICLE},
        {"id": "photo" + suffix, "text": ARTICLE2},
        {"id": "copy" + suffix, "text": ARTICLE.upper()},
        {"id": "short" + suffix, "text": "Too short to keep."},
    ]
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    return path


def test_corrupted_batch_is_quarantined_and_table_unchanged(spark, tmp_path, monkeypatch):
    from webscale_rl.cli import main

    warehouse = tmp_path / "wh"
    inputs = [str(_docs(tmp_path))]
    cfg = load_config(overrides=["mlflow.enabled=false", "quality.enabled=false"])
    lines: list[str] = []
    # Runs are incremental: an earlier run lands other documents; the broken run's batch is new work.
    run_pipeline([str(_docs(tmp_path, "-earlier"))], warehouse, cfg, until="dedup", spark=spark, log=lines.append)
    filtered_before = Warehouse(spark, warehouse).latest_version("filtered")
    deduped_before = Warehouse(spark, warehouse).latest_version("deduped")
    assert not any("[gate]" in line for line in lines)  # a clean batch passes silently

    # A broken filter: its kept rows lose their doc_id.
    real = PIPELINE[1]
    assert real.name == "filter"

    def corrupt(df, ctx):
        result = real.run(df, ctx)
        result.marked = result.marked.withColumn("doc_id", F.when(F.col("doc_id") == "photo", F.lit(None)).otherwise(F.col("doc_id")))
        return result

    broken = tuple(dataclasses.replace(s, run=corrupt) if s.name == "filter" else s for s in PIPELINE)
    monkeypatch.setattr("webscale_rl.pipeline.PIPELINE", broken)
    with pytest.raises(PipelineError) as err:
        run_pipeline(inputs, warehouse, cfg, until="dedup", spark=spark, log=lines.append)
    msg = str(err.value)
    assert "stage 'filter': batch failed critical expectation(s) and was quarantined" in msg
    assert "filtered:not_null(doc_id) (1 rows of 3 violate)" in msg
    assert any(line.startswith("[gate] filter → 'filtered'") for line in lines)

    # The main tables did not move; the batch (kept and rejected rows) is in quarantine.
    assert Warehouse(spark, warehouse).latest_version("filtered") == filtered_before
    assert Warehouse(spark, warehouse).latest_version("deduped") == deduped_before
    quarantined = Warehouse(spark, warehouse).read(QUARANTINE).collect()
    assert {(r["table"], r["stage"]) for r in quarantined} == {("filtered", "filter"), ("rejections", "filter")}
    assert len(quarantined) == 4 and len({r["run_id"] for r in quarantined}) == 1
    assert quarantined[0]["failed_expectations"] == ["filtered:not_null(doc_id) (1 rows of 3 violate)"]
    docs = {json.loads(r["row_json"]).get("doc_id") for r in quarantined}
    assert docs == {"danube", "copy", "short", None}
    run_id = quarantined[0]["run_id"]
    assert Warehouse(spark, warehouse).read("rejections").filter((F.col("run_id") == run_id) & (F.col("stage") == "filter")).count() == 0

    # The CLI turns it into exit code 1 with the message.
    code = main(["run", "--input", *inputs, "--warehouse", str(warehouse), "--until", "dedup", "--set", "mlflow.enabled=false"])
    assert code == 1
    assert Warehouse(spark, warehouse).latest_version("filtered") == filtered_before


def test_a_row_that_breaks_a_per_row_rule_is_quarantined_alone_and_the_rest_lands(spark, tmp_path, monkeypatch):
    """As Delta Live Tables' expect_or_drop: a kept row with a domain outside the ten goes to the
    quarantine table with the expectation it broke and is rejected with that reason; the other
    rows of its batch land and the run succeeds."""
    from tests.support.fake_server import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    real = next(s for s in PIPELINE if s.name == "profile")

    def astrology_for_photo(df, ctx):
        result = real.run(df, ctx)
        result.marked = result.marked.withColumn("domain", F.when(F.col("doc_id") == "photo", F.lit("Astrology")).otherwise(F.col("domain")))
        return result

    monkeypatch.setattr("webscale_rl.pipeline.PIPELINE", tuple(dataclasses.replace(s, run=astrology_for_photo) if s is real else s for s in PIPELINE))
    warehouse = tmp_path / "wh"
    with FakeOpenAI() as fake:
        cfg = load_config("openai", [f"llm.base_url={fake.base_url}", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"])
        summary = run_pipeline([str(_docs(tmp_path))], warehouse, cfg, until="profile", spark=spark, log=lambda _: None)
    wh = Warehouse(spark, warehouse)
    assert {r["doc_id"] for r in wh.read("profiles").collect()} == {"copy"}  # the exact copy with the smaller id survived dedup
    rejected = wh.read("rejections").filter("stage = 'profile'").collect()
    assert [(r["doc_id"], r["reason"]) for r in rejected] == [("photo", "quarantined:in_set(domain)")]
    assert rejected[0]["detail"] == "landing gate: profiles:in_set(domain) failed"
    quarantined = wh.read(QUARANTINE).collect()
    assert [(r["table"], r["stage"], r["failed_expectations"]) for r in quarantined] == [("profiles", "profile", ["profiles:in_set(domain)"])]
    assert json.loads(quarantined[0]["row_json"])["domain"] == "Astrology"
    profile = next(s for s in summary.stages if s.stage == "profile")
    assert (profile.kept, profile.rejected, profile.rejected_by_reason) == (1, 1, {"quarantined:in_set(domain)": 1})
    assert profile.gate.ok
