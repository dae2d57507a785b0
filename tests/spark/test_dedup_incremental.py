"""Incremental dedup: the fingerprints of kept documents live in `dedup_signatures`, a run hashes
only its new documents and matches them against the stored ones, and the result is that of one
run over all documents. The stage runs as the pipeline runs it (`runner.run_stage`: landing, the
beside table, interrupted batches) on a real Delta warehouse."""

from __future__ import annotations

import shutil

import pytest
from pyspark.sql import Row
from pyspark.sql import functions as F

from tests.spark.test_dedup import CHAIN_A, CHAIN_B, CHAIN_C, PAIR, PAIR_NEAR, article
from webscale_rl.config import Config
from webscale_rl.runner import run_stage
from webscale_rl.stages import dedup, signatures
from webscale_rl.stages.base import StageContext
from webscale_rl.warehouse import REJECTIONS, Warehouse

text = " ".join

# Ids sort in arrival order (as ingest's do): a one-shot run's smallest doc_id is then the
# document an incremental run kept first, and both name the same survivor.
FIRST = {
    "r1-chain-a": text(CHAIN_A) + ".",
    "r1-exact-1": text(PAIR) + ".",
    "r1-exact-2": text(PAIR).upper() + "!",  # exact copy inside the first run
    "r1-other-1": text(article(3)) + ".",
    "r1-other-2": text(article(4)) + ".",
}
SECOND = {
    "r2-chain-b": text(CHAIN_B) + ".",  # near copy of an OLD kept document
    "r2-chain-c": text(CHAIN_C) + ".",  # near copy of r2-chain-b only: joins the old cluster
    "r2-exact-3": "  ".join(PAIR) + " .",  # exact copy of an old kept document
    "r2-pair-near": text(PAIR_NEAR) + ".",
    "r2-other-3": text(article(5)) + ".",
    "r2-other-4": text(article(6)) + ".",
}
EXPECTED_REJECTED = {
    "r1-exact-2": ("exact_duplicate", "r1-exact-1"),
    "r2-chain-b": ("near_duplicate", "r1-chain-a"),
    "r2-chain-c": ("near_duplicate", "r1-chain-a"),
    "r2-exact-3": ("exact_duplicate", "r1-exact-1"),
    "r2-pair-near": ("near_duplicate", "r1-exact-1"),
}


def upstream(spark, docs: dict[str, str]):
    """Rows as the filter stage lands them (dedup's contract: it writes these columns)."""
    rows = [
        Row(doc_id=d, url=f"https://x/{d}", text=t, source="test", source_format="jsonl", n_chars=len(t), n_words=len(t.split()), text_hash=None)
        for d, t in docs.items()
    ]
    return spark.createDataFrame(
        rows, "doc_id string, url string, text string, source string, source_format string, n_chars int, n_words int, text_hash string"
    )


class Hashed:
    """Records the doc_ids fed to the one fingerprint pass (dedup.fingerprints) of each call."""

    def __init__(self, monkeypatch):
        self.calls: list[set[str]] = []
        real = dedup.fingerprints

        def counting(docs, cfg):
            self.calls.append({r["doc_id"] for r in docs.select("doc_id").collect()})
            return real(docs, cfg)

        monkeypatch.setattr(dedup, "fingerprints", counting)

    def take(self) -> list[set[str]]:
        calls, self.calls = self.calls, []
        return calls


def config() -> Config:
    cfg = Config()
    cfg.quality.gates = False
    return cfg


def run_dedup(wh: Warehouse, docs: dict[str, str], run_id: str, lines: list[str], cfg: Config | None = None):
    ctx = StageContext(cfg=cfg or config(), run_id=run_id, warehouse=wh, log=lines.append)
    # The stage takes the documents no run has handled: the upstream table is every document so far.
    return run_stage(wh, dedup.STAGE, upstream(wh.spark, docs), ctx, first=False)


def outcome(wh: Warehouse) -> tuple[set[str], dict[str, tuple[str, str]]]:
    kept = {r["doc_id"] for r in wh.read("deduped").collect()}
    rejected = {r["doc_id"]: (r["reason"], r["duplicate_of"]) for r in wh.read(REJECTIONS).filter(F.col("stage") == "dedup").collect()}
    return kept, rejected


def stored_ids(wh: Warehouse) -> list[str]:
    return sorted(r["doc_id"] for r in wh.read(signatures.SIGNATURES).collect())


@pytest.fixture
def two_runs(spark, tmp_path, monkeypatch):
    wh = Warehouse(spark, str(tmp_path / "wh"))
    hashed = Hashed(monkeypatch)
    lines: list[str] = []
    run_dedup(wh, FIRST, "run-1", lines)
    return wh, hashed, lines


def test_second_run_hashes_only_new_documents_and_catches_copies_of_old_ones(spark, two_runs, tmp_path):
    wh, hashed, lines = two_runs
    assert hashed.take() == [set(FIRST)]
    first_kept = {"r1-chain-a", "r1-exact-1", "r1-other-1", "r1-other-2"}
    assert stored_ids(wh) == sorted(first_kept)

    summary = run_dedup(wh, {**FIRST, **SECOND}, "run-2", lines)
    assert hashed.take() == [set(SECOND)]  # the old documents are read from dedup_signatures, not hashed
    assert (summary.rows_in, summary.kept, summary.rejected) == (6, 2, 4)
    kept, rejected = outcome(wh)
    assert rejected == EXPECTED_REJECTED
    assert kept == first_kept | {"r2-other-3", "r2-other-4"}
    # The table grew by exactly the new kept documents, each once, with the current settings.
    assert stored_ids(wh) == sorted(kept)
    stored = {r["doc_id"]: r for r in wh.read(signatures.SIGNATURES).collect()}
    assert {r["params"] for r in stored.values()} == {signatures.params(config().dedup)}
    assert {r["run_id"] for d, r in stored.items() if d.startswith("r2-")} == {"run-2"}
    assert len(stored["r2-other-3"]["bands"]) == 14 and stored["r2-other-3"]["signature"] is None
    assert not any("hashing" in line for line in lines)

    # The same as one run over the union, decision for decision.
    one_shot = Warehouse(spark, str(tmp_path / "one-shot"))
    run_dedup(one_shot, {**FIRST, **SECOND}, "run-all", [])
    assert outcome(one_shot) == (kept, rejected)


def test_a_warehouse_without_the_table_builds_it_once(spark, two_runs):
    wh, hashed, lines = two_runs
    hashed.take()
    shutil.rmtree(wh.path(signatures.SIGNATURES))  # a warehouse made before dedup_signatures existed
    wh = Warehouse(spark, wh.root)

    run_dedup(wh, {**FIRST, **SECOND}, "run-2", lines)
    first_kept = {"r1-chain-a", "r1-exact-1", "r1-other-1", "r1-other-2"}
    assert hashed.take() == [first_kept, set(SECOND)]  # the catch-up hashes the old kept documents once
    assert [line for line in lines if "hashing" in line] == [
        "  [dedup] dedup_signatures: hashing 4 document(s) of 'deduped' that have no stored fingerprint (no table yet); once: later runs read them"
    ]
    assert outcome(wh)[1] == EXPECTED_REJECTED
    assert stored_ids(wh) == sorted(outcome(wh)[0])

    run_dedup(wh, {**FIRST, **SECOND, "r3-new": text(article(7)) + "."}, "run-3", lines)
    assert hashed.take() == [{"r3-new"}]


def test_changed_settings_rebuild_the_fingerprints(spark, two_runs):
    wh, hashed, lines = two_runs
    hashed.take()
    cfg = config()
    cfg.dedup.fuzzy.verify = "signature"
    run_dedup(wh, {**FIRST, **SECOND}, "run-2", lines, cfg)
    assert hashed.take() == [{"r1-chain-a", "r1-exact-1", "r1-other-1", "r1-other-2"}, set(SECOND)]
    assert outcome(wh)[1] == EXPECTED_REJECTED
    current = wh.read(signatures.SIGNATURES).filter(F.col("params") == signatures.params(cfg.dedup))
    assert sorted(r["doc_id"] for r in current.collect()) == sorted(outcome(wh)[0])
    assert all(len(r["signature"]) == 112 and r["shingles"] is None for r in current.collect())


def test_kept_rows_landed_but_fingerprints_not_is_repaired_by_the_next_run(spark, two_runs, monkeypatch):
    wh, hashed, lines = two_runs
    hashed.take()
    real_append = Warehouse.append_once

    def killed_before_fingerprints(self, df, name, batch_id):
        if name == signatures.SIGNATURES:
            raise RuntimeError("killed between the two commits")
        return real_append(self, df, name, batch_id)

    monkeypatch.setattr(Warehouse, "append_once", killed_before_fingerprints)
    with pytest.raises(RuntimeError, match="killed between"):
        run_dedup(wh, {**FIRST, **SECOND}, "run-2", lines)
    assert len(stored_ids(wh)) == 4 and wh.read("deduped").count() == 6  # out of step: the batch is still staged
    monkeypatch.setattr(Warehouse, "append_once", real_append)

    summary = run_dedup(wh, {**FIRST, **SECOND}, "run-3", lines)
    assert "  [dedup] landed batch of interrupted run run-2: kept 2, rejected 4" in lines
    assert hashed.take() == [set(SECOND)]  # run-2's hashing; the repair and run-3 hash nothing
    assert summary.rows_in == 0
    assert stored_ids(wh) == sorted(outcome(wh)[0])
    assert outcome(wh)[1] == EXPECTED_REJECTED


def test_fingerprints_of_documents_not_kept_are_dropped_and_never_matched(spark, two_runs):
    # A fingerprint whose document is not in `deduped` (deleted there) must not make a new copy a duplicate.
    wh, hashed, lines = two_runs
    hashed.take()
    spark.sql(f"DELETE FROM delta.`{wh.path('deduped')}` WHERE doc_id = 'r1-chain-a'")
    run_dedup(wh, SECOND, "run-2", lines)
    assert "  [dedup] dedup_signatures: dropping the fingerprints of 1 document(s) that are not in 'deduped'" in lines
    assert hashed.take() == [set(SECOND)]
    kept, rejected = outcome(wh)
    assert "r2-chain-b" in kept and rejected["r2-chain-c"] == ("near_duplicate", "r2-chain-b")
    assert stored_ids(wh) == sorted(kept)
