"""Fixtures of every folder: one Spark session per test run (a session start costs ~20 s on 2 cores)
and an empty warehouse folder per test, and the small warehouse of one whole run that tests/spark and
tests/e2e share. tests/unit/conftest.py forbids the session; helpers without fixtures live in tests/support/."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


@pytest.fixture(scope="session")
def spark():
    from webscale_rl.config import Config
    from webscale_rl.spark import build_local_session

    cfg = Config()
    cfg.spark.master = "local[2]"
    cfg.spark.shuffle_partitions = 2
    session = build_local_session(cfg)
    yield session
    session.stop()


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "warehouse"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def small_warehouse(spark, tmp_path_factory):
    """(warehouse path, run summary) of one small pipeline run (tests/support/small_warehouse.py),
    built once per session and shared by the e2e tests and the Spark tests that read a whole run."""
    from tests.support.small_warehouse import build_small_warehouse

    return build_small_warehouse(spark, tmp_path_factory.mktemp("small-warehouse"))
