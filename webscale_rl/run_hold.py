"""One run per warehouse: a run holds its warehouse from start to end, and a second run is refused.

The hold is a row in the Delta table `<warehouse>/_runs`, taken with a SQL `MERGE … WHEN NOT MATCHED
THEN INSERT`: two runs that race for a free warehouse both read the table empty, and Delta's
optimistic concurrency lets only one commit add the row (the other fails with a concurrent-append
conflict and then sees the holder). It is a Delta commit, not a local lock file, so it works wherever
the warehouse is — with one caveat of Delta itself: on S3, commits from two drivers are mutually
exclusive only with the DynamoDB log store.

A run killed without a chance to let go leaves its row. The next run on the same host takes over
when the holder's process is gone; any other stale hold is cleared with `webscale-rl unlock`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from .config import ConfigError
from .warehouse import Warehouse, sql_string

RUNS = "_runs"
_KEY = "warehouse"  # one row at most: the holder of the whole warehouse
_SCHEMA = "lock_key STRING, run_id STRING, host STRING, pid BIGINT, user STRING, started STRING"


class WarehouseHeld(ConfigError):
    """Another run holds the warehouse (a usage error: exit code 2)."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    host: str
    pid: int
    user: str
    started: str

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, user {self.user}, since {self.started})"

    def is_dead_here(self) -> bool:
        """True when the holder ran on this host and its process is gone (a killed run)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


def me(run_id: str) -> Holder:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return Holder(run_id, socket.gethostname(), os.getpid(), getpass.getuser(), now)


def holder(wh: Warehouse) -> Holder | None:
    location = wh.path(RUNS)
    if not wh.exists_at(location):
        return None
    rows = wh.spark.sql(f"SELECT * FROM delta.`{location}` WHERE lock_key = '{_KEY}'").collect()
    return Holder(rows[0]["run_id"], rows[0]["host"], int(rows[0]["pid"]), rows[0]["user"], rows[0]["started"]) if rows else None


def _claim(wh: Warehouse, me_: Holder, stale: Holder | None) -> None:
    """Insert our row if there is none, or replace `stale`'s: one MERGE, so racing claims conflict."""
    location = wh.path(RUNS)
    wh.spark.sql(f"CREATE TABLE IF NOT EXISTS delta.`{location}` ({_SCHEMA}) USING delta")
    values = (
        f"SELECT '{_KEY}' AS lock_key, '{sql_string(me_.run_id)}' AS run_id, '{sql_string(me_.host)}' AS host, "
        f"{int(me_.pid)} AS pid, '{sql_string(me_.user)}' AS user, '{sql_string(me_.started)}' AS started"
    )
    takeover = f"WHEN MATCHED AND t.run_id = '{stale.run_id}' THEN UPDATE SET *" if stale else ""
    wh.spark.sql(f"MERGE INTO delta.`{location}` AS t USING ({values}) AS s ON t.lock_key = s.lock_key {takeover} WHEN NOT MATCHED THEN INSERT *")


@contextlib.contextmanager
def holding(wh: Warehouse, run_id: str, log=print) -> Iterator[Holder]:
    """Hold `wh` for run `run_id` until the block ends; WarehouseHeld if another run holds it."""
    mine = me(run_id)
    current = holder(wh)
    stale = current if current is not None and current.is_dead_here() else None
    if current is None or stale is not None:
        with contextlib.suppress(Exception):  # a racing claim: whoever committed first is read below
            _claim(wh, mine, stale)
        if stale is not None:
            log(f"warehouse: took over the hold of {stale.describe()}, whose process is gone")
    current = holder(wh)
    if current is None or current.run_id != run_id:
        raise WarehouseHeld(
            f"warehouse {wh.root} is held by {current.describe() if current else 'another run'}; one run per warehouse at a time. "
            f"If that run is no longer going, clear the hold with: webscale-rl unlock --warehouse {wh.root}"
        )
    try:
        yield mine
    finally:
        release(wh, run_id)


def release(wh: Warehouse, run_id: str | None = None) -> Holder | None:
    """Remove the hold of `run_id` (any hold when None). → the hold removed, if there was one."""
    current = holder(wh)
    if current is None or (run_id is not None and current.run_id != run_id):
        return None
    wh.spark.sql(f"DELETE FROM delta.`{wh.path(RUNS)}` WHERE lock_key = '{_KEY}' AND run_id = '{sql_string(current.run_id)}'")
    return current
