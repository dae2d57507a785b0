"""Unit tests run without Spark: a test here that asks for a session fails and says where it belongs."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def spark():
    pytest.fail("tests/unit runs without Spark: a test that needs a SparkSession belongs in tests/spark or tests/e2e")
