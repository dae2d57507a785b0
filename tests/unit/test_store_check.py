"""store_check's classification of probe failures, on error texts seen from Spark with hadoop-aws 3.4.1
(classic Py4JJavaError text; Spark Connect puts the same JVM class name in parentheses). The probes
themselves run against moto in tests/spark/test_store_errors.py."""

from __future__ import annotations

import pytest

from webscale_rl.cli import EXIT_USAGE, explain
from webscale_rl.config import ConfigError
from webscale_rl.store_check import StoreError, check_store, first_cause, store_problem

PY4J = "An error occurred while calling o69.load.\n: "
TRACE = "\n\tat org.apache.hadoop.fs.s3a.S3AUtils.translateException(S3AUtils.java:1)\n\tat java.base/java.lang.Thread.run(Thread.java:840)"
MISSING = (
    PY4J + "org.apache.hadoop.fs.s3a.UnknownStoreException: `s3a://nope/wh/_p': getFileStatus on s3a://nope/wh/_p: "
    "software.amazon.awssdk.services.s3.model.NoSuchBucketException: The specified bucket does not exist "
    "(Service: S3, Status Code: 404, Request ID: x):NoSuchBucket: The specified bucket does not exist" + TRACE
)
NO_AUTH = (
    PY4J + "java.nio.file.AccessDeniedException: s3a://b/wh/_p: org.apache.hadoop.fs.s3a.auth.NoAuthWithAWSException: "
    "No AWS Credentials provided by TemporaryAWSCredentialsProvider SimpleAWSCredentialsProvider "
    "EnvironmentVariableCredentialsProvider IAMInstanceCredentialsProvider : software.amazon.awssdk.core.exception."
    "SdkClientException: Unable to load credentials from system settings." + TRACE
)
DENIED = (
    PY4J + "java.nio.file.AccessDeniedException: s3a://b/wh/_p: getFileStatus on s3a://b/wh/_p: "
    "software.amazon.awssdk.services.s3.model.S3Exception: null (Service: S3, Status Code: 403, Request ID: x):null" + TRACE
)
REFUSED = (
    "(java.net.ConnectException) getFileStatus on s3a://b/in/_p: software.amazon.awssdk.core.exception.SdkClientException: "
    "Unable to execute HTTP request: Connect to 127.0.0.1:1 [/127.0.0.1] failed: Connection refused"
)
UNKNOWN_HOST = (
    PY4J + "java.net.UnknownHostException: getFileStatus on s3a://b/wh/_p: software.amazon.awssdk.core.exception."
    "SdkClientException: Received an UnknownHostException when attempting to interact with a service.: no-such-host.invalid"
)


class FakeConf:
    def __init__(self, values: dict[str, str]):
        self.values = values

    def get(self, key, default=None):
        return self.values.get(key, default)


class FakeSpark:
    def __init__(self, conf: dict[str, str] | None = None):
        self.conf = FakeConf(conf or {})


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        (MISSING, "bucket 'nope' does not exist"),
        (NO_AUTH, "no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --conf spark.hadoop.fs.s3a.access.key=..."),
        (DENIED, "access denied"),
        (REFUSED, "cannot reach endpoint 127.0.0.1:1 (connection refused)"),
        (UNKNOWN_HOST, "cannot reach endpoint b (unknown host)"),
    ],
)
def test_causes_in_plain_words(text, cause):
    root = "s3a://nope/wh" if text is MISSING else "s3a://b/wh"
    assert store_problem(FakeSpark(), root, Exception(text)).startswith(cause)


def test_the_endpoint_is_the_configured_one_per_bucket_first():
    spark = FakeSpark({"spark.hadoop.fs.s3a.endpoint": "http://minio:9000", "spark.hadoop.fs.s3a.bucket.b.endpoint": "http://127.0.0.1:1"})
    assert store_problem(spark, "s3a://b/in", Exception(REFUSED)) == "cannot reach endpoint http://127.0.0.1:1 (connection refused)"
    spark = FakeSpark({"spark.hadoop.fs.s3a.endpoint": "http://minio:9000"})
    assert store_problem(spark, "s3a://b/in", Exception(REFUSED)) == "cannot reach endpoint http://minio:9000 (connection refused)"


def test_a_frame_of_the_trace_is_no_cause():
    # a class named in a stack frame (not in the message) must not decide the cause
    text = PY4J + "java.io.IOException: something odd\n\tat org.apache.hadoop.fs.s3a.auth.NoAuthWithAWSException.x(X.java:1)"
    assert store_problem(FakeSpark(), "s3a://b/wh", Exception(text)) == "java.io.IOException: something odd"


def test_path_not_found_is_healthy():
    text = "[PATH_NOT_FOUND] Path does not exist: s3a://b/new/wh/_webscale_rl_store_probe. SQLSTATE: 42K03"
    assert store_problem(FakeSpark(), "s3a://b/new/wh", Exception(text)) is None


def test_an_unknown_failure_keeps_its_first_meaningful_line():
    assert first_cause(Exception(PY4J + "java.io.IOException: disk on fire" + TRACE)) == "java.io.IOException: disk on fire"
    assert first_cause(Exception("")) == "Exception"


def test_azure_names_the_container():
    text = 'Operation failed: "The specified filesystem does not exist.", 404, HEAD, FilesystemNotFound'
    root = "abfss://data@acct.dfs.core.windows.net/wh"
    assert store_problem(FakeSpark(), root, Exception(text)) == "container 'data' does not exist"


def test_role_is_checked_before_spark_is_touched():
    with pytest.raises(ValueError, match="role must be one of"):
        check_store(None, "s3a://b/wh", role="table")


def test_a_store_error_is_a_usage_error_of_the_cli():
    exc = StoreError("warehouse s3a://nope/wh: bucket 'nope' does not exist")
    assert isinstance(exc, ConfigError)
    assert explain(exc) == (EXIT_USAGE, "warehouse s3a://nope/wh: bucket 'nope' does not exist")
