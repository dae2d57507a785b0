"""Spark Connect checks run in a process of their own: pyspark allows no Connect client session in a
process that already runs a classic session (`SESSION_ALREADY_EXIST`), and the suite's shared
`spark` fixture is one. The checks themselves are in connect_checks.py beside this file."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = pytest.mark.spark_processes


def test_the_warehouse_operations_and_udfs_over_spark_connect():
    checks = REPO / "tests" / "e2e" / "connect_checks.py"
    cmd = [sys.executable, "-m", "pytest", str(checks), "-q", "-p", "no:cacheprovider", "-rA"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"^5 passed", done.stdout, re.M), done.stdout[-2000:]  # every check ran
