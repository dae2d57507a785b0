"""`webscale-rl run` with a warehouse in a bucket that does not exist: exit code 2, one `error:` line
naming the URI, nothing written (no bucket made, no local folder named like the URI).
Runs the CLI in a process of its own (its session needs hadoop-aws) against the moto S3 server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.s3_server import s3_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.spark_processes


def test_a_missing_bucket_is_one_line_and_exit_2(s3_server, tmp_path: Path):  # noqa: F811
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="cli-in/docs.jsonl", Body=b'{"id": "1", "text": "a document"}\n')
    before = s3_server.keys()
    warehouse = "s3a://no-such-bucket/wh"
    cmd = [sys.executable, "-m", "webscale_rl.cli", "run", "--input", s3_server.uri("cli-in") + "/", "--warehouse", warehouse, "--until", "ingest"]
    for arg in s3_server.conf_args:
        cmd += ["--conf", arg]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    print(done.stderr[-3000:])
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 2
    assert errors == [f"error: warehouse {warehouse}: bucket 'no-such-bucket' does not exist"]
    assert "Traceback" not in done.stderr
    assert s3_server.keys() == before
    assert [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]] == [s3_server.bucket]
    assert not (tmp_path / "s3a:").exists()  # no local folder named like the URI
