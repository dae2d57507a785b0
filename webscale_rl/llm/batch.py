"""Batch API mode (`llm.mode: batch`) for OpenAI-style batch endpoints, run from the driver: write
the requests as JSONL files (at most `llm.batch_max_requests` lines each), upload them, submit the
batches, poll with progress, download the output and error files and map each line back by its
custom_id (the cache key). Lines that failed for a transient reason (expired, 429, 5xx, a malformed
or truncated reply, a failed batch) go into a new batch, at most `llm.batch_max_rounds` times; then
they end as a reason (`llm_error:batch_expired`, `llm_error:batch_failed`, `llm_error:server_error`...).
Nothing is dropped: every key submitted gets a CallResult.

Batches outlive the driver: a `Ledger` (llm/batch_ledger.py, a Delta table in the warehouse) gets
each batch's id and keys right after it is created, before any waiting, and its end state. A later
run passes the batches it found open for keys it still needs as `resume`: they are polled again
(their keys are not submitted a second time) and their output is mapped back like a new batch's."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import openai

from .engine import RETRYABLE, CallResult, EndpointSpec, FatalLLMError, cached_prompt_tokens, parse_reply, request_body, scrub

TERMINAL = {"completed", "failed", "expired", "cancelled"}
# Batch-level outcomes worth another round, besides the engine's own retryable kinds.
BATCH_RETRYABLE = RETRYABLE | {"batch_expired", "batch_failed", "batch_cancelled", "batch_missing"}


@dataclass
class BatchSettings:
    poll_s: float = 30.0
    max_requests: int = 50_000
    max_rounds: int = 2
    completion_window: str = "24h"


@dataclass
class OpenBatch:
    """A batch an earlier run submitted and nobody has collected: its id, the run that submitted it,
    how many requests it holds, and those of its keys this run still needs."""

    batch_id: str
    run_id: str
    n_requests: int
    keys: list[str] = field(default_factory=list)


class Ledger(Protocol):
    """Where batches are recorded so that a killed driver does not lose them."""

    def submitted(self, batch_id: str, keys: list[str], round_no: int) -> None:
        """`batch_id` was created with `keys`: record it before anything waits for it."""

    def ended(self, statuses: dict[str, str]) -> None:
        """The batches of a round (new and resumed) ended: batch id → final status. Until this is
        recorded they stay resumable, which costs a later run one poll, never a payment."""


class _NoLedger:
    def submitted(self, batch_id: str, keys: list[str], round_no: int) -> None:
        pass

    def ended(self, statuses: dict[str, str]) -> None:
        pass


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
    res.cached_prompt_tokens = cached_prompt_tokens(body)
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
    ledger: Ledger | None = None,
    resume: list[OpenBatch] | None = None,
) -> dict[str, CallResult]:
    """(key, messages) pairs → key → CallResult. Requests are streamed to disk, not held in memory.
    Keys carried by a batch of `resume` (oldest first; a key in two is the newest one's) are not
    submitted again: round 0 polls those batches beside its new ones."""
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
    ledger = ledger or _NoLedger()
    carried = _carried(resume or [], seen)
    client = make_sync_client(spec)
    try:
        for round_no in range(settings.max_rounds + 1):
            rnd = _Round(client, spec, schema, workdir, settings, round_no, log, label, ledger)
            retry = rnd.run(all_requests, pending, results, attempts, carried if round_no == 0 else {})
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


def _carried(resume: list[OpenBatch], needed: set[str]) -> dict[str, tuple[OpenBatch, set[str]]]:
    """batch id → (the open batch, the needed keys it answers). A key carried by several batches (a
    retry round's batch and the one it retried) belongs to the newest; a batch left with none is
    not polled."""
    owner: dict[str, OpenBatch] = {}
    for batch in resume:
        for key in batch.keys:
            if key in needed:
                owner[key] = batch
    out: dict[str, tuple[OpenBatch, set[str]]] = {}
    for key, batch in owner.items():
        out.setdefault(batch.batch_id, (batch, set()))[1].add(key)
    return out


@dataclass
class _Round:
    client: Any
    spec: EndpointSpec
    schema: dict[str, Any]
    workdir: str
    settings: BatchSettings
    round_no: int
    log: Callable[[str], None]
    label: str
    ledger: Ledger

    def run(self, all_requests: str, keys: list[str], results: dict[str, CallResult], attempts: dict[str, int], carried) -> list[str]:
        """Poll the `carried` open batches and submit the rest of `keys` as new batches, wait for all
        of them, store every key's result; → the keys worth another round, in their order."""
        batches: dict[str, set[str]] = {}  # batch id → the keys this round takes from it
        for batch_id, (batch, wanted_here) in carried.items():
            self.log(f"  [{self.label}] resuming batch {batch_id} submitted by run {batch.run_id} ({batch.n_requests} requests)")
            batches[batch_id] = wanted_here
        resumed = {k for ks in batches.values() for k in ks}
        for path, file_keys in _write_round_files(all_requests, set(keys) - resumed, self.workdir, self.settings.max_requests, self.round_no):
            batch_id = _submit_batch(self.client, self.spec, path, self.settings.completion_window)
            self.ledger.submitted(batch_id, file_keys, self.round_no)  # durable before any waiting
            batches[batch_id] = set(file_keys)
        n_new = len(batches) - len(carried)
        self.log(
            f"  [{self.label}] round {self.round_no}: {len(keys)} request(s) in {len(batches)} batch(es)"
            + (f" ({len(carried)} resumed, {n_new} new)" if carried else "")
            + f": {', '.join(batches)}"
        )
        for key in keys:
            attempts[key] = attempts.get(key, 0) + 1
        done = self._wait(list(batches), len(keys))
        self.ledger.ended({batch_id: batch.status for batch_id, batch in done.items()})
        retry: set[str] = set()
        for batch_id, batch in done.items():
            retry |= self._collect(batch, batches[batch_id], results)
        return [k for k in keys if k in retry]

    def _wait(self, batch_ids: list[str], n_requests: int) -> dict[str, Any]:
        """Poll until every batch has ended (in any terminal status), logging progress each pass;
        → batch id → its final batch object. A batch the endpoint no longer knows (404) ends as
        'missing': its keys go into a new batch."""
        done: dict[str, Any] = {}
        while len(done) < len(batch_ids):
            for batch_id in batch_ids:
                if batch_id in done:
                    continue
                try:
                    batch = self.client.batches.retrieve(batch_id)
                except openai.NotFoundError:
                    batch = SimpleNamespace(id=batch_id, status="missing", output_file_id=None, error_file_id=None, request_counts=None)
                if batch.status in TERMINAL or batch.status == "missing":
                    done[batch_id] = batch
            counts = [getattr(b, "request_counts", None) for b in done.values()]
            finished = sum((c.completed + c.failed) for c in counts if c)
            self.log(f"  [{self.label}] round {self.round_no}: {len(done)}/{len(batch_ids)} batch(es) finished, {finished}/{n_requests} request(s)")
            if len(done) < len(batch_ids):
                time.sleep(self.settings.poll_s)
        return done

    def _collect(self, batch: Any, wanted: set[str], results: dict[str, CallResult]) -> set[str]:
        """Read an ended batch's output and error files into `results` for the keys this round takes
        from it (other lines are ignored); a wanted key with no line gets a retryable reason named
        after the batch's status. → the keys to retry."""
        retry: set[str] = set()
        seen: set[str] = set()
        for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                record = json.loads(raw)
                key = record.get("custom_id")
                if key not in wanted:
                    continue
                seen.add(key)
                res, kind = _line_result(record, self.schema, self.spec)
                results[key] = res
                if kind in BATCH_RETRYABLE:
                    retry.add(key)
        if batch.status != "completed":
            self.log(f"  [{self.label}] batch {batch.id} ended '{batch.status}'")
        kind = f"batch_{batch.status}" if batch.status != "completed" else "batch_missing"
        for key in wanted - seen:
            results[key] = CallResult(reason=f"llm_error:{kind}", detail=f"no result line for this request (batch status {batch.status})")
            retry.add(key)
        return retry


def _write_round_files(all_requests: str, wanted: set[str], workdir: str, max_requests: int, round_no: int) -> list[tuple[str, list[str]]]:
    """Copy this round's request lines into batch input files of at most `max_requests` lines each
    (streamed, so a large run is never held in memory); → (path, its keys) per file."""
    files: list[tuple[str, list[str]]] = []
    fh = None
    with open(all_requests, encoding="utf-8") as src:
        for line in src:
            key = json.loads(line)["custom_id"]
            if key not in wanted:
                continue
            if fh is None or len(files[-1][1]) >= max_requests:
                if fh:
                    fh.close()
                files.append((os.path.join(workdir, f"round{round_no}-part{len(files)}.jsonl"), []))
                fh = open(files[-1][0], "w", encoding="utf-8")
            fh.write(line)
            files[-1][1].append(key)
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
