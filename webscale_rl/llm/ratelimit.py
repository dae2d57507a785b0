"""Client-side flow control for one Spark task: a cap on requests in flight that halves on a 429
and grows back by one slot per round of successes (AIMD, as TCP), a shared pause when the server
says when to come back (retry-after, retry-after-ms, x-ratelimit-reset-*), and optional
requests-per-minute / tokens-per-minute token buckets. The job-wide limits are divided across the
tasks that run at once before they get here."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping


class TokenBucket:
    """`rate` units per second, bursts of at most `capacity` (one second's worth by default)."""

    def __init__(self, rate_per_s: float, capacity: float | None = None):
        self.rate = rate_per_s
        self.capacity = max(1.0, capacity if capacity is not None else rate_per_s)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    async def take(self, n: float) -> None:
        n = min(n, self.capacity)  # a request larger than the burst waits for a full bucket
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= n:
                self.tokens -= n
                return
            await asyncio.sleep((n - self.tokens) / self.rate)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration_s(value: str | None) -> float | None:
    """'20ms', '1s', '6m0s', '1h2m3.5s' or a plain number of seconds → seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def server_wait_s(headers: Mapping[str, str] | None) -> float | None:
    """How long the server asks us to wait: retry-after-ms, retry-after (seconds), else the reset
    time of whichever x-ratelimit budget is exhausted (or the longer of the two)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if ra:
        try:
            return max(0.0, float(ra))
        except ValueError:
            pass  # an HTTP date: fall through to the other hints
    resets = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        reset = parse_duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
        if reset is not None and (remaining is None or remaining.strip() in ("0", "0.0")):
            resets.append(reset)
    return max(resets) if resets else None


def exhausted_wait_s(headers: Mapping[str, str] | None) -> float | None:
    """On a successful reply: if a budget is at zero, wait for its reset before the next request."""
    if not headers:
        return None
    waits = []
    for kind in ("requests", "tokens"):
        remaining = headers.get(f"x-ratelimit-remaining-{kind}")
        if remaining is not None and remaining.strip() in ("0", "0.0"):
            reset = parse_duration_s(headers.get(f"x-ratelimit-reset-{kind}"))
            if reset:
                waits.append(reset)
    return max(waits) if waits else None


class AdaptiveLimiter:
    def __init__(self, max_in_flight: int, rpm: float | None = None, tpm: float | None = None):
        self.max_in_flight = max(1, max_in_flight)
        self.limit = float(self.max_in_flight)
        self.in_flight = 0
        self.pause_until = 0.0
        self._last_cut = 0.0
        self._cond: asyncio.Condition | None = None  # created inside the running loop
        self.requests = TokenBucket(rpm / 60.0) if rpm else None
        self.tokens = TokenBucket(tpm / 60.0) if tpm else None
        self.rate_limited = 0
        self.peak_in_flight = 0
        self._pending: set[asyncio.Task] = set()

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self, est_tokens: int = 0) -> None:
        cond = self._condition()
        async with cond:
            while self.in_flight >= max(1, int(self.limit)):
                await cond.wait()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            while (wait := self.pause_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if self.requests:
                await self.requests.take(1)
            if self.tokens and est_tokens:
                await self.tokens.take(est_tokens)
        except BaseException:
            await self.release()
            raise

    async def release(self) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            free = max(1, int(self.limit)) - self.in_flight
            if free > 0:
                cond.notify(free)  # not notify_all: thousands of waiters would all wake per release

    def release_later(self, delay_s: float) -> None:
        """Give the slot back only after `delay_s`: a request we stopped waiting for may still
        occupy the server, and the cap is on what the server sees in flight."""

        async def later() -> None:
            await asyncio.sleep(delay_s)
            await self.release()

        self._pending.add(task := asyncio.get_running_loop().create_task(later()))
        task.add_done_callback(self._pending.discard)

    def on_success(self, headers: Mapping[str, str] | None = None) -> None:
        if self.limit < self.max_in_flight:
            self.limit = min(self.max_in_flight, self.limit + 1.0 / self.limit)
        wait = exhausted_wait_s(headers)
        if wait:
            self.pause_until = max(self.pause_until, time.monotonic() + wait)

    def on_rate_limit(self, wait_s: float) -> None:
        """Halve the cap (once per burst of 429s, not once per rejected request) and pause all."""
        self.rate_limited += 1
        now = time.monotonic()
        if now - self._last_cut > max(0.5, wait_s):
            self.limit = max(1.0, self.limit / 2)
            self._last_cut = now
        self.pause_until = max(self.pause_until, now + wait_s)
