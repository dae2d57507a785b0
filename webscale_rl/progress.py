"""Progress on long work: stage start/end lines, and done/total with rate for LLM stages, read
from the small count files the executors write (see llm.engine.ProgressFile)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path


def fmt_seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{int(s // 60)}m{int(s % 60):02d}s"


class LLMProgress:
    """Prints `[stage] done/total calls, rate, eta` every few seconds while a stage runs."""

    def __init__(self, stage: str, total: int, directory: str, log: Callable[[str], None], every_s: float = 10.0):
        self.stage, self.total, self.dir, self.log, self.every = stage, total, Path(directory), log, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.monotonic()

    def done(self) -> int:
        total = 0
        for f in self.dir.glob("*.count"):
            try:
                total += int(f.read_text() or 0)
            except (OSError, ValueError):
                pass
        return total

    def _line(self) -> str:
        done = min(self.done(), self.total)
        elapsed = time.monotonic() - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = f", eta {fmt_seconds((self.total - done) / rate)}" if rate > 0 and done < self.total else ""
        return f"  [{self.stage}] {done}/{self.total} LLM calls done, {rate:.2f}/s{eta}"

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(self.every):
            done = self.done()
            if done != last:
                self.log(self._line())
                last = done

    def __enter__(self) -> LLMProgress:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.total > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
