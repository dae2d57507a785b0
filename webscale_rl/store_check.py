"""Probe a warehouse or input store before a run uses it, and say in one line why it cannot be used.

`check_store(spark, uri, role=...)` asks Spark whether a child path of `uri` that never exists is
there. That costs one or two metadata requests (S3: HEAD + LIST of one key), writes nothing, and uses
only the DataFrame API, so it works on classic Spark and on Spark Connect alike. "Path does not exist"
is the healthy answer: the store was reached, the bucket exists and the credentials were accepted
(a warehouse that does not exist yet is fine). Any other failure becomes a `StoreError`, a
`ConfigError`, so the CLI exits with 2 and prints the one line.

The failures are told apart by stable markers in the error text (Hadoop/JDK exception class names and
S3 error codes), which classic Spark (Py4JJavaError) and Spark Connect (SparkConnectGrpcException)
both carry. Only s3a:// is verified (tests/spark/test_store_errors.py, against moto); the abfss
markers come from that connector's error codes and are untested; other stores get the generic line.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from .config import ConfigError
from .storage import join_uri, normalize_root, uri_scheme

ROLES = ("warehouse", "input")

# A name that is never there; it starts with "_" so Spark's file sources would skip it anyway.
PROBE_NAME = "_webscale_rl_store_probe"

# Reader options reach the Hadoop configuration the probe's file system is built with. S3A and the
# AWS SDK retry a refused connection for about 5 minutes by default (measured: 306 s); the probe tries
# once. `impl.disable.cache` gives the probe a file system instance of its own, so the run's cached
# one is still built with the run's own (retrying) settings.
PROBE_OPTIONS = {
    "s3a": {
        "fs.s3a.attempts.maximum": "0",
        "fs.s3a.retry.limit": "0",
        "fs.s3a.connection.establish.timeout": "5s",
        "fs.s3a.impl.disable.cache": "true",
    },
}

NO_CREDENTIALS_HINT = {
    "s3a": "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --conf spark.hadoop.fs.s3a.access.key=... "
    "and spark.hadoop.fs.s3a.secret.key=..., or use an instance role",
}

# (markers in the error text, cause) in order: the first match wins. Missing credentials arrive
# wrapped in an AccessDeniedException, so they are looked for before access denied.
MISSING_STORE = ("UnknownStoreException", "NoSuchBucket", "FilesystemNotFound", "ContainerNotFound")
NO_CREDENTIALS = ("NoAuthWithAWSException", "Unable to load AWS credentials", "No AWS Credentials")
ACCESS_DENIED = ("java.nio.file.AccessDeniedException", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Status Code: 403")
UNREACHABLE = {
    "UnknownHostException": "unknown host",
    "NoRouteToHostException": "no route to host",
    "Connection refused": "connection refused",
    "ConnectTimeoutException": "connection timed out",
    "connect timed out": "connection timed out",
    "SocketTimeoutException": "timed out",
}
PATH_NOT_FOUND = ("PATH_NOT_FOUND", "Path does not exist")

# Lines of a JVM error that say nothing about the cause.
_NOISE = re.compile(r"^(An error occurred while calling \S+|Traceback|\s*at |JVM stacktrace:|\s*$)")
_FRAME = re.compile(r"^\s+at ")
_GLOB = re.compile(r"([\[\]{}*?\\])")  # as readers.paths.escape_glob: the path is literal
_HOST_PORT = re.compile(r"Connect to (\S+?:\d+)")


class StoreError(ConfigError):
    """A warehouse or input store cannot be used; the message is one line naming the URI and why."""


def check_store(spark: SparkSession, uri: str, *, role: str) -> None:
    """Raise StoreError if the store holding `uri` cannot be reached, does not exist or refuses us.
    A `uri` that does not exist yet is fine; nothing is written."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    root = normalize_root(uri)
    scheme = uri_scheme(root)
    reader = spark.read.format("text")
    for key, value in PROBE_OPTIONS.get(scheme, {}).items():
        reader = reader.option(key, value)
    try:
        # .schema makes Spark Connect analyse the plan; classic Spark resolves the path in load().
        reader.load(_GLOB.sub(r"\\\1", join_uri(root, PROBE_NAME))).schema  # noqa: B018
    except Exception as exc:  # noqa: BLE001  (classified below; unknown ones keep their first line)
        cause = store_problem(spark, root, exc)
        if cause is not None:
            raise StoreError(f"{role} {uri}: {cause}") from None


def store_problem(spark: SparkSession, root: str, exc: BaseException) -> str | None:
    """The cause of a failed probe in plain words, or None when it only says the path is absent."""
    # The head of the error only: a JVM trace's frames name classes that are not the cause.
    text = "\n".join(ln for ln in f"{type(exc).__name__}: {exc}".splitlines() if not _FRAME.match(ln))
    scheme = uri_scheme(root)
    if any(marker in text for marker in MISSING_STORE):
        return f"{store_noun(scheme)} '{store_name(root)}' does not exist"
    if any(marker in text for marker in NO_CREDENTIALS):
        hint = NO_CREDENTIALS_HINT.get(scheme)
        return f"no credentials ({hint})" if hint else "no credentials"
    if any(marker in text for marker in ACCESS_DENIED):
        return "access denied"
    for marker, why in UNREACHABLE.items():
        if marker in text:
            return f"cannot reach endpoint {endpoint_of(spark, root, text)} ({why})"
    if any(marker in text for marker in PATH_NOT_FOUND):
        return None
    return first_cause(exc)


def store_noun(scheme: str) -> str:
    return "container" if scheme in ("abfs", "abfss", "wasb", "wasbs") else "bucket"


def store_name(root: str) -> str:
    """The bucket (s3a, gs) or container (abfss: the part before '@') of a URI."""
    return urlsplit(root).netloc.split("@")[0]


def endpoint_of(spark: SparkSession, root: str, text: str) -> str:
    """The endpoint the store was reached at: the per-bucket or global S3A endpoint setting when
    there is one, else the host:port in the error, else the store name."""
    if uri_scheme(root) == "s3a":
        bucket = store_name(root)
        for key in (f"spark.hadoop.fs.s3a.bucket.{bucket}.endpoint", "spark.hadoop.fs.s3a.endpoint"):
            value = conf_value(spark, key)
            if value:
                return value
    match = _HOST_PORT.search(text)
    return match.group(1) if match else urlsplit(root).netloc or root


def conf_value(spark: SparkSession, key: str) -> str | None:
    try:
        return spark.conf.get(key, None)
    except Exception:  # noqa: BLE001  (a Connect server may refuse to show some settings)
        return None


def first_cause(exc: BaseException) -> str:
    """The first line of `exc` that says something, without py4j's preamble or the JVM trace."""
    for line in str(exc).splitlines():
        if not _NOISE.match(line):
            return line.lstrip(": ").strip()[:500]
    return type(exc).__name__
