"""Helpers for tests that need tools from outside Python (built once, cached under the user cache)."""
