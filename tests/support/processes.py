"""Process checks for tests that start servers."""

from __future__ import annotations

import os


def process_gone(pid: int) -> bool:
    """True once no process has this id (signal 0 only checks that it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
