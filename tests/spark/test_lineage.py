"""Lineage and `explain`: a per-stage run records the Delta versions it read and wrote and reads the
version it recorded, whatever a concurrent writer commits meanwhile; `explain` tells a document's
and a pair's path from the tables, `rejections` and `_lineage` of the small warehouse."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.support.small_warehouse import SMALL_DOCS
from webscale_rl import explain, lineage
from webscale_rl.cli import main
from webscale_rl.config import load_config
from webscale_rl.pipeline import PIPELINE, PipelineError, run_pipeline
from webscale_rl.prompts import load_prompt
from webscale_rl.warehouse import Warehouse


def lineage_of(wh: Warehouse, run_id: str) -> set[tuple]:
    return {(r["stage"], r["table"], r["role"], r["version"]) for r in lineage.records(wh, [run_id])}


def test_a_per_stage_run_records_what_it_read_and_wrote_and_reads_only_that_version(spark, tmp_path, monkeypatch):
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in SMALL_DOCS) + "\n")
    warehouse = tmp_path / "wh"
    cfg = load_config(overrides=["mlflow.enabled=false", "quality.enabled=false"])
    ingest = run_pipeline([str(docs)], warehouse, cfg, until="ingest", spark=spark, log=lambda _: None)
    wh = Warehouse(spark, str(warehouse))
    assert lineage_of(wh, ingest.run_id) == {("ingest", str(docs), "input", None), ("ingest", "documents", "wrote", 0)}

    # While filter runs, another writer commits a document to its upstream table.
    late = wh.read("documents").filter("doc_id = 'photo'").collect()[0].asDict() | {"doc_id": "late", "run_id": "other-writer"}
    real = PIPELINE[1]
    assert real.name == "filter"

    def filter_meanwhile_written(df, ctx):
        wh.append_once(spark.createDataFrame([late], wh.read("documents").schema), "documents", "test/late-writer")
        return real.run(df, ctx)

    monkeypatch.setattr("webscale_rl.pipeline.PIPELINE", tuple(dataclasses.replace(s, run=filter_meanwhile_written) if s is real else s for s in PIPELINE))
    # The stage reads documents v0, as it recorded: the late document is not in its batch, so the
    # end-of-run accounting names it (it is new work for the next run).
    with pytest.raises(PipelineError, match=r"1 document\(s\) are neither in 'filtered' nor in rejections, e\.g\. \['late'\]"):
        run_pipeline([], warehouse, cfg, start="filter", until="filter", spark=spark, log=lambda _: None)
    assert wh.latest_version("documents") == 1
    (filter_run,) = {r["run_id"] for r in lineage.records(wh) if r["stage"] == "filter"}
    # the first versions of filtered and rejections (ingest rejected nothing)
    assert lineage_of(wh, filter_run) == {("filter", "documents", "read", 0), ("filter", "filtered", "wrote", 0), ("filter", "rejections", "wrote", 0)}
    assert wh.read("filtered").filter("doc_id = 'late'").count() == 0
    assert wh.read("rejections").filter("doc_id = 'late'").count() == 0


def versions_written(summary, stage: str) -> tuple[int | None, int | None]:
    landed = next(s for s in summary.stages if s.stage == stage)
    return landed.table_version, landed.rejections_version


def test_explain_names_the_stage_reason_run_and_versions_that_dropped_a_document(spark, small_warehouse, capsys):
    warehouse, summary = small_warehouse
    wh = Warehouse(spark, str(warehouse))
    found = explain.explain(wh, doc_id="danube")  # the copy in capitals has the smaller id and stays
    assert [(s.stage, s.verdict) for s in found.steps] == [("ingest", "kept"), ("filter", "kept"), ("dedup", "rejected")]
    dedup = found.steps[-1]
    assert (dedup.reason, dedup.detail, dedup.duplicate_of, dedup.table) == ("exact_duplicate", "duplicate_of=copy", "copy", "rejections")
    assert (dedup.run_id, dedup.version) == (summary.run_id, versions_written(summary, "dedup")[1])
    assert dedup.read == {"filtered": versions_written(summary, "filter")[0]}
    assert found.pairs == [] and found.outcome == "dropped at dedup: exact_duplicate"

    assert main(["explain", "--warehouse", str(warehouse), "--doc-id", "short"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"document 'short' in warehouse {wh.root}: dropped at filter: too_few_words"
    assert lines[3] == "  filter        REJECTED too_few_words: preset=default; n_words=4.0, required >= 50"
    assert lines[4] == f"                → rejections v{versions_written(summary, 'filter')[1]}, run {summary.run_id}; read documents v0"
    assert len(lines) == 5  # the path ends where the document was dropped

    assert main(["explain", "--warehouse", str(warehouse), "--doc-id", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no document with doc_id 'nope' in warehouse {wh.root}: it is neither in 'documents' nor rejected at ingest"]


def test_explain_follows_a_kept_pair_through_every_stage_with_prompts_and_versions(spark, small_warehouse, capsys):
    warehouse, summary = small_warehouse
    pair = Warehouse(spark, str(warehouse)).read("qa").orderBy("qa_id").first()
    assert main(["explain", "--warehouse", str(warehouse), "--qa-id", pair["qa_id"], "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["doc_id"], got["qa_id"], got["outcome"]) == (pair["doc_id"], pair["qa_id"], "in 'qa'")
    doc_steps = [(s["stage"], s["verdict"], s["table"], s["version"], s["run_id"]) for s in got["steps"]]
    assert doc_steps == [(n, "kept", t, versions_written(summary, n)[0], summary.run_id) for n, t in DOC_TABLES]
    judged = got["steps"][3]
    assert (judged["prompt_version"], judged["model"], judged["read"]) == (
        load_prompt("llm_filter").version,
        "gpt-4.1-mini",
        {"deduped": versions_written(summary, "dedup")[0]},
    )
    (path,) = got["pairs"]
    assert (path["qa_id"], path["outcome"]) == (pair["qa_id"], "in 'qa'")
    steps = [(s["stage"], s["verdict"], s["table"], s["version"], s["read"]) for s in path["steps"]]
    assert steps == [
        ("generate", "kept", "qa_candidates", versions_written(summary, "generate")[0], {"profiles": versions_written(summary, "profile")[0]}),
        ("check", "kept", "checked", versions_written(summary, "check")[0], {"qa_candidates": versions_written(summary, "generate")[0]}),
        ("verify", "kept", "verified", versions_written(summary, "verify")[0], {"checked": versions_written(summary, "check")[0]}),
        ("decontaminate", "kept", "qa", versions_written(summary, "decontaminate")[0], {"verified": versions_written(summary, "verify")[0]}),
    ]
    generate = path["steps"][0]
    assert (generate["prompt_version"], generate["model"]) == (pair["prompt_version"], "gpt-4.1")
    assert (generate["fields"]["question"], generate["fields"]["answer"]) == (pair["question"], pair["answer"])

    assert main(["explain", "--warehouse", str(warehouse), "--qa-id", pair["qa_id"]]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"QA pair '{pair['qa_id']}' of document '{pair['doc_id']}' in warehouse {Warehouse(spark, str(warehouse)).root}: in 'qa'"
    assert f"      Q: {pair['question']}" in text


DOC_TABLES = [("ingest", "documents"), ("filter", "filtered"), ("dedup", "deduped"), ("llm_filter", "judged"), ("profile", "profiles")]
