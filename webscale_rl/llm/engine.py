"""The LLM engine shared by every LLM stage: async calls with a bounded number in flight, a
timeout, retries with exponential backoff and jitter, structured output validated against a JSON
schema, and a classification of every failure. It never raises for one bad item: each call ends
as a CallResult with either data or a reason such as `llm_error:timeout`. Only errors that would
fail every call the same way (bad key, unknown model) raise FatalLLMError, so a run stops at once
with a clear message instead of rejecting a million documents.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import jsonschema
import openai

from .ratelimit import AdaptiveLimiter, server_wait_s


class FatalLLMError(RuntimeError):
    """An error that every request would hit (authentication, unknown model, bad endpoint)."""


@dataclass
class EndpointSpec:
    """Everything a worker needs to call the model; picklable so Spark can ship it to executors.
    Limits here are per Spark task: the job-wide ones divided across the tasks that run at once."""

    base_url: str | None
    model: str
    api_key: str | None = field(default=None, repr=False)
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    response_format: str = "json_schema"
    concurrency: int = 4
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    # "openai" (any OpenAI-compatible base URL) or "azure" (deployment URLs, api-version).
    flavour: str = "openai"
    azure_endpoint: str | None = None
    api_version: str | None = None

    def __repr__(self) -> str:  # never show the key, even by accident in a traceback
        return f"EndpointSpec(base_url={self.base_url!r}, model={self.model!r}, concurrency={self.concurrency})"


@dataclass
class CallResult:
    data: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of prompt_tokens, those the endpoint read from its prompt cache (see cached_prompt_tokens).
    cached_prompt_tokens: int = 0
    rate_limited: int = 0  # 429s this item met
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.data is not None


# Failures worth another attempt; the others end the item at once.
RETRYABLE = {"rate_limit", "server_error", "timeout", "connection", "malformed_reply", "schema_violation", "truncated"}
# Failures of the endpoint, not of the item: an item rejected with one of these is tried again by
# the next run (its old rejection is replaced), so a provider outage loses nothing for good.
TRANSIENT = ("rate_limit", "server_error", "timeout", "connection", "batch_expired", "batch_failed", "batch_cancelled", "batch_missing")
TRANSIENT_REASON_SQL = "reason RLIKE '^llm_error:(" + "|".join(TRANSIENT) + ")$'"


def scrub(text: str, secret: str | None, limit: int = 300) -> str:
    """Shorten an error text and remove the key from it, should a server ever echo it back."""
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"sk-[A-Za-z0-9_\-]{8,}", "sk-***", text)
    return text[:limit]


def response_format(spec: EndpointSpec, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if spec.response_format == "json_object":
        # OpenAI's json_object takes no schema (it refuses unknown keys); the schema is in the prompt
        # and every reply is validated against it anyway.
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


_VALIDATORS: dict[int, tuple[dict, Any]] = {}


def _validator(schema: dict[str, Any]):
    """A compiled validator per schema object (building one per reply costs more than the call's
    HTTP work at high request rates)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = (schema, jsonschema.validators.validator_for(schema)(schema))
        _VALIDATORS[id(schema)] = hit
    return hit[1]


def parse_reply(content: str | None, schema: dict[str, Any]) -> tuple[dict | None, str | None, str | None]:
    """→ (data, reason, detail). Accepts a JSON object, optionally inside a ```json fence."""
    if content is None or not content.strip():
        return None, "malformed_reply", "empty reply"
    text = content.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", text, re.S)
    if fence:
        text = fence.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, "malformed_reply", f"not JSON ({exc.msg} at char {exc.pos}): {text[:120]}"
    if not isinstance(data, dict):
        return None, "malformed_reply", f"reply is {type(data).__name__}, not an object"
    try:
        _validator(schema).validate(data)
    except jsonschema.ValidationError as exc:
        return None, "schema_violation", exc.message[:200]
    return data, None, None


def _headers(exc: Exception) -> Mapping[str, str] | None:
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def classify(exc: Exception) -> tuple[str, float | None]:
    """→ (kind, server-requested wait). Raises FatalLLMError for errors every call would hit."""
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError)):
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit", server_wait_s(_headers(exc))
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        raise FatalLLMError(f"the LLM endpoint refused the credentials (HTTP {exc.status_code}); check the API key variable")
    if isinstance(exc, openai.NotFoundError):
        raise FatalLLMError(f"the LLM endpoint does not know this model or path (HTTP 404): {exc.message[:200]}")
    if isinstance(exc, openai.APIStatusError):
        message = (exc.message or "").lower()
        if exc.status_code >= 500:
            return "server_error", server_wait_s(_headers(exc))
        if "context" in message and ("length" in message or "window" in message or "exceed" in message):
            return "context_length", None
        return "bad_request", None
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError)):
        return "malformed_reply", None  # a 200 whose body is not a chat completion (cut, not JSON)
    return "unexpected", None


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """What a request may cost against a tokens-per-minute budget (≈4 characters a token)."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + max_tokens


def request_body(spec: EndpointSpec, messages: list[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body, the same for a live call and a batch-file line."""
    body: dict[str, Any] = dict(
        model=spec.model,
        messages=messages,
        max_tokens=spec.max_tokens,
        temperature=spec.temperature,
        response_format=response_format(spec, schema_name, schema),
    )
    if spec.seed is not None:
        body["seed"] = spec.seed
    return body


class _Failure(NamedTuple):
    """Why one attempt did not settle the item, and how long the server asked us to wait (if it did)."""

    kind: str
    detail: str
    wait_hint: float | None = None


def _backoff_s(spec: EndpointSpec, attempt: int) -> float:
    """Exponential backoff for this attempt, capped."""
    return min(spec.backoff_max_s, spec.backoff_base_s * (2**attempt))


def _retry_delay_s(spec: EndpointSpec, attempt: int, wait_hint: float | None) -> float:
    """The server's word wins (plus a little jitter so a crowd does not return at once); else the
    backoff with jitter. Never longer than the backoff cap."""
    if wait_hint is not None:
        delay = wait_hint * (1 + random.random() / 10)
    else:
        delay = _backoff_s(spec, attempt) * (0.5 + random.random() / 2)
    return min(delay, spec.backoff_max_s)


def _count(value: Any) -> int:
    """A token count from a reply: a non-negative int, else 0 (a bool, string or null is no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cached_prompt_tokens(reply: Mapping[str, Any]) -> int:
    """How many of a chat reply's prompt tokens the endpoint took from its prompt cache.
    OpenAI (and Azure, vLLM) report `usage.prompt_tokens_details.cached_tokens`; llama.cpp's
    `llama-server` reports the same field and, in its `timings`, `cache_n` (prompt tokens reused
    from the slot's cache; `prompt_n` is the rest, the ones it evaluated). The usage field wins when
    present; else `timings.cache_n`; else 0. Never more than the reply's prompt tokens."""
    usage = reply.get("usage") or {}
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    if isinstance(details, Mapping) and "cached_tokens" in details and details["cached_tokens"] is not None:
        cached = _count(details["cached_tokens"])
    else:
        timings = reply.get("timings")
        cached = _count(timings.get("cache_n")) if isinstance(timings, Mapping) else 0
    prompt = _count(usage.get("prompt_tokens")) if isinstance(usage, Mapping) else 0
    return min(cached, prompt) if prompt else cached


def _read_reply(reply: dict[str, Any], spec: EndpointSpec, schema: dict[str, Any], result: CallResult) -> _Failure | None:
    """Count the reply's tokens and settle `result` when the reply is final (valid data or a
    refusal, which a retry would not change); else say what was wrong with it."""
    usage = reply.get("usage") or {}
    result.prompt_tokens += usage.get("prompt_tokens") or 0
    result.completion_tokens += usage.get("completion_tokens") or 0
    result.cached_prompt_tokens += cached_prompt_tokens(reply)
    choices = reply.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else None
    message = (choice or {}).get("message") or {}
    if choice is None:
        return _Failure("malformed_reply", "no choices in reply")
    if message.get("refusal"):
        result.reason, result.detail = "llm_error:refusal", scrub(message["refusal"], spec.api_key)
        return None
    data, kind, detail = parse_reply(message.get("content"), schema)
    if data is not None:
        result.data, result.reason, result.detail = data, None, None
        return None
    if choice.get("finish_reason") == "length":
        return _Failure("truncated", f"reply cut at max_tokens={spec.max_tokens}: {detail}")
    return _Failure(kind, detail)


def _classify_failure(exc: Exception, spec: EndpointSpec) -> _Failure:
    """Kind, readable detail and server wait of a failed request; FatalLLMError (scrubbed) when
    every request would fail the same way."""
    try:
        kind, wait_hint = classify(exc)
    except FatalLLMError as fatal:  # its text quotes the server, which may echo the key
        raise FatalLLMError(scrub(str(fatal), spec.api_key, limit=500)) from None
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} after {spec.timeout_s:g} s"
    return _Failure(kind, detail, wait_hint)


async def _attempt(
    client: openai.AsyncOpenAI,
    spec: EndpointSpec,
    body: dict[str, Any],
    schema: dict[str, Any],
    limiter: AdaptiveLimiter,
    est_tokens: int,
    attempt: int,
    result: CallResult,
) -> _Failure | None:
    """One request under one limiter slot: None when `result` is settled, else why it failed.
    The limiter hears of every success and rate limit, so all items slow down together."""
    await limiter.acquire(est_tokens)
    slot_held = True
    try:
        # The raw POST (status errors still raise the SDK's typed exceptions): the SDK's typed
        # request transform and reply model cost more CPU than the HTTP work at high rates.
        raw = await asyncio.wait_for(client.post("/chat/completions", body=body, cast_to=httpx.Response), spec.timeout_s)
        reply = raw.json()
        limiter.on_success(raw.headers)
        return _read_reply(reply, spec, schema, result)
    except FatalLLMError:
        raise
    except Exception as exc:  # classified; one item's failure never fails the batch
        failure = _classify_failure(exc, spec)
        if failure.kind == "timeout":
            limiter.release_later(spec.timeout_s)  # the server may still be working on it
            slot_held = False
        if failure.kind == "rate_limit":
            result.rate_limited += 1
            limiter.on_rate_limit(failure.wait_hint if failure.wait_hint is not None else _backoff_s(spec, attempt))
        return failure
    finally:
        if slot_held:
            await limiter.release()


async def call_once_with_retries(
    client: openai.AsyncOpenAI,
    spec: EndpointSpec,
    messages: list[dict[str, str]],
    schema_name: str,
    schema: dict[str, Any],
    limiter: AdaptiveLimiter | None = None,
) -> CallResult:
    """One item: attempts until a valid reply, a final error or the retry budget is spent. A slot of
    the limiter is held per attempt only, so items waiting out a backoff leave room for others."""
    limiter = limiter or AdaptiveLimiter(spec.concurrency, spec.requests_per_minute, spec.tokens_per_minute)
    result = CallResult()
    body = request_body(spec, messages, schema_name, schema)
    est = estimate_tokens(messages, spec.max_tokens)
    for attempt in range(spec.max_retries + 1):
        result.attempts = attempt + 1
        failure = await _attempt(client, spec, body, schema, limiter, est, attempt, result)
        if failure is None:
            return result
        result.reason, result.detail = f"llm_error:{failure.kind}", scrub(failure.detail, spec.api_key)
        if failure.kind not in RETRYABLE or attempt == spec.max_retries:
            return result
        await asyncio.sleep(_retry_delay_s(spec, attempt, failure.wait_hint))
    return result


def make_client(spec: EndpointSpec) -> openai.AsyncOpenAI:
    common = dict(api_key=spec.api_key or "not-needed", timeout=spec.timeout_s, max_retries=0)  # retries are ours
    if spec.flavour == "azure":
        return openai.AsyncAzureOpenAI(azure_endpoint=spec.azure_endpoint, api_version=spec.api_version, **common)
    return openai.AsyncOpenAI(base_url=spec.base_url, **common)


def complete_many(
    spec: EndpointSpec,
    requests: list[list[dict[str, str]] | None],
    schema_name: str,
    schema: dict[str, Any],
) -> list[CallResult | None]:
    """Run all requests through one CallStream (at most spec.concurrency in flight, the stages' own
    path); results in input order. A None request (e.g. answered from the cache) gets a None result."""
    if not any(r is not None for r in requests):
        return [None] * len(requests)
    with CallStream(spec, schema_name, schema) as calls:
        submitted = [calls.submit(m) if m is not None else None for m in requests]
        return [f.result() if f is not None else None for f in submitted]  # a FatalLLMError raises here


class CallStream:
    """One Spark task's calls, fed by the task as it reads its rows (all Arrow batches, one after
    another) and answered by one event loop in a background thread: one limiter and one connection
    pool hold up to spec.concurrency requests in flight from the task's first call to its last, so
    the end of an input batch never drains the endpoint (a gather per batch would wait for the
    batch's slowest call with slots idle). Requests start in the order they are submitted.

        with CallStream(spec, name, schema) as calls:
            future = calls.submit(messages, group=doc_id)   # a concurrent.futures.Future of a CallResult

    Calls submitted one after another with the same `group` (one document's calls: they share its
    text) run one after another, each once the previous has finished, while other groups' calls
    fill the other slots: a prompt cache then serves the shared text to the later calls (two calls
    sent together would both make the server read it; measured in docs/performance.md#prompt-layout).
    """

    def __init__(self, spec: EndpointSpec, schema_name: str, schema: dict[str, Any]):
        self.spec, self.schema_name, self.schema = spec, schema_name, schema
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="llm-calls", daemon=True)
        self._thread.start()

        async def setup() -> tuple[openai.AsyncOpenAI, AdaptiveLimiter]:  # both belong to the loop
            return make_client(spec), AdaptiveLimiter(spec.concurrency, spec.requests_per_minute, spec.tokens_per_minute)

        self._client, self.limiter = asyncio.run_coroutine_threadsafe(setup(), self._loop).result()
        # The last call submitted and its group: only a run of calls of one group is chained (the
        # task sends a document's rows together), so nothing grows with the number of groups.
        self._last: tuple[object, concurrent.futures.Future] | None = None

    def submit(self, messages: list[dict[str, str]], group: object = None) -> concurrent.futures.Future:
        """Queue one item's call (with its retries); its future gives the CallResult, or raises
        FatalLLMError when every call would fail the same way. A call with the `group` of the call
        submitted just before it starts when that one has finished (see the class doc)."""
        previous = self._last[1] if group is not None and self._last is not None and self._last[0] == group else None
        future = asyncio.run_coroutine_threadsafe(self._after(previous, messages), self._loop)
        self._last = (group, future) if group is not None else None
        return future

    async def _after(self, previous: concurrent.futures.Future | None, messages: list[dict[str, str]]) -> CallResult:
        if previous is not None:  # its outcome is its own item's: this call only waits for its end
            await asyncio.wait([asyncio.wrap_future(previous)])
        return await call_once_with_retries(self._client, self.spec, messages, self.schema_name, self.schema, self.limiter)

    def close(self) -> None:
        """Cancel what has not finished (a task that stops early, e.g. on a fatal error), close
        the connections, stop the loop."""

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._client.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        except Exception:
            pass  # closing connections is best effort; the loop stops anyway
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> CallStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ProgressFile:
    """Executor side of progress reporting: a task writes its done-count to a small file that the
    driver sums (Spark Connect has no accumulators we could read while a job runs)."""

    def __init__(self, directory: str | None, task_key: str, min_interval_s: float = 1.0):
        self.path = f"{directory}/{task_key}.count" if directory else None
        self.done = 0
        self._last = 0.0
        self._min_interval = min_interval_s

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.path and now - self._last >= self._min_interval:
            self.flush()
            self._last = now

    def flush(self) -> None:
        if not self.path:
            return
        try:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(str(self.done))
            import os

            os.replace(tmp, self.path)
        except OSError:
            pass  # progress is best effort; the data path never depends on it
