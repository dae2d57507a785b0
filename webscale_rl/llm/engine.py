"""The LLM engine shared by every LLM stage: async calls with a bounded number in flight, a
timeout, retries with exponential backoff and jitter, structured output validated against a JSON
schema, and a classification of every failure. It never raises for one bad item: each call ends
as a CallResult with either data or a reason such as `llm_error:timeout`. Only errors that would
fail every call the same way (bad key, unknown model) raise FatalLLMError, so a run stops at once
with a clear message instead of rejecting a million documents.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jsonschema
import openai


class FatalLLMError(RuntimeError):
    """An error that every request would hit (authentication, unknown model, bad endpoint)."""


@dataclass
class EndpointSpec:
    """Everything a worker needs to call the model; picklable so Spark can ship it to executors."""

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

    @property
    def ok(self) -> bool:
        return self.data is not None


# Failures worth another attempt; the others end the item at once.
RETRYABLE = {"rate_limit", "server_error", "timeout", "connection", "malformed_reply", "schema_violation", "truncated"}


def scrub(text: str, secret: str | None, limit: int = 300) -> str:
    """Shorten an error text and remove the key from it, should a server ever echo it back."""
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "***")
    text = re.sub(r"sk-[A-Za-z0-9_\-]{8,}", "sk-***", text)
    return text[:limit]


def response_format(spec: EndpointSpec, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    if spec.response_format == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


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
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        return None, "schema_violation", exc.message[:200]
    return data, None, None


def _retry_after_s(exc: openai.APIStatusError) -> float | None:
    headers = getattr(exc.response, "headers", None) or {}
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def classify(exc: Exception) -> tuple[str, float | None]:
    """→ (kind, server-requested wait). Raises FatalLLMError for errors every call would hit."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit", _retry_after_s(exc)
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        raise FatalLLMError(f"the LLM endpoint refused the credentials (HTTP {exc.status_code}); check the API key variable")
    if isinstance(exc, openai.NotFoundError):
        raise FatalLLMError(f"the LLM endpoint does not know this model or path (HTTP 404): {exc.message[:200]}")
    if isinstance(exc, openai.APIStatusError):
        message = (exc.message or "").lower()
        if exc.status_code >= 500:
            return "server_error", _retry_after_s(exc)
        if "context" in message and ("length" in message or "window" in message or "exceed" in message):
            return "context_length", None
        return "bad_request", None
    return "unexpected", None


async def call_once_with_retries(
    client: openai.AsyncOpenAI,
    spec: EndpointSpec,
    messages: list[dict[str, str]],
    schema_name: str,
    schema: dict[str, Any],
) -> CallResult:
    result = CallResult()
    fmt = response_format(spec, schema_name, schema)
    for attempt in range(spec.max_retries + 1):
        result.attempts = attempt + 1
        wait_hint: float | None = None
        try:
            kwargs: dict[str, Any] = dict(
                model=spec.model,
                messages=messages,
                max_tokens=spec.max_tokens,
                temperature=spec.temperature,
                response_format=fmt,
            )
            if spec.seed is not None:
                kwargs["seed"] = spec.seed
            reply = await client.chat.completions.create(**kwargs)
            if reply.usage:
                result.prompt_tokens += reply.usage.prompt_tokens or 0
                result.completion_tokens += reply.usage.completion_tokens or 0
            choice = reply.choices[0] if reply.choices else None
            if choice is None:
                kind, detail = "malformed_reply", "no choices in reply"
            elif getattr(choice.message, "refusal", None):
                result.reason, result.detail = "llm_error:refusal", scrub(choice.message.refusal, spec.api_key)
                return result
            else:
                data, kind, detail = parse_reply(choice.message.content, schema)
                if data is not None:
                    result.data, result.reason, result.detail = data, None, None
                    return result
                if choice.finish_reason == "length":
                    kind, detail = "truncated", f"reply cut at max_tokens={spec.max_tokens}: {detail}"
        except FatalLLMError:
            raise
        except Exception as exc:  # classified below; one item's failure never fails the batch
            kind, wait_hint = classify(exc)
            detail = f"{type(exc).__name__}: {exc}"
        result.reason, result.detail = f"llm_error:{kind}", scrub(detail, spec.api_key)
        if kind not in RETRYABLE or attempt == spec.max_retries:
            return result
        backoff = min(spec.backoff_max_s, spec.backoff_base_s * (2**attempt))
        delay = wait_hint if wait_hint is not None else backoff * (0.5 + random.random() / 2)
        await asyncio.sleep(min(delay, spec.backoff_max_s))
    return result


async def _complete_many(
    spec: EndpointSpec,
    requests: list[list[dict[str, str]]],
    schema_name: str,
    schema: dict[str, Any],
    on_done: Callable[[int], None] | None,
) -> list[CallResult]:
    semaphore = asyncio.Semaphore(max(1, spec.concurrency))
    async with openai.AsyncOpenAI(
        base_url=spec.base_url,
        api_key=spec.api_key or "not-needed",
        timeout=spec.timeout_s,
        max_retries=0,  # retries are ours: classified, bounded and counted
    ) as client:

        async def one(messages: list[dict[str, str]]) -> CallResult:
            async with semaphore:
                res = await call_once_with_retries(client, spec, messages, schema_name, schema)
            if on_done:
                on_done(1)
            return res

        return list(await asyncio.gather(*(one(m) for m in requests)))


def complete_many(
    spec: EndpointSpec,
    requests: list[list[dict[str, str]]],
    schema_name: str,
    schema: dict[str, Any],
    on_done: Callable[[int], None] | None = None,
) -> list[CallResult]:
    """Run all requests concurrently (at most spec.concurrency in flight); results in input order."""
    if not requests:
        return []
    return asyncio.run(_complete_many(spec, requests, schema_name, schema, on_done))


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
