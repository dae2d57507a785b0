"""Spark Connect options without a server: how --conf values become session settings, which ones
are refused, and how --remote reaches get_spark (through SPARK_REMOTE)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from webscale_rl import cli
from webscale_rl.config import ConfigError
from webscale_rl.connect_server import server_command
from webscale_rl.spark import EnvironmentProblem, check_reachable, connect_address, connect_conf, on_databricks_connect


def test_hadoop_settings_lose_their_prefix_and_sql_settings_pass_as_they_are():
    conf = {"spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000", "spark.sql.shuffle.partitions": "4", "fs.s3a.path.style.access": "true"}
    assert connect_conf(conf) == {"fs.s3a.endpoint": "http://127.0.0.1:9000", "spark.sql.shuffle.partitions": "4", "fs.s3a.path.style.access": "true"}


@pytest.mark.parametrize("key", ["spark.master", "spark.jars.packages", "spark.driver.memory", "spark.executor.cores", "spark.sql.extensions"])
def test_launch_only_settings_are_a_clear_error_naming_them(key):
    with pytest.raises(ConfigError, match=rf"--conf {key}\b.*set them on the server"):
        connect_conf({key: "x", "spark.sql.shuffle.partitions": "4"})


def test_databricks_workspaces_are_recognised_by_host():
    assert on_databricks_connect("sc://adb-123.4.azuredatabricks.net:443/;token=x")
    assert on_databricks_connect("sc://dbc-1.cloud.databricks.com")
    assert not on_databricks_connect("sc://127.0.0.1:15002")


def test_remote_sets_spark_remote_for_run_and_export(monkeypatch):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    for argv in (
        ["run", "--warehouse", "wh", "--remote", "sc://h:1"],
        ["export", "--warehouse", "wh", "--format", "jsonl", "--out", "o", "--remote", "sc://h:2"],
    ):
        cli.use_remote(cli.build_parser().parse_args(argv))
        assert os.environ["SPARK_REMOTE"] == argv[-1]


def test_without_remote_spark_remote_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("SPARK_REMOTE", "sc://from-env:15002")
    cli.use_remote(cli.build_parser().parse_args(["run", "--warehouse", "wh"]))
    assert os.environ["SPARK_REMOTE"] == "sc://from-env:15002"


def test_remote_that_is_not_a_connect_url_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert cli.main(["run", "--warehouse", "wh", "--remote", "localhost:15002"]) == cli.EXIT_USAGE
    assert "--remote expects a Spark Connect URL" in capsys.readouterr().err


def test_connect_server_command_line(monkeypatch):
    args = cli.build_parser().parse_args(["connect-server", "--s3a", "--conf", "spark.sql.shuffle.partitions=4"])
    assert (args.port, args.s3a, args.master, args.spark_conf) == (15002, True, "local[*]", ["spark.sql.shuffle.partitions=4"])
    cmd = server_command(15002, [], {"spark.sql.shuffle.partitions": "4"}, "local[*]", "4g")
    assert cmd[cmd.index("--master") + 1] == "local[*]" and "spark.connect.grpc.binding.address=127.0.0.1" in cmd
    assert "spark.sql.shuffle.partitions=4" in cmd and "spark.sql.shuffle.partitions=2" not in cmd  # the user's setting wins


def test_connect_urls_are_parsed_with_spark_connects_default_port():
    assert connect_address("sc://127.0.0.1:15099") == ("127.0.0.1", 15099)
    assert connect_address("sc://dbc-1.cloud.databricks.com:443/;token=abc;x-databricks-cluster-id=1") == ("dbc-1.cloud.databricks.com", 443)
    assert connect_address("sc://localhost") == ("localhost", 15002)
    with pytest.raises(ConfigError, match="sc://host:15002"):
        connect_address("http://localhost:15002")


def test_a_server_that_is_not_there_is_a_clear_error_in_seconds():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(EnvironmentProblem, match=rf"no Spark Connect server answers at 127.0.0.1:{port}"):
        check_reachable(f"sc://127.0.0.1:{port}", timeout_s=5)
    assert time.monotonic() - t0 < 6
