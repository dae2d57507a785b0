"""`make ui`'s server (MLflow UI on 127.0.0.1) shows a pipeline run: headless Chromium (Debian's
`chromium`, installed by `make test`) renders the run page with its metrics and the funnel chart
artifact. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.paths import ARTIFACTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(small_warehouse, tmp_path_factory):
    warehouse, summary = small_warehouse
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    # The command of the Makefile's `ui` target, on a free port.
    cmd = [str(mlflow_bin), "ui", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--backend-store-uri", summary.mlflow.tracking_uri]
    log = (tmp_path_factory.mktemp("ui") / "server.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # the server takes up to ~90 s to answer on 2 busy cores
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow ui did not start; see {log.name}")
            time.sleep(2)
        yield base, summary
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its worker, nothing else
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def _render(url: str, screenshot: Path, profile: Path) -> str:
    """The DOM of `url` after its scripts ran, and a screenshot of it."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--window-size=1400,1000",
        "--dump-dom",
        f"--screenshot={screenshot}",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`make test` installs it)")
def test_ui_renders_run_metrics_and_plots(ui, tmp_path):
    base, summary = ui
    ARTIFACTS.mkdir(exist_ok=True)
    run = f"{base}/#/experiments/{summary.mlflow.experiment_id}/runs/{summary.mlflow.run_id}"

    dom = _render(run, ARTIFACTS / "mlflow_run.png", tmp_path / "profile")
    assert summary.run_id in dom  # the run's name
    for metric in ("ingest.rows_in", "decontaminate.rows_out", "validation.success"):
        assert metric in dom, metric

    dom = _render(f"{run}/artifacts/plots/funnel.png", ARTIFACTS / "mlflow_funnel.png", tmp_path / "profile")
    # The UI fetched the PNG and shows it as an image (a blob URL of the downloaded artifact).
    assert '<img alt="plots/funnel.png" src="blob:' in dom
