"""The whole pipeline with input and warehouse in object storage, as a user runs it:
`webscale-rl run --input s3a://… --warehouse s3a://… --conf spark.hadoop.fs.s3a.endpoint=…` against
a local S3 server (moto) and the fake LLM endpoint, quality gates and MLflow on. Checked: the
tables equal a run into a local warehouse; the response cache lives in the bucket and answers a
second warehouse's run with zero LLM calls; `export` reads the table from S3; nothing lands on the
local disk under a folder named like the URI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.cli_runs import run_cli, set_args
from tests.support.docs import ARTICLE_VARIANTS
from tests.support.fake_server import FakeOpenAI
from tests.support.paths import REPO
from tests.support.s3_server import s3_server  # noqa: F401  (fixture)
from tests.support.warehouse_compare import duplicate_keys, snapshot
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse


def overrides(fake) -> list[str]:
    return [
        f"llm.base_url={fake.base_url}",
        "llm.backoff_base_s=0.01",
        "llm.max_concurrency=4",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        "dedup.fuzzy.enabled=false",  # ARTICLE_VARIANTS are variants of two articles
    ]


@pytest.mark.spark_processes
def test_whole_pipeline_on_s3_equals_a_local_run(spark, s3_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    local_files = Path(Warehouse(spark, s3_server.uri("run", "wh")).local_dir())
    shutil.rmtree(local_files, ignore_errors=True)  # left by an earlier test session: this one must make its own
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in ARTICLE_VARIANTS), encoding="utf-8")
    s3_server.client().upload_file(str(inputs), s3_server.bucket, "run/in/docs.jsonl")
    conf = [arg for c in s3_server.conf_args for arg in ("--conf", c)]
    with FakeOpenAI() as fake:
        run = ["run", "--config", "openai", "--input", s3_server.uri("run", "in") + "/", *set_args(overrides(fake)), *conf]
        code, log = run_cli([*run, "--warehouse", s3_server.uri("run", "wh")])
        assert code == 0, log[-4000:]
        paid = len(fake.requests)
        assert paid > 0 and "accounted for" in log
        # A second warehouse that holds the first one's response cache: every reply comes from it.
        assert s3_server.copy_prefix("run/wh/llm_cache/", "run/wh2/llm_cache/") > 0
        code, log2 = run_cli([*run, "--warehouse", s3_server.uri("run", "wh2")])
        assert code == 0, log2[-4000:]
        assert len(fake.requests) == paid, "the cache in the bucket should have answered every call"
        out = tmp_path / "qa.jsonl"
        code, exported = run_cli(["export", "--warehouse", s3_server.uri("run", "wh"), "--format", "jsonl", "--out", str(out), *conf])
        assert code == 0, exported[-3000:]
        local_wh = tmp_path / "wh-local"
        run_pipeline([str(inputs)], local_wh, load_config("openai", overrides(fake)), spark=spark, log=lambda _: None)
    keys = s3_server.keys("run/wh/")
    assert "run/wh/qa/_delta_log/00000000000000000000.json" in keys
    assert not any("/_staging/" in k and k.endswith(".parquet") and "_batch=" not in k for k in keys)  # staging is Delta, by run
    from_s3 = s3_server.download("run/wh/", tmp_path / "wh-from-s3")
    assert duplicate_keys(spark, from_s3) == {}
    got, reference = snapshot(spark, from_s3), snapshot(spark, local_wh)
    assert got.keys() == reference.keys() and len(reference["qa"]) == 4  # one fact per document
    for table in reference:
        assert got[table] == reference[table], table
    assert len(out.read_text().splitlines()) == 4
    # MLflow and the quality files of a remote warehouse live in a local folder per warehouse.
    assert (local_files / "_mlflow" / "mlflow.db").is_file() and list((local_files / "_quality" / "gates").glob("*/check.json"))
    assert not (REPO / "s3a:").exists() and not (tmp_path / "s3a:").exists()
