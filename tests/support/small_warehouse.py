"""A small warehouse: a whole pipeline run against the fake endpoint, with MLflow in a SQLite store
inside the warehouse. The e2e conftest builds it once per session (≈1 min on 2 cores) for the
MLflow, notebook, report and UI tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

from webscale_rl.config import load_config
from webscale_rl.pipeline import RunSummary, run_pipeline

from .docs import ARTICLE, ARTICLE2
from .fake_server import FakeOpenAI

SMALL_DOCS = [
    {"id": "danube", "text": ARTICLE},
    {"id": "photo", "text": ARTICLE2},
    {"id": "copy", "text": ARTICLE.upper()},
    {"id": "short", "text": "Too short to keep."},
    {"id": "loire", "text": ARTICLE.replace("Danube", "Loire").replace("2,850", "1,006")},
]


def build_small_warehouse(spark, root: Path) -> tuple[Path, RunSummary]:
    """Run the pipeline on SMALL_DOCS into root/wh; returns (warehouse, run summary)."""
    docs = root / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(r) for r in SMALL_DOCS) + "\n")
    warehouse = root / "wh"
    # The default store (SQLite + artifacts inside the warehouse), whatever the environment says.
    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with FakeOpenAI() as fake:
            cfg = load_config(
                "openai",
                [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01"],
            )
            summary = run_pipeline([str(docs)], warehouse, cfg, spark=spark, log=lambda _: None)
    finally:
        if saved_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri
    return warehouse, summary
