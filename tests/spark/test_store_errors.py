"""check_store against a local S3 server (moto): a missing bucket, no credentials, access denied and
an unreachable endpoint each give one exact line naming the URI, fast, and nothing is written; a new
prefix in an existing bucket is fine. The sessions run in processes of their own
(tests/support/store_error_checks.py): they need hadoop-aws, a different environment, or Connect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.s3_server import free_port, s3_server  # noqa: F401  (fixture)
from webscale_rl.store_check import check_store

ROOT = Path(__file__).resolve().parents[2]

DENIED = "denied-bucket"
UNREACHABLE = "unreachable-bucket"
NO_CREDENTIALS = (
    "no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --conf spark.hadoop.fs.s3a.access.key=... "
    "and spark.hadoop.fs.s3a.secret.key=..., or use an instance role)"
)


def probe_conf(s3) -> list[str]:
    """The server's settings without the fixture's low retry limits: the probe must be fast by itself."""
    return [arg for arg in s3.conf_args if ".attempts." not in arg and ".retry." not in arg]


def run_checks(cases: dict[str, str], conf: list[str], *extra: str, env: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "tests.support.store_error_checks", *extra]
    for name, spec in cases.items():
        cmd += ["--case", f"{name}={spec}"]
    for arg in conf:
        cmd += ["--conf", arg]
    done = subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=1200)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-4000:]
    got = json.loads(lines[-1].removeprefix("RESULT "))
    print(json.dumps(got, indent=1))
    return got


def message(got: dict, name: str) -> str | None:
    error = got[name]["error"]
    if error is None:
        return None
    assert error["type"] == "StoreError", error
    assert "\n" not in error["message"], error
    return error["message"]


def store_cases(s3) -> tuple[dict[str, str], list[str], str]:
    closed = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens there
    cases = {
        "new_prefix": f"warehouse:{s3.uri('new', 'wh')}",
        "input": f"input:{s3.uri('in')}",
        "missing_bucket": "warehouse:s3a://no-such-bucket/wh",
        "denied": f"warehouse:s3a://{DENIED}/wh",
        "unreachable": f"input:s3a://{UNREACHABLE}/in",
    }
    return cases, [*probe_conf(s3), f"spark.hadoop.fs.s3a.bucket.{UNREACHABLE}.endpoint={closed}"], closed


def assert_store_messages(s3, got: dict, closed: str, before: list[str]) -> None:
    assert message(got, "new_prefix") is None
    assert message(got, "input") is None
    assert message(got, "missing_bucket") == "warehouse s3a://no-such-bucket/wh: bucket 'no-such-bucket' does not exist"
    assert message(got, "denied") == f"warehouse s3a://{DENIED}/wh: access denied"
    assert message(got, "unreachable") == f"input s3a://{UNREACHABLE}/in: cannot reach endpoint {closed} (connection refused)"
    # S3A's default retries take ~5 minutes against a refused connection (measured: 306 s)
    assert got["unreachable"]["seconds"] < 30, got["unreachable"]
    # nothing written: the bucket's keys are as before, no bucket was created, the denied one is empty
    assert s3.keys() == before
    assert sorted(b["Name"] for b in s3.client().list_buckets()["Buckets"]) == [s3.bucket]
    assert got["denied_keys"] == []


@pytest.fixture
def s3_with_input(s3_server):  # noqa: F811
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="in/part-0.jsonl", Body=b'{"text": "a"}\n')
    return s3_server


@pytest.mark.spark_processes
def test_store_errors_classic(s3_with_input):
    cases, conf, closed = store_cases(s3_with_input)
    before = s3_with_input.keys()
    got = run_checks(cases, conf, "--denied-bucket", DENIED)
    assert_store_messages(s3_with_input, got, closed, before)


@pytest.mark.spark_processes
def test_store_errors_over_spark_connect(s3_with_input):
    cases, conf, closed = store_cases(s3_with_input)
    before = s3_with_input.keys()
    got = run_checks(cases, conf, "--denied-bucket", DENIED, "--connect")
    assert_store_messages(s3_with_input, got, closed, before)


@pytest.mark.spark_processes
def test_no_credentials(s3_with_input):
    # No AWS keys in the env, and the SDK's instance-metadata lookup off: on a cloud machine with an
    # instance role the chain would otherwise find credentials.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    uri, before = s3_with_input.uri("wh"), s3_with_input.keys()
    got = run_checks({"no_credentials": f"warehouse:{uri}"}, probe_conf(s3_with_input), env=env)
    assert got["aws_env"] == []
    assert message(got, "no_credentials") == f"warehouse {uri}: {NO_CREDENTIALS}"
    assert s3_with_input.keys() == before


def test_a_new_local_warehouse_is_fine_and_not_made(spark, tmp_path):
    # the shared classic session; an unclosed "[" is an illegal glob unless taken literally
    root = tmp_path / "new [1" / "wh*"
    check_store(spark, str(root), role="warehouse")
    check_store(spark, f"file:{root}", role="input")
    assert list(tmp_path.iterdir()) == []
