"""The warehouse's Delta operations on s3a:// against a local S3 server (moto), with the session
built by webscale_rl.spark (hadoop-aws + AWS SDK from the jar cache, settings from --conf strings).
The session runs in its own process: its jars differ from the shared test session's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.s3_server import s3_server  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]


def run_checks(s3, table: str, inputs: str) -> dict:
    cmd = [sys.executable, "-m", "tests.support.object_store_checks", "--input", inputs, "--table", table]
    for arg in s3.conf_args:
        cmd += ["--conf", arg]
    done = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.mark.spark_processes
def test_delta_operations_on_s3a(s3_server):  # noqa: F811
    docs = "".join(json.dumps({"id": i, "text": f"doc {i}"}) + "\n" for i in range(5))
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="in/part-0.jsonl", Body=docs.encode())
    got = run_checks(s3_server, s3_server.uri("wh", "t"), s3_server.uri("in") + "/")
    print(json.dumps(got, indent=1))

    assert got["input_rows"] == 5
    # version 0: the append; the replayed append committed nothing; version 1: the MERGE
    assert got["history"] == [[0, "WRITE"], [1, "MERGE"]]
    assert got["current"] == [["a", 1], ["b", 20], ["c", 3]]
    assert got["version_0"] == [["a", 1], ["b", 2]]
    assert got["detail_format"] == "delta"
    assert got["missing_table_error"] and got["missing_path_error"]
    # Listing through Spark sees the data files; like every Spark file source it skips names
    # starting with "_" or "." below the given root (so _delta_log is not listed).
    assert got["listed_files"] and all(p.startswith("s3a://") and p.endswith(".parquet") for p in got["listed_files"])
    # the objects really are in the bucket, not in a local folder named s3a:
    keys = s3_server.keys("wh/t/")
    assert "wh/t/_delta_log/00000000000000000000.json" in keys and any(k.endswith(".parquet") for k in keys)
    assert not (ROOT / "s3a:").exists()
    print(f"session start {got['session_start_s']} s, all checks {got['total_s']} s")
