"""Progress on long work: stage start/end lines, and for LLM stages done/total with rate.

Live counts come from small files the executors write (`llm.engine.ProgressFile`) into a folder on
the driver's own disk, so they exist only where executors share that disk: a `local[...]` master
in this process. Elsewhere (a cluster, Spark Connect) live counts are off, said once, and the
stage reports each slice as it commits (`llm.slice_rows`): a channel every deployment has."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def fmt_seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{int(s // 60)}m{int(s % 60):02d}s"


@contextlib.contextmanager
def live_progress_dir(spark, log: Callable[[str], None]) -> Iterator[str | None]:
    """A driver-local scratch folder for executors' call counts when they run in this process's
    machine (a local master, classic session); else None, saying so once."""
    from .spark import is_connect_session

    master = "" if is_connect_session(spark) else (spark.conf.get("spark.master", "") or "")
    if not master.startswith("local"):
        where = "Spark Connect" if is_connect_session(spark) else f"master {master}"
        log(f"progress: live LLM call counts are off on {where} (executors may not share this machine's disk); LLM stages report each committed slice instead")
        yield None
        return
    folder = tempfile.mkdtemp(prefix="webscale-rl-progress-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LLMProgress:
    """Prints `[stage] done/total calls, rate, eta` every few seconds while a stage runs (when live
    counts exist), and a line per committed slice."""

    def __init__(self, stage: str, total: int, directory: str | None, log: Callable[[str], None], every_s: float = 10.0):
        self.stage, self.total, self.log, self.every = stage, total, log, every_s
        self.dir = Path(directory) / stage if directory else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def done(self) -> int:
        total = 0
        for f in self.dir.glob("*.count") if self.dir else ():
            try:
                total += int(f.read_text() or 0)
            except (OSError, ValueError):
                pass
        return total

    def _line(self, done: int) -> str:
        done = min(done, self.total)
        elapsed = time.monotonic() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", eta {fmt_seconds((self.total - done) / rate)}" if rate > 0 and done < self.total else ""
        return f"  [{self.stage}] {done}/{self.total} LLM calls done, {rate:.2f}/s{eta}"

    def slice_done(self, items_done: int, n_done: int, n_slices: int) -> None:
        """A slice committed: `items_done` items in all are answered and staged."""
        self.log(self._line(max(items_done, self.done())) + f" (slice {n_done}/{n_slices} staged)")

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(self.every):
            done = self.done()
            if done != last:
                self.log(self._line(done))
                last = done

    @property
    def folder(self) -> str | None:
        """Where this stage's executors count (None: no live counts)."""
        return str(self.dir) if self.dir else None

    def __enter__(self) -> LLMProgress:
        if self.dir and self.total > 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
