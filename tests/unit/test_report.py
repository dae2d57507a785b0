"""MLflow run report: one SQLite store under tmp_path (creating it runs the migrations once)."""

from __future__ import annotations

import json

import pytest

from webscale_rl.config import MLflowConfig
from webscale_rl.quality import RunReport
from webscale_rl.quality.report import is_secret_key, sanitize_name

CANARY = "sk-canary-7f3e9b2d41c6a58e"


def _tree_contains(root, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_run_report_sqlite_roundtrip_and_redaction(warehouse, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    cfg = MLflowConfig(experiment="test-exp")
    art = tmp_path / "summary.txt"
    art.write_text("42 qa pairs\n")
    leaky = tmp_path / "leaky.txt"
    leaky.write_text(f"key={CANARY}\n")

    with RunReport(cfg, warehouse, run_name="run-1", tags={"git_sha": "abc"}) as rep:
        assert rep.tracking_uri == f"sqlite:///{warehouse.resolve()}/_mlflow/mlflow.db"
        rep.log_params(
            {
                "llm": {"api_key": CANARY, "base_url": CANARY, "max_tokens": {"generate": 160}},
                "filter.min_words": 50,
                "long": "x" * 7000,
                "db_password": "hunter2-hunter2",
            }
        )
        rep.log_metrics({"qa.rows": 12, "score": 0.5}, step=1)
        rep.log_stage("filter", rows_in=10, rows_out=7, rows_rejected=3, elapsed_s=1.5, rejected_by_reason={"too_short": 2, "bad chars: <>": 1})
        rep.log_file(art)
        rep.log_file(leaky)  # holds the secret: refused
        rep.log_dict({"n": 1, "token": CANARY, "nested": {"url": CANARY}}, "stats")
        run_id, exp_id = rep.run_id, rep.experiment_id
        assert run_id in rep.ui_hint and "mlflow ui --backend-store-uri sqlite:///" in rep.ui_hint

    client = MlflowClient(tracking_uri=f"sqlite:///{warehouse}/_mlflow/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-1"
    assert run.data.tags["git_sha"] == "abc"
    p = run.data.params
    assert p["llm.api_key"] == "***" and p["llm.base_url"] == "***" and p["db_password"] == "***"
    assert p["llm.max_tokens.generate"] == "160" and p["filter.min_words"] == "50"
    assert len(p["long"]) == 6000
    m = run.data.metrics
    assert m["qa.rows"] == 12 and m["score"] == 0.5
    assert m["filter.rows_in"] == 10 and m["filter.rows_out"] == 7 and m["filter.rows_rejected"] == 3
    assert m["filter.elapsed_s"] == 1.5 and m["filter.rejected.too_short"] == 2
    assert m["filter.rejected.bad_chars"] == 1
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert arts == {"summary.txt", "stats.json"}
    exp = client.get_experiment(exp_id)
    assert exp.artifact_location == (warehouse / "_mlflow" / "artifacts").resolve().as_uri()
    stats = json.loads((warehouse / "_mlflow" / "artifacts" / run_id / "artifacts" / "stats.json").read_text())
    assert stats == {"n": 1, "token": "***", "nested": {"url": "***"}}

    # The canary is nowhere under the store: sqlite db (+journal files) and artifacts.
    assert _tree_contains(warehouse, CANARY.encode()) == []

    # A failing pipeline marks its run FAILED (same store: no second migration).
    with pytest.raises(ValueError):
        with RunReport(cfg, warehouse, run_name="run-2") as rep2:
            raise ValueError("boom")
    assert client.get_run(rep2.run_id).info.status == "FAILED"
    assert rep2.experiment_id == exp_id


def test_disabled_is_noop(warehouse):
    with RunReport(MLflowConfig(enabled=False), warehouse, run_name="off") as rep:
        rep.log_params({"a": 1})
        rep.log_metrics({"m": 1.0})
        rep.log_stage("filter", 1, 1, 0, 0.1, {})
        rep.log_file(warehouse)
        rep.log_dict({"a": 1}, "x.json")
        assert rep.run_id is None and rep.experiment_id is None
        assert "disabled" in rep.ui_hint
    assert list(warehouse.iterdir()) == []


def test_secret_keys_and_names():
    assert is_secret_key("llm.api_key") and is_secret_key("DATABRICKS_TOKEN") and is_secret_key("apikey")
    assert is_secret_key("client_secret") and is_secret_key("db.password") and is_secret_key("llm.api_key_env")
    assert not is_secret_key("llm.max_tokens.generate") and not is_secret_key("tokenizer")
    assert sanitize_name("a:b/<c>") == "a_b/_c_" and sanitize_name("../x") == "_/x"
    assert sanitize_name("") == "unnamed"


def test_nested_runs_figures_and_tables(warehouse, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    with RunReport(MLflowConfig(experiment="nested"), warehouse, run_name="parent") as rep:
        with rep.nested("filter", tags={"webscale_rl.stage": "filter"}) as child:
            child.log_metrics({"rows_in": 3})
        fig, ax = plt.subplots()
        ax.bar(["a"], [1])
        rep.log_figure(fig, "plots/x.png")
        rep.log_table(pd.DataFrame({"q": ["fine", f"leak {CANARY}"], "n": [1, 2]}), "sample.json")
    client = MlflowClient(tracking_uri=rep.tracking_uri)
    run = client.get_run(child.run_id)
    assert run.data.tags["mlflow.parentRunId"] == rep.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["rows_in"] == 3 and run.info.run_name == "filter"
    assert {a.path for a in client.list_artifacts(rep.run_id, "plots")} == {"plots/x.png"}
    table = json.loads(open(client.download_artifacts(rep.run_id, "sample.json")).read())
    assert table["columns"] == ["q", "n"] and table["data"] == [["fine", 1], ["***", 2]]


def test_datasets_are_logged_as_mlflow_dataset_inputs_with_their_versions(warehouse, monkeypatch):
    from mlflow import MlflowClient

    from webscale_rl.quality.report import DatasetRef

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with RunReport(MLflowConfig(experiment="datasets"), warehouse, run_name="parent") as rep:
        with rep.nested("filter") as child:
            child.log_datasets(
                [
                    DatasetRef("documents", "read", 0, delta_path="s3a://b/wh/documents"),
                    DatasetRef("filtered", "wrote", 3, delta_path="s3a://b/wh/filtered"),
                    DatasetRef("rejections", "wrote", 4, delta_table="main.rl.rejections"),
                    DatasetRef("/data/docs.jsonl", "input", spark_path="/data/docs.jsonl"),
                ]
            )
    inputs = MlflowClient(tracking_uri=rep.tracking_uri).get_run(child.run_id).inputs.dataset_inputs
    got = {
        (d.dataset.name, d.dataset.source_type, json.loads(d.dataset.source).get("path") or json.loads(d.dataset.source).get("delta_table_name"))
        + tuple(sorted((t.key, t.value) for t in d.tags))
        for d in inputs
    }
    assert got == {
        ("documents", "delta_table", "s3a://b/wh/documents", ("delta.version", "0"), ("mlflow.data.context", "read")),
        ("filtered", "delta_table", "s3a://b/wh/filtered", ("delta.version", "3"), ("mlflow.data.context", "wrote")),
        ("rejections", "delta_table", "main.rl.rejections", ("delta.version", "4"), ("mlflow.data.context", "wrote")),
        ("/data/docs.jsonl", "spark", "/data/docs.jsonl", ("mlflow.data.context", "input")),
    }
    # each version of a table is its own dataset: the digest covers the version
    assert len({d.dataset.digest for d in inputs}) == 4


def test_mlflow_warm_up_imports_mlflow_and_writes_nothing(warehouse):
    """`run_pipeline` imports MLflow in a thread while the JVM starts; it makes no store (a run
    refused later leaves nothing behind). MLflow off: no thread."""
    import sys

    from webscale_rl.config import Config
    from webscale_rl.pipeline import warm_up_mlflow

    cfg = Config()
    before = sorted(warehouse.rglob("*"))
    warm_up_mlflow(cfg).join()
    assert "mlflow.tracking" in sys.modules
    assert sorted(warehouse.rglob("*")) == before
    cfg.mlflow.enabled = False
    assert warm_up_mlflow(cfg) is None
