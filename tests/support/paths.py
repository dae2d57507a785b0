"""Paths of the checkout, whatever folder the test module sits in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# Screenshots and executed notebooks that a person may want to look at after a run.
ARTIFACTS = REPO / "test-artifacts"
