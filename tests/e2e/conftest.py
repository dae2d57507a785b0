"""Fixtures of the end-to-end tests: the Spark session and the small warehouse come from
tests/conftest.py (tests/spark uses the small warehouse too)."""
