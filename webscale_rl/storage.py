"""Where data lives, read from its URI alone: no filesystem calls here.

A warehouse or input is a local path, a `file:` URI, or an object-store / platform URI
(`s3a://`, `abfss://`, `gs://`, `dbfs:/`). Local paths are the only ones `os`/`pathlib` may touch;
everything else is reached through Spark (and its Hadoop connectors) only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

LOCAL_SCHEME = "file"

# Hadoop connectors that are not in pyspark's own jars, by URI scheme. The version must equal the
# Hadoop client bundled with pyspark (mixing Hadoop releases fails at class-loading time).
# Only s3a is exercised here (tests/spark/test_object_store.py); abfss/gs need connectors not tried.
HADOOP_CONNECTORS = {"s3a": "org.apache.hadoop:hadoop-aws:{hadoop}"}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def uri_scheme(uri: str) -> str:
    """Lower-case scheme of `uri`; "file" for plain local paths (also `C:\\x`-style drive letters)."""
    match = _SCHEME.match(str(uri))
    if not match or len(match.group(1)) == 1:
        return LOCAL_SCHEME
    return match.group(1).lower()


def is_local(uri: str) -> bool:
    """True when `uri` names the driver's own filesystem (a path or a file: URI)."""
    return uri_scheme(uri) == LOCAL_SCHEME


def normalize_root(uri: str) -> str:
    """A warehouse or input root as Spark should see it: a local path made absolute (lexically, on
    the driver, nothing created); any URI kept as given, without a trailing slash."""
    text = str(uri)
    if uri_scheme(text) == LOCAL_SCHEME and not text.lower().startswith("file:"):
        return os.path.abspath(os.path.expanduser(text))
    return text.rstrip("/") or text


def local_path(uri: str) -> str:
    """The filesystem path of a local `uri` (a path or a `file:` URI)."""
    text = str(uri)
    if text.lower().startswith("file://"):
        return text[len("file://") :] or "/"
    if text.lower().startswith("file:"):
        return text[len("file:") :]
    return text


def join_uri(base: str, *parts: str) -> str:
    """`base/part/...` with exactly one slash between pieces, keeping `scheme://` intact."""
    out = str(base).rstrip("/") if str(base).rstrip("/") else "/"
    for part in parts:
        piece = str(part).strip("/")
        if piece:
            out = f"{out.rstrip('/')}/{piece}"
    return out


def connector_packages(uris: Iterable[str], hadoop_version: str) -> list[str]:
    """Maven coordinates of the Hadoop connectors the given URIs need (sorted, no duplicates)."""
    schemes = {uri_scheme(u) for u in uris}
    return sorted(HADOOP_CONNECTORS[s].format(hadoop=hadoop_version) for s in schemes if s in HADOOP_CONNECTORS)
