"""A whole pipeline run as MLflow records it: the parent run, one nested run per stage, lineage,
metrics and artifacts, read back with MlflowClient from the session's small warehouse."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from webscale_rl import STAGES, lineage
from webscale_rl.warehouse import Warehouse


def test_pipeline_run_in_mlflow(spark, small_warehouse):
    """Parent run + one nested run per stage, with lineage, metrics and artifacts (MlflowClient)."""
    warehouse, summary = small_warehouse
    client = MlflowClient(tracking_uri=summary.mlflow.tracking_uri)
    parent = client.get_run(summary.mlflow.run_id)
    assert parent.info.status == "FINISHED" and parent.info.run_name == summary.run_id
    children = client.search_runs([summary.mlflow.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_stage = {r.info.run_name: r for r in children}
    assert set(by_stage) == set(STAGES)

    ingest, generate, dedup = by_stage["ingest"], by_stage["generate"], by_stage["dedup"]
    assert ingest.data.params["lineage.read.inputs"].endswith("docs.jsonl")
    assert ingest.data.metrics["rows_in"] == 5 and ingest.data.metrics["rows_out"] == 5
    assert dedup.data.metrics["rejected.exact_duplicate"] == 1
    assert dedup.data.params["lineage.read.filtered"] == str(Warehouse(spark, warehouse).latest_version("filtered"))
    assert dedup.data.params["lineage.written.deduped"] == str(Warehouse(spark, warehouse).latest_version("deduped"))
    # the versions in _lineage are the stage run's MLflow dataset inputs (mlflow.data)
    recorded = {(r["table"], r["role"], r["version"]) for r in lineage.records(Warehouse(spark, warehouse), [summary.run_id]) if r["stage"] == "dedup"}
    tags = [{t.key: t.value for t in d.tags} for d in dedup.inputs.dataset_inputs]
    logged = {(d.dataset.name, t["mlflow.data.context"], int(t["delta.version"])) for d, t in zip(dedup.inputs.dataset_inputs, tags)}
    assert logged == recorded and {role for _, role, _ in logged} == {"read", "wrote"}
    assert ("filtered", "read", Warehouse(spark, warehouse).latest_version("filtered")) in logged
    (source,) = [d.dataset for d in ingest.inputs.dataset_inputs if d.dataset.source_type == "spark"]  # the input file
    assert json.loads(source.source)["path"].endswith("docs.jsonl")
    assert generate.data.params["model"] == "gpt-4.1"
    assert generate.data.params["prompt_version"].startswith("generate-v") and "+fewshot-v" in generate.data.params["prompt_version"]
    gm = generate.data.metrics
    assert gm["llm.calls"] > 0 and gm["tokens"] == gm["llm.prompt_tokens"] + gm["llm.completion_tokens"]
    assert gm["cost_usd"] == pytest.approx((gm["llm.prompt_tokens"] * 2 + gm["llm.completion_tokens"] * 8) / 1e6)
    for r in by_stage.values():
        m = r.data.metrics
        assert m["gate.passed"] == 1.0 and 0 < m["gate.pass_rate"] <= 1.0
        assert {"pass_rate", "elapsed_s", "rows_per_s", "rows_rejected"} <= set(m)
        assert [a.path for a in client.list_artifacts(r.info.run_id, "gate")] == [f"gate/{r.info.run_name}.json"]

    pm = parent.data.params
    assert pm["lineage.written.qa"] == str(Warehouse(spark, warehouse).latest_version("qa"))
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert arts == {"plots/funnel.png", "plots/domains.png", "plots/personas.png", "plots/answer_length.png"}
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"qa_sample.json", "qa_report.json", "validation", "quality", "run_summary.json"} <= top
    sample = json.loads(open(client.download_artifacts(parent.info.run_id, "qa_sample.json")).read())
    assert len(sample["data"]) == summary.counts["decontaminate"] and "question" in sample["columns"]
    docs = {a.path for a in client.list_artifacts(parent.info.run_id, "quality/data_docs")}
    assert "quality/data_docs/local_site" in docs
    assert parent.data.metrics["validation.success"] == 1.0
