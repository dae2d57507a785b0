"""Durable batches (llm/batch_ledger.py) against the fake Batch API: a driver that stops while a
batch is in progress leaves it in `_llm_batches`; the next run resumes that batch (no new upload for
its keys), submits only the keys no open batch carries, and a collected or failed batch is never
resumed."""

from __future__ import annotations

import tempfile

import pytest

from tests.support.fake_server import FakeOpenAI
from webscale_rl.llm.batch import BatchSettings, run_batches
from webscale_rl.llm.batch_ledger import BatchLedger, endpoint_id, mark_collected
from webscale_rl.llm.engine import EndpointSpec
from webscale_rl.stages.llm_filter import REPLY_SCHEMA
from webscale_rl.warehouse import Warehouse

SCHEMA_NAME = "document_judgement"


class DriverLost(Exception):
    """Stands for a SIGKILL of the driver while it waits (the e2e test kills a real one)."""


def messages(doc: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"<document>\n{doc}\n</document>"}]


ITEMS = {"k1": "The Danube flows east.", "k2": "Chlorophyll absorbs light.", "k3": "NAVIGATION ONLY", "k4": "A fourth document."}


def run(fake, wh, run_id, keys, log):
    spec = EndpointSpec(base_url=fake.base_url, model="m", api_key="sk-test")
    ledger = BatchLedger(
        wh, stage="llm_filter", model="openai:m", endpoint=endpoint_id(fake.base_url), run_id=run_id, schema_name=SCHEMA_NAME, prompt_version="llm_filter-v1"
    )
    needed = wh.spark.createDataFrame([(k,) for k in keys], "key string")
    resume = ledger.open_batches(needed, "key")
    items = [(k, messages(ITEMS[k])) for k in keys]
    settings = BatchSettings(poll_s=0.01, max_requests=50, max_rounds=1)
    results = run_batches(
        spec, items, SCHEMA_NAME, REPLY_SCHEMA, tempfile.mkdtemp(prefix="wsrl-ledger-"), settings, log, label="llm_filter", ledger=ledger, resume=resume
    )
    return results, resume


def rows(wh: Warehouse) -> dict[str, tuple]:
    return {r["batch_id"]: (r["run_id"], r["used_by"], r["status"], sorted(r["keys"]), r["n_requests"]) for r in wh.read_llm_batches().collect()}


def killed_while_polling(fake, wh) -> None:
    fake.batch_polls = 10**6  # held in_progress

    def log(line: str) -> None:
        if "0/1 batch(es) finished" in line:
            raise DriverLost

    with pytest.raises(DriverLost):
        run(fake, wh, "runA", ["k1", "k2", "k3"], log)
    fake.batch_polls = 1


def test_a_lost_driver_batch_is_resumed_not_paid_again(spark, tmp_path):
    wh = Warehouse(spark, str(tmp_path / "wh"))
    with FakeOpenAI() as fake:
        killed_while_polling(fake, wh)
        assert fake.uploads == 1 and list(fake.batches) == ["batch_1"]
        assert rows(wh) == {"batch_1": ("runA", "runA", "submitted", ["k1", "k2", "k3"], 3)}  # recorded before the wait

        lines: list[str] = []
        results, resume = run(fake, wh, "runB", ["k1", "k2", "k3", "k4"], lines.append)
        assert [(b.batch_id, b.run_id, sorted(b.keys)) for b in resume] == [("batch_1", "runA", ["k1", "k2", "k3"])]
        assert "  [llm_filter] resuming batch batch_1 submitted by run runA (3 requests)" in lines
        # One upload more, for the key no open batch carried, and it holds only that key.
        assert fake.uploads == 2 and list(fake.batches) == ["batch_1", "batch_2"]
        assert fake.files[fake.batches["batch_2"]["input_file_id"]].decode().count('"custom_id"') == 1
        assert b'"custom_id": "k4"' in fake.files[fake.batches["batch_2"]["input_file_id"]]
        assert {k: r.data for k, r in results.items()} == {
            "k1": {"informative": True, "self_contained": True},
            "k2": {"informative": True, "self_contained": True},
            "k3": {"informative": False, "self_contained": True},
            "k4": {"informative": True, "self_contained": True},
        }
        assert rows(wh) == {
            "batch_1": ("runA", "runB", "completed", ["k1", "k2", "k3"], 3),
            "batch_2": ("runB", "runB", "completed", ["k4"], 1),
        }

        # A completed batch nobody collected yet (a kill before its slice was staged) is fetched
        # again for free; once the stage is staged it is collected and never resumed.
        again, resume = run(fake, wh, "runC", ["k1"], lambda _: None)
        assert [b.batch_id for b in resume] == ["batch_1"] and fake.uploads == 2 and again["k1"].ok
        mark_collected(wh, "llm_filter", "runC")
        assert {b: r[2] for b, r in rows(wh).items()} == {"batch_1": "collected", "batch_2": "completed"}
        needed = spark.createDataFrame([("k1",), ("k4",)], "key string")
        ledger = BatchLedger(
            wh, stage="llm_filter", model="openai:m", endpoint=endpoint_id(fake.base_url), run_id="runD", schema_name=SCHEMA_NAME, prompt_version=None
        )
        assert [b.batch_id for b in ledger.open_batches(needed, "key")] == ["batch_2"]
        # Another model or endpoint never sees these batches.
        other = BatchLedger(
            wh, stage="llm_filter", model="openai:other", endpoint=endpoint_id(fake.base_url), run_id="runD", schema_name=SCHEMA_NAME, prompt_version=None
        )
        assert other.open_batches(needed, "key") == []
        # A batch that ended in failure is never resumed: its keys go into a new batch.
        wh.update_llm_batches({"status": "expired"}, batch_id="batch_2")
        assert ledger.open_batches(needed, "key") == []


def test_endpoint_ids_hold_no_secret():
    assert endpoint_id("https://user:sk-secret@api.example.com:8443/v1/?api-key=sk-secret#x") == "https://api.example.com:8443/v1"
