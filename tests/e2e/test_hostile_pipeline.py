"""The hostile corpus through the whole pipeline against a fake endpoint that obeys injected text:
every document is accounted for with a specific reason, injected instructions never reach the
`qa` table, PII is replaced before anything is stored or sent, and the API key appears nowhere."""

from __future__ import annotations

import json
import re
import shutil

from pyspark.sql import functions as F

from tests.support.hostile import CANARY, ECHO_ARTICLE, HOSTILE, INJECTION_DOCS, SENTENCE, ObedientFake, write_generated_corpus
from webscale_rl.config import load_config
from webscale_rl.pipeline import run_pipeline
from webscale_rl.warehouse import Warehouse


def test_hostile_corpus_through_the_pipeline(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    corpus = tmp_path / "corpus"
    shutil.copytree(HOSTILE, corpus)
    generated = write_generated_corpus(tmp_path / "gen")
    (corpus / "generated").mkdir()
    shutil.copy(generated["truncated_warc"], corpus / "generated" / "truncated.warc")
    # 200 kB over a 100 kB limit instead of 10 MB over 2 MB: the same rule, less time.
    (corpus / "generated" / "big.jsonl").write_text(json.dumps({"id": "too-big", "text": SENTENCE * 2_000}) + "\n")
    (corpus / "generated" / "echo.jsonl").write_text(
        json.dumps({"id": "echo", "text": "ECHO_KEY " + ECHO_ARTICLE + " Mail anna@example.org or call +1 415 555 0100."}) + "\n"
    )
    warehouse = tmp_path / "wh"
    lines: list[str] = []
    with ObedientFake(require_key=CANARY) as fake:
        cfg = load_config(
            "openai",
            [
                f"llm.base_url={fake.base_url}",
                "llm.max_retries=1",
                "llm.backoff_base_s=0.01",
                "llm.rows_per_partition=8",
                "quality.on_failure=warn",
                "pii.enabled=true",
                "limits.max_doc_chars=100000",
            ],
        )
        summary = run_pipeline([str(corpus)], warehouse, cfg, spark=spark, log=lines.append)
    this_run = F.col("run_id") == summary.run_id
    qa = Warehouse(spark, warehouse).read("qa").filter(this_run).collect()
    rejections = Warehouse(spark, warehouse).read("rejections").filter(this_run).collect()
    by_doc = {}
    for r in rejections:
        by_doc.setdefault(r["doc_id"], set()).add((r["stage"], r["reason"]))

    # Every document is accounted for, with a specific reason.
    ids = set(INJECTION_DOCS) | {json.loads(line)["id"] for line in (HOSTILE / "documents.jsonl").read_text().splitlines()}
    assert ids <= {r["doc_id"] for r in qa} | set(by_doc)
    assert all(reason and reason != "unknown" for reasons in by_doc.values() for _, reason in reasons)
    assert by_doc["too-big"] == {("ingest", "too_large")}
    assert by_doc["binary-blob"] == {("ingest", "binary_text")}
    assert by_doc["empty"] == {("ingest", "empty_text")}
    assert [d for d, reasons in by_doc.items() if ("ingest", "warc_truncated") in reasons]
    assert by_doc["echo"] == {("llm_filter", "llm_error:bad_request")}
    # Overt injections never reach a model's generation step, or their pair is rejected; subtle
    # ones are generated (the fake obeys) and the check stage rejects the pair.
    for doc_id in INJECTION_DOCS:
        assert doc_id not in {r["doc_id"] for r in qa}, doc_id
        reasons = by_doc[doc_id]
        assert reasons <= {("filter", "prompt_injection"), ("check", "about_instructions")}, (doc_id, reasons)
    assert by_doc["subtle-password"] == {("check", "about_instructions")}
    assert by_doc["subtle-hidden"] == {("check", "about_instructions")}
    for r in qa:
        assert not re.search(r"PWNED|swordfish|hunter2|password|system prompt|API key", r["question"] + " " + r["answer"], re.I)
    # PII was replaced before anything was stored or sent, and counted.
    docs = Warehouse(spark, warehouse).read("documents").filter(this_run)
    assert docs.filter(F.col("text").contains("anna@example.org") | F.col("text").contains("415 555 0100")).count() == 0
    assert not [b for b in fake.requests if "anna@example.org" in json.dumps(b)]
    import mlflow

    metrics = mlflow.MlflowClient(tracking_uri=summary.mlflow.tracking_uri).get_run(summary.mlflow.run_id).data.metrics
    assert metrics["ingest.pii.email"] >= 1 and metrics["ingest.pii.phone"] >= 1
    # The canary key: only in the request header; nowhere in tables, MLflow store, logs, details.
    assert fake.auth_headers and all(h == f"Bearer {CANARY}" for h in fake.auth_headers)
    assert CANARY not in "\n".join(lines)
    assert not [r for r in rejections if CANARY in (r["detail"] or "")]
    for path in warehouse.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
