"""Fixtures of the end-to-end tests (the Spark session comes from tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.small_warehouse import build_small_warehouse


@pytest.fixture(scope="session")
def small_warehouse(spark, tmp_path_factory):
    """(warehouse path, run summary) of one small pipeline run, shared by every test of the session."""
    return build_small_warehouse(spark, tmp_path_factory.mktemp("small-warehouse"))
