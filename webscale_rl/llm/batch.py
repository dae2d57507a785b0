"""Batch API mode (`llm.mode: batch`) for OpenAI-style batch endpoints, run from the driver: write
the requests as JSONL files (at most `llm.batch_max_requests` lines each), upload them, submit the
batches, poll with progress, download the output and error files and map each line back by its
custom_id (the cache key). Lines that failed for a transient reason (expired, 429, 5xx, a malformed
or truncated reply, a failed batch) go into a new batch, at most `llm.batch_max_rounds` times; then
they end as a reason (`llm_error:batch_expired`, `llm_error:batch_failed`, `llm_error:server_error`...).
Nothing is dropped: every key submitted gets a CallResult."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import openai

from .engine import RETRYABLE, CallResult, EndpointSpec, FatalLLMError, parse_reply, request_body, scrub

TERMINAL = {"completed", "failed", "expired", "cancelled"}
# Batch-level outcomes worth another round, besides the engine's own retryable kinds.
BATCH_RETRYABLE = RETRYABLE | {"batch_expired", "batch_failed", "batch_cancelled", "batch_missing"}


@dataclass
class BatchSettings:
    poll_s: float = 30.0
    max_requests: int = 50_000
    max_rounds: int = 2
    completion_window: str = "24h"


def make_sync_client(spec: EndpointSpec) -> openai.OpenAI:
    common = dict(api_key=spec.api_key or "not-needed", timeout=spec.timeout_s, max_retries=2)
    if spec.flavour == "azure":
        return openai.AzureOpenAI(azure_endpoint=spec.azure_endpoint, api_version=spec.api_version, **common)
    return openai.OpenAI(base_url=spec.base_url, **common)


def _line_result(record: dict[str, Any], schema: dict[str, Any], spec: EndpointSpec) -> tuple[CallResult, str | None]:
    """One output/error-file line → (result, retryable kind or None when final)."""
    res = CallResult()
    error = record.get("error")
    response = record.get("response") or {}
    status = response.get("status_code")
    body = response.get("body")
    if error and not response:
        kind = "batch_expired" if error.get("code") == "batch_expired" else f"batch_{error.get('code') or 'error'}"
        res.reason, res.detail = f"llm_error:{kind}", scrub(error.get("message", ""), spec.api_key)
        return res, kind
    if status != 200 or not isinstance(body, dict):
        message = str((body or {}).get("error", {}).get("message", body) if isinstance(body, dict) else body)
        if status == 429:
            kind = "rate_limit"
        elif status and status >= 500:
            kind = "server_error"
        elif status == 200:
            kind = "malformed_reply"
        elif "context" in message.lower() and ("length" in message.lower() or "exceed" in message.lower()):
            kind = "context_length"
        else:
            kind = "bad_request"
        res.reason, res.detail = f"llm_error:{kind}", scrub(f"HTTP {status}: {message}", spec.api_key)
        return res, kind
    usage = body.get("usage") or {}
    res.prompt_tokens, res.completion_tokens = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
    choices = body.get("choices") or []
    message = (choices[0] or {}).get("message") or {} if choices else {}
    if message.get("refusal"):
        res.reason, res.detail = "llm_error:refusal", scrub(message["refusal"], spec.api_key)
        return res, None
    data, kind, detail = parse_reply(message.get("content"), schema)
    if data is not None:
        res.data = data
        return res, None
    if choices and choices[0].get("finish_reason") == "length":
        kind, detail = "truncated", f"reply cut at max_tokens={spec.max_tokens}: {detail}"
    res.reason, res.detail = f"llm_error:{kind}", scrub(detail or "", spec.api_key)
    return res, kind


def run_batches(
    spec: EndpointSpec,
    items: Iterable[tuple[str, list[dict[str, str]]]],
    schema_name: str,
    schema: dict[str, Any],
    workdir: str,
    settings: BatchSettings,
    log: Callable[[str], None] = print,
    on_result: Callable[[str, CallResult], None] | None = None,
    label: str = "batch",
) -> dict[str, CallResult]:
    """(key, messages) pairs → key → CallResult. Requests are streamed to disk, not held in memory."""
    os.makedirs(workdir, exist_ok=True)
    all_requests = os.path.join(workdir, "requests.jsonl")
    pending: list[str] = []
    seen: set[str] = set()
    with open(all_requests, "w", encoding="utf-8") as fh:
        for key, messages in items:
            if key in seen:
                continue  # identical requests are asked once
            seen.add(key)
            pending.append(key)
            line = {"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": request_body(spec, messages, schema_name, schema)}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    results: dict[str, CallResult] = {}
    attempts: dict[str, int] = {}
    if not pending:
        return results
    client = make_sync_client(spec)
    try:
        for round_no in range(settings.max_rounds + 1):
            retry = _run_round(client, spec, all_requests, pending, schema, workdir, settings, round_no, log, label, results, attempts)
            for key in pending:
                results[key].attempts = attempts[key]
                if key not in retry and on_result:
                    on_result(key, results[key])
            pending = retry
            if not pending:
                break
            log(f"  [{label}] {len(pending)} request(s) failed transiently; " + ("retrying in a new batch" if round_no < settings.max_rounds else "giving up"))
        for key in pending:  # out of rounds: the last reason stands
            if on_result:
                on_result(key, results[key])
    finally:
        client.close()
    return results


def _run_round(client, spec, all_requests, keys, schema, workdir, settings, round_no, log, label, results, attempts) -> list[str]:
    """One round: submit `keys` as batches, wait for them, store every key's result; → the keys worth
    another round, in their order."""
    wanted = set(keys)
    files = _write_round_files(all_requests, wanted, workdir, settings.max_requests, round_no)
    batch_ids = [_submit_batch(client, spec, path, settings.completion_window) for path in files]
    log(f"  [{label}] round {round_no}: {len(wanted)} request(s) in {len(batch_ids)} batch(es): {', '.join(batch_ids)}")
    for key in keys:
        attempts[key] = attempts.get(key, 0) + 1
    done = _wait_for_batches(client, batch_ids, settings.poll_s, len(wanted), round_no, log, label)
    retry, seen = _collect_results(client, done, wanted, schema, spec, results, log, label)
    retry |= _mark_missing(wanted - seen, done, results)
    return [k for k in keys if k in retry]


def _write_round_files(all_requests: str, wanted: set[str], workdir: str, max_requests: int, round_no: int) -> list[str]:
    """Copy this round's request lines into batch input files of at most `max_requests` lines each
    (streamed, so a large run is never held in memory); → their paths."""
    files: list[str] = []
    fh = None
    count = 0
    with open(all_requests, encoding="utf-8") as src:
        for line in src:
            if json.loads(line)["custom_id"] not in wanted:
                continue
            if fh is None or count >= max_requests:
                if fh:
                    fh.close()
                files.append(os.path.join(workdir, f"round{round_no}-part{len(files)}.jsonl"))
                fh = open(files[-1], "w", encoding="utf-8")
                count = 0
            fh.write(line)
            count += 1
    if fh:
        fh.close()
    return files


def _submit_batch(client, spec: EndpointSpec, path: str, completion_window: str) -> str:
    """Upload one input file and start its batch; → the batch id. A refusal (key, permission, unknown
    endpoint) would hit every batch, so it stops the run."""
    try:
        with open(path, "rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window=completion_window)
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
        raise FatalLLMError(f"the batch endpoint refused the request (HTTP {exc.status_code}): {scrub(exc.message, spec.api_key)}") from None
    return batch.id


def _wait_for_batches(client, batch_ids: list[str], poll_s: float, n_requests: int, round_no: int, log, label: str) -> dict[str, Any]:
    """Poll until every batch has ended (in any terminal status), logging progress each pass;
    → batch id → its final batch object, in the order they ended."""
    done: dict[str, Any] = {}
    while len(done) < len(batch_ids):
        for batch_id in batch_ids:
            if batch_id not in done:
                batch = client.batches.retrieve(batch_id)
                if batch.status in TERMINAL:
                    done[batch_id] = batch
        counts = [getattr(b, "request_counts", None) for b in done.values()]
        finished = sum((c.completed + c.failed) for c in counts if c)
        log(f"  [{label}] round {round_no}: {len(done)}/{len(batch_ids)} batch(es) finished, {finished}/{n_requests} request(s)")
        if len(done) < len(batch_ids):
            time.sleep(poll_s)
    return done


def _collect_results(client, done: dict[str, Any], wanted: set[str], schema, spec: EndpointSpec, results, log, label: str) -> tuple[set[str], set[str]]:
    """Read the output and error files of the ended batches into `results`; → (keys to retry, keys
    that had a line). Lines for keys not asked in this round are ignored."""
    retry: set[str] = set()
    seen: set[str] = set()
    for batch in done.values():
        for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
            if not file_id:
                continue
            text = client.files.content(file_id).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                record = json.loads(raw)
                key = record.get("custom_id")
                if key not in wanted:
                    continue
                seen.add(key)
                res, kind = _line_result(record, schema, spec)
                results[key] = res
                if kind in BATCH_RETRYABLE:
                    retry.add(key)
        if batch.status != "completed":
            log(f"  [{label}] batch {batch.id} ended '{batch.status}'")
    return retry, seen


def _mark_missing(missing: set[str], done: dict[str, Any], results) -> set[str]:
    """Keys with no result line at all (the batch failed, expired or lost them) get a retryable
    reason named after the first batch that did not complete; → those keys."""
    for key in missing:
        status = next((b.status for b in done.values() if b.status != "completed"), None)
        kind = f"batch_{status}" if status else "batch_missing"
        results[key] = CallResult(reason=f"llm_error:{kind}", detail=f"no result line for this request (batch status {status or 'completed'})")
    return missing
