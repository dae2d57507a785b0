"""A task's calls stream across its Arrow batches (no batch waits for the one before it), every row
comes out once, the task's cap holds, and a fatal error still stops the task."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.fake_server import FakeOpenAI, document_of
from webscale_rl.llm.engine import EndpointSpec, FatalLLMError
from webscale_rl.prompts import load_prompt
from webscale_rl.stages import llm_stage
from webscale_rl.stages.llm_filter import REPLY_SCHEMA

OUT = ["doc_id", "informative", *[f.name for f in llm_stage.INTERNAL_FIELDS]]


def answering(fake: FakeOpenAI, **kw):
    spec = EndpointSpec(base_url=fake.base_url, model="fake", api_key="sk-test", concurrency=4, timeout_s=10, max_retries=0, **kw)
    prompt = load_prompt("llm_filter")
    return llm_stage._answering(
        spec,
        None,
        "document_judgement",
        REPLY_SCHEMA,
        lambda row: prompt.messages(document=row["text"]),
        lambda row, reply: [{"informative": reply["informative"]}],
        OUT,
        batch_mode=False,
        keep_replies=False,
    )


def batch(ids: list[str], texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"doc_id": ids, "text": texts})


def test_the_next_batch_is_called_while_a_slow_call_of_the_last_one_runs():
    answered: list[str] = []

    def record(_schema, messages):
        answered.append(document_of(messages))
        return None  # the plausible reply

    with FakeOpenAI(hang_s=1.5, reply=record) as fake:
        first = batch([f"a{i}" for i in range(6)], ["FAULT_HANG slow one"] + [f"first batch {i}" for i in range(5)])
        second = batch([f"b{i}" for i in range(6)], [f"second batch {i}" for i in range(6)])
        out = pd.concat(list(answering(fake)(iter([first, second]))))
        peak = fake.peak_in_flight
    assert sorted(out["doc_id"]) == sorted([*first["doc_id"], *second["doc_id"]])  # each row once
    assert out["informative"].all() and out[llm_stage.REASON].isna().all()
    # A gather per batch would answer the slow call before the second batch is even sent.
    assert answered[-1] == "FAULT_HANG slow one", answered
    assert peak <= 4


def test_a_fatal_error_stops_the_task():
    with FakeOpenAI(require_key="sk-other") as fake:
        with pytest.raises(FatalLLMError):
            list(answering(fake)(iter([batch(["a", "b"], ["one", "two"])])))


def test_the_cap_needs_more_than_one_task_only_when_it_is_large():
    assert llm_stage.plan_partitions(1000, 16, 16, 2) == (1, 1)  # one task holds all 16 until its last row
    assert llm_stage.plan_partitions(1000, 4 * llm_stage.TASK_IN_FLIGHT, 16, 8) == (4, 4)
    assert llm_stage.plan_partitions(1000, 4 * llm_stage.TASK_IN_FLIGHT, 16, 2) == (2, 2)  # at most the tasks at once


def test_a_documents_calls_run_one_after_another_while_other_documents_fill_the_slots():
    """One document's calls share its text: the stream sends the next only when the previous has
    been answered (a server's prompt cache then holds the text), and other documents' calls run
    meanwhile, so the cap is still used."""
    import time

    arrived: dict[str, list[float]] = {}

    def record(_schema, messages):
        doc, _, call = document_of(messages).partition("#")
        arrived.setdefault(doc, []).append(time.monotonic())
        return None

    latency = 0.3
    with FakeOpenAI(latency_s=latency, reply=record) as fake:
        ids = [d for d in ("A", "B", "C", "D") for _ in range(3)]  # rows sorted by document, as a stage sends them
        rows = batch(ids, [f"{d}#{i}" for i, d in enumerate(ids)])
        out = pd.concat(list(answering(fake)(iter([rows]))))
        peak = fake.peak_in_flight
    assert sorted(out["doc_id"]) == sorted(ids)
    for doc, times in arrived.items():
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) == 3 and min(gaps) >= latency * 0.9, (doc, gaps)  # each waited for the one before
    firsts = sorted(times[0] for times in arrived.values())
    assert firsts[-1] - firsts[0] < latency, firsts  # the four documents started together
    assert peak == 4
