"""Incremental runs: the same input twice adds nothing (no new rows, no new table versions, no
LLM call); documents added to the inputs later are processed alone, judged against what earlier
runs kept; and the result equals one clean run over all the inputs."""

from __future__ import annotations

import json

from tests.support.docs import ARTICLE, ARTICLE2
from tests.support.fake_server import FakeOpenAI
from tests.support.warehouse_compare import duplicate_keys, snapshot, versions
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline

FIRST = [
    {"id": "danube", "text": ARTICLE},
    {"id": "photo", "text": ARTICLE2},
    {"id": "short", "text": "Buy now! Limited offer."},
    {"id": "nav", "text": "NAVIGATION ONLY. " + ARTICLE2.replace("Photosynthesis", "Respiration")},
]
LATER = [
    {"id": "rhine", "text": ARTICLE.replace("Danube", "Rhine")},
    {"id": "zz-danube-copy", "text": ARTICLE.lower()},  # an exact duplicate of a document kept by the first run
    {"id": "empty", "text": "  "},
]


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


def fake_config(fake):
    # The documents are variants of two articles; near-duplicate dedup (tested in test_dedup) is off
    # so that every variant goes on to the LLM stages.
    overrides = [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01", "quality.enabled=false", "mlflow.enabled=false", "dedup.fuzzy.enabled=false"]
    return load_config("openai", overrides)


def requested_docs(fake, since: int) -> set[str]:
    """First words of the documents in requests after index `since` (the fake's log). verify's
    closed-book call carries no document: its question is checked to come from the same pairs."""
    out = set()
    for body in fake.requests[since:]:
        user = "\n".join(m["content"] for m in body["messages"] if m["role"] == "user")
        if "<document>" in user:
            out.add(user.split("<document>\n", 1)[1][:40])
        else:
            assert body["response_format"]["json_schema"]["name"] == "qa_answer_closed_book", user[:200]
    return out


def test_rerun_adds_nothing_and_new_documents_are_processed_alone(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_jsonl(inputs / "part-1.jsonl", FIRST)
    wh = tmp_path / "wh"
    quiet = lambda _: None  # noqa: E731
    with FakeOpenAI() as fake:
        cfg = fake_config(fake)
        first = run_pipeline([str(inputs)], wh, cfg, spark=spark, log=quiet)
        assert first.counts["decontaminate"] == 2  # danube and photo: one pair each (the fake gives both personas one answer: duplicate_fact)
        before, calls = versions(spark, wh), len(fake.requests)

        # The same input again: nothing to do at any stage.
        again = run_pipeline([str(inputs)], wh, cfg, spark=spark, log=quiet)
        assert {s.stage: (s.rows_in, s.kept, s.rejected) for s in again.stages} == {s.stage: (0, 0, 0) for s in again.stages}
        assert len(fake.requests) == calls
        assert versions(spark, wh) == before

        # New documents appended to the inputs are the only work of the next run.
        write_jsonl(inputs / "part-2.jsonl", LATER)
        later = run_pipeline([str(inputs)], wh, cfg, spark=spark, log=quiet)
        in_per_stage = {s.stage: s.rows_in for s in later.stages}
        assert in_per_stage["ingest"] == 3 and in_per_stage["filter"] == 2 and in_per_stage["dedup"] == 2
        assert in_per_stage["llm_filter"] == 1 and in_per_stage["check"] == 2
        asked = requested_docs(fake, calls)
        assert asked and all(a.startswith("The Rhine") for a in asked), asked
        rejected = {(r["doc_id"], r["reason"], r["detail"]) for r in spark.read.format("delta").load(str(wh / "rejections")).collect()}
        assert ("zz-danube-copy", "exact_duplicate", "duplicate_of=danube") in rejected
        assert ("empty", "empty_text", "text is empty or whitespace") in rejected
        assert duplicate_keys(spark, wh) == {}

        # The same tables as one clean run over all inputs.
        clean = tmp_path / "wh-clean"
        run_pipeline([str(inputs)], clean, cfg, spark=spark, log=quiet)
    assert snapshot(spark, wh) == snapshot(spark, clean)


def test_catalog_tables_instead_of_folders(spark, tmp_path):
    """warehouse.catalog/schema: tables are catalog.schema.<name> (the local session catalog here,
    Unity Catalog on Databricks); incremental landing works the same way."""
    schema = f"wsrl_{tmp_path.name[-12:].replace('-', '_')}".lower()
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS spark_catalog.{schema} LOCATION '{tmp_path / 'managed'}'")
    inputs = tmp_path / "docs.jsonl"
    write_jsonl(inputs, FIRST)
    wh = tmp_path / "wh"
    cfg = load_config(None, ["mlflow.enabled=false", "warehouse.catalog=spark_catalog", f"warehouse.schema={schema}", "dedup.fuzzy.enabled=false"])
    first = run_pipeline([str(inputs)], wh, cfg, until="dedup", spark=spark, log=lambda _: None)
    assert first.counts == {"ingest": 4, "filter": 3, "dedup": 3}
    assert spark.table(f"spark_catalog.{schema}.deduped").count() == 3
    assert spark.table(f"spark_catalog.{schema}.rejections").count() == 1
    assert not (wh / "documents").exists()  # no folder tables
    again = run_pipeline([str(inputs)], wh, cfg, until="dedup", spark=spark, log=lambda _: None)
    assert again.counts == {"ingest": 0, "filter": 0, "dedup": 0}
    assert spark.table(f"spark_catalog.{schema}.documents").count() == 4
