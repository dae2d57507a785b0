"""URI helpers, --conf parsing and the s3a connector choice: no Spark session needed."""

from __future__ import annotations

import pytest

from webscale_rl.config import Config, ConfigError
from webscale_rl.spark import (
    apply_spark_conf,
    bundled_hadoop_version,
    cached_connector_jars,
    connector_maven_coordinates,
    parse_spark_conf,
)
from webscale_rl.storage import (
    connector_packages,
    is_local,
    join_uri,
    normalize_root,
    uri_scheme,
)


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("/data/wh", "file"),
        ("relative/wh", "file"),
        ("file:/data/wh", "file"),
        ("C:\\data\\wh", "file"),
        ("s3a://bucket/wh", "s3a"),
        ("S3A://bucket/wh", "s3a"),
        ("abfss://c@acct.dfs.core.windows.net/wh", "abfss"),
        ("gs://bucket/wh", "gs"),
        ("dbfs:/tmp/wh", "dbfs"),
        ("/Volumes/cat/schema/vol/wh", "file"),
    ],
)
def test_uri_scheme(uri, scheme):
    assert uri_scheme(uri) == scheme
    assert is_local(uri) == (scheme == "file")


def test_join_uri_keeps_the_scheme_and_single_slashes():
    assert join_uri("s3a://b/wh/", "_staging", "/qa/") == "s3a://b/wh/_staging/qa"
    assert join_uri("/data/wh", "t") == "/data/wh/t"
    assert join_uri("dbfs:/wh", "t") == "dbfs:/wh/t"
    assert join_uri("/", "t") == "/t"


def test_normalize_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_root("wh") == str(tmp_path / "wh")
    assert not (tmp_path / "wh").exists()  # nothing is created
    assert normalize_root("s3a://b/wh/") == "s3a://b/wh"
    assert normalize_root("file:/data/wh/") == "file:/data/wh"
    assert normalize_root("dbfs:/wh") == "dbfs:/wh"


def test_only_s3a_needs_a_connector_matching_the_bundled_hadoop():
    assert bundled_hadoop_version() == "3.4.1"  # pyspark 4.0.5's hadoop-client-api jar
    assert connector_maven_coordinates(["/in", "s3a://b/in", "s3a://b/wh"]) == ["org.apache.hadoop:hadoop-aws:3.4.1"]
    assert connector_maven_coordinates(["/in", "file:/wh"]) == []
    assert connector_packages(["abfss://c@a/wh"], "3.4.1") == []


def test_connector_jars_are_cached_only_when_all_are_there(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBSCALE_RL_CACHE", str(tmp_path))
    coordinate = "org.apache.hadoop:hadoop-aws:3.4.1"
    assert cached_connector_jars([coordinate]) == []
    descriptor = tmp_path / "ivy" / "cache" / "org.apache.hadoop" / "hadoop-aws" / "ivy-3.4.1.xml"
    descriptor.parent.mkdir(parents=True)
    descriptor.write_text(
        "<ivy-module><dependencies>"
        '<dependency org="org.apache.hadoop" name="hadoop-common" rev="3.4.1" conf="provided->compile(*)"/>'
        '<dependency org="software.amazon.awssdk" name="bundle" rev="2.24.6" conf="compile->compile(*),master(*);runtime->runtime(*)"/>'
        '<dependency org="org.wildfly.openssl" name="wildfly-openssl" rev="1.1.3.Final" conf="runtime->compile(*)"/>'
        '<dependency org="junit" name="junit" rev="4.13.2" conf="test->runtime(*)"/>'
        "</dependencies></ivy-module>"
    )
    jars = tmp_path / "ivy" / "jars"
    jars.mkdir()
    names = ["org.apache.hadoop_hadoop-aws-3.4.1.jar", "software.amazon.awssdk_bundle-2.24.6.jar"]
    for name in names:
        (jars / name).write_bytes(b"")
    assert cached_connector_jars([coordinate]) == []  # wildfly-openssl (runtime) still missing
    (jars / "org.wildfly.openssl_wildfly-openssl-1.1.3.Final.jar").write_bytes(b"")
    assert [j.name for j in cached_connector_jars([coordinate])] == [*names, "org.wildfly.openssl_wildfly-openssl-1.1.3.Final.jar"]


def test_parse_spark_conf_like_spark_submit():
    got = parse_spark_conf(["spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000", "spark.a=x=y", "spark.b=", "spark.a=z"])
    assert got == {"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000", "spark.a": "z", "spark.b": ""}


@pytest.mark.parametrize("bad", ["no-equals", "=value", "spark a=1"])
def test_parse_spark_conf_rejects_malformed_items(bad):
    with pytest.raises(ConfigError, match="key=value"):
        parse_spark_conf([bad])


def test_apply_spark_conf_wins_over_the_config_file():
    cfg = Config()
    cfg.spark.conf = {"spark.a": "file", "spark.keep": "1"}
    apply_spark_conf(cfg, ["spark.a=cli"])
    assert cfg.spark.conf == {"spark.a": "cli", "spark.keep": "1"}
