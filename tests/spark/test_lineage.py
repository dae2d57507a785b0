"""Lineage and `explain`: a per-stage run records the Delta versions it read and wrote and reads the
version it recorded, whatever a concurrent writer commits meanwhile; `explain` tells a document's
and a pair's path from the tables, `rejections` and `_lineage` of the small warehouse."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.support.small_warehouse import SMALL_DOCS
from webscale_rl import lineage
from webscale_rl.config import load_config
from webscale_rl.pipeline import PIPELINE, PipelineError, run_pipeline
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
    # end-of-run accounting names it (the next run takes it).
    with pytest.raises(PipelineError, match=r"1 document\(s\) are neither in 'filtered' nor in rejections, e\.g\. \['late'\]"):
        run_pipeline([], warehouse, cfg, start="filter", until="filter", spark=spark, log=lambda _: None)
    assert wh.latest_version("documents") == 1
    (filter_run,) = {r["run_id"] for r in lineage.records(wh) if r["stage"] == "filter"}
    # the first versions of filtered and rejections (ingest rejected nothing)
    assert lineage_of(wh, filter_run) == {("filter", "documents", "read", 0), ("filter", "filtered", "wrote", 0), ("filter", "rejections", "wrote", 0)}
    assert wh.read("filtered").filter("doc_id = 'late'").count() == 0
    assert wh.read("rejections").filter("doc_id = 'late'").count() == 0

    monkeypatch.setattr("webscale_rl.pipeline.PIPELINE", PIPELINE)
    again = run_pipeline([], warehouse, cfg, start="filter", until="filter", spark=spark, log=lambda _: None)
    assert lineage_of(wh, again.run_id) == {("filter", "documents", "read", 1), ("filter", "filtered", "wrote", 1)}  # kept: no rejection
    assert wh.read("filtered").filter("doc_id = 'late'").count() == 1
