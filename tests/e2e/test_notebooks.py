"""The notebooks execute top to bottom with nbclient against a small warehouse (any cell error
fails the test). The kernel is this venv's Python; it builds its own local Spark session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.paths import ARTIFACTS, REPO

NOTEBOOKS = REPO / "notebooks"


@pytest.mark.parametrize("name", ["explore_qa.ipynb", "quality_report.ipynb"])
def test_notebook_runs(name, small_warehouse, monkeypatch, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    warehouse, summary = small_warehouse
    # The kernel inherits the environment: this venv first on PATH, this checkout importable.
    monkeypatch.setenv("WEBSCALE_RL_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("WEBSCALE_RL_DRIVER_MEMORY", "1g")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = "\n".join(
        o.get("text", "") or str(o.get("data", {}).get("text/plain", "")) + str(o.get("data", {}).get("text/html", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert f"run: {summary.run_id}" in outputs
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "no chart rendered"
    if name == "explore_qa.ipynb":
        assert "<mark>" in outputs and "added" in outputs
    else:
        assert "gated batch(es); 0 failed expectation(s)" in outputs
        assert "success: True" in outputs and "quarantine is empty" in outputs
        assert "ok      unique(qa_id)" in outputs
        ARTIFACTS.mkdir(exist_ok=True)
        nbformat.write(nb, ARTIFACTS / f"executed_{name}")
