"""One small warehouse per test process: a whole pipeline run against the fake endpoint, with
MLflow in a SQLite store inside the warehouse. Shared by the MLflow, notebook and UI tests so the
run (≈1 min on 2 cores) happens once."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

from webscale_rl.config import load_config
from webscale_rl.pipeline import RunSummary, run_pipeline

from .fake_openai import FakeOpenAI
from .test_pipeline import ARTICLE, ARTICLE2

_BUILT: dict[str, object] = {}


def small_warehouse(spark) -> tuple[Path, RunSummary]:
    if "summary" in _BUILT:
        return _BUILT["warehouse"], _BUILT["summary"]
    root = Path(tempfile.mkdtemp(prefix="webscale-rl-small-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)  # after every test of the process used it
    docs = root / "docs.jsonl"
    rows = [
        {"id": "danube", "text": ARTICLE},
        {"id": "photo", "text": ARTICLE2},
        {"id": "copy", "text": ARTICLE.upper()},
        {"id": "short", "text": "Too short to keep."},
        {"id": "loire", "text": ARTICLE.replace("Danube", "Loire").replace("2,850", "1,006")},
    ]
    docs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    warehouse = root / "wh"
    # The default store (SQLite + artifacts inside the warehouse), whatever the environment says.
    saved_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with FakeOpenAI() as fake:
            cfg = load_config(
                "conf/openai.yaml",
                [f"llm.base_url={fake.base_url}", "llm.backoff_base_s=0.01"],
            )
            summary = run_pipeline([str(docs)], warehouse, cfg, spark=spark, log=lambda _: None)
    finally:
        if saved_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri
    _BUILT.update(warehouse=warehouse, summary=summary)
    return warehouse, summary
