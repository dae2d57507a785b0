"""A driver started by spark-submit gets the launcher's session from SparkSession.builder alone
(no SparkContext call of ours, as on serverless): Delta's catalog and the Arrow batch size are
added at run time when missing; the static Delta SQL extension cannot be, so its absence is one
clear error that names the --conf to pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from webscale_rl.spark import DELTA_CONF, resolve_delta_jars

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).resolve().parent
SCRIPT = ROOT / "tests" / "support" / "submitted_session_check.py"


def submit(tmp_path, confs: dict[str, str]) -> str:
    env = {
        **os.environ,
        "SPARK_HOME": str(SPARK_HOME),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("SPARK_REMOTE", None)
    cmd = [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master",
        "local[1]",
        "--driver-memory",
        "1g",
        "--jars",
        ",".join(str(j) for j in resolve_delta_jars()),
        "--conf",
        "spark.ui.enabled=false",
    ]
    for key, value in confs.items():
        cmd += ["--conf", f"{key}={value}"]
    done = subprocess.run([*cmd, str(SCRIPT), str(tmp_path / "t")], cwd=tmp_path, env=env, check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith(("RESULT ", "ERROR "))]
    return line


@pytest.mark.spark_processes
def test_launcher_session_gets_the_delta_catalog_at_run_time(tmp_path):
    line = submit(tmp_path, {"spark.sql.extensions": DELTA_CONF["spark.sql.extensions"]})
    got = json.loads(line.removeprefix("RESULT "))
    assert got["spark.sql.catalog.spark_catalog"] == DELTA_CONF["spark.sql.catalog.spark_catalog"]
    assert got["spark.sql.execution.arrow.maxBytesPerBatch"] == str(8 << 20)
    assert got["spark.master"] == "local[1]"  # the launcher's, not ours
    assert got["rows"] == 5 and got["operations"] == ["WRITE", "MERGE"]


@pytest.mark.spark_processes
def test_launcher_session_without_the_delta_extension_is_one_clear_error(tmp_path):
    line = submit(tmp_path, {})
    assert line.startswith("ERROR the Spark session has no Delta Lake SQL extension")
    assert "--conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in line
