"""Great Expectations suite on the `qa` table, built from quality/suites.py. One GX project dir, three validations in it
(the first costs 15-50 s on 2 cores; later ones a few seconds), which also proves re-runs work."""

from __future__ import annotations

import json
from pathlib import Path

from webscale_rl.config import QualityConfig
from webscale_rl.quality import DOMAINS, ValidationOutcome, expectations, measures, validate_qa
from webscale_rl.quality.suites import table_suites

SCHEMA = (
    "doc_id string, qa_id string, pretrain_text string, question string, answer string, "
    "domain string, persona string, run_id string, prompt_version string, answer_type string"
)


def _row(qa_id, question, answer, domain="Math", doc_id="d1", answer_type="entity"):
    return (doc_id, qa_id, "some pretraining text", question, answer, domain, "a teacher", "r1", "v1", answer_type)


def test_validate_qa_pass_fail_empty(spark, warehouse):
    out = warehouse / "_quality"
    cfg = QualityConfig(max_answer_chars=50, distribution_min_rows=4)
    loose = QualityConfig(max_answer_chars=100)  # first run: the stored suite must be rewritten later

    good = spark.createDataFrame(
        [
            _row("q1", "What is two plus two?", "4"),
            _row("q2", "Which language has the borrow checker?", "Rust", domain="Coding"),
            # "a" is among the question's letters, not its words: the check stage's rule passes it
            _row("q3", "What is the first letter of the ISO basic Latin alphabet?", "A", domain="Other"),
        ],
        SCHEMA,
    )
    ok = validate_qa(spark, good, loose, out, run_id="run-ok")
    assert ok.success, ok.summary()
    assert ok.failed == [] and ok.rows == 3
    # columns + 7 not-null + unique + 2 in-set + 2 lengths + 2 shares + answer-in-question
    assert ok.evaluated == ok.passed == 16
    assert ok.results_path == out / "qa_validation_run-ok.json" and ok.results_path.is_file()
    assert ok.summary() == "qa: 16/16 expectations passed (3 rows)"
    assert ok.data_docs == out / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert ok.data_docs.is_file()
    assert not good.is_cached  # GX's persist() of the batch is undone

    bad = spark.createDataFrame(
        [
            _row("q1", "What is two plus two?", "4"),
            _row("q1", "Name a dish.", "Pasta", domain="Cooking"),  # duplicate qa_id, unknown domain
            _row("q3", "The capital of France is Paris; which city is it?", "paris"),  # answer in question
            _row("q4", "Explain everything.", "x" * 51, answer_type="essay"),  # too long, unknown type
        ],
        SCHEMA,
    )
    # Same GX project (get-or-create path); the 51-char answer fails only if the suite took max 50.
    ko = validate_qa(spark, bad, cfg, out, run_id="run-bad")
    assert not ko.success
    failed = " | ".join(ko.failed)
    for name in ("unique(qa_id)", "in_set(domain)", "length_between(answer)", "not_in(answer)"):
        assert name in failed, ko.failed
    assert len(ko.failed) == 4, ko.failed
    # Warnings (suites.py severities) are reported but do not fail the suite: 3 of 4 rows are "Math".
    assert sorted(ko.warnings) == ["in_set(answer_type)"], ko.warnings
    assert ko.passed == 11
    assert ko.unexpected["not_in(answer)"] == 1
    assert ko.unexpected["in_set(domain)"] == 1
    assert "FAILED" in ko.summary() and "not_in(answer)" in ko.summary() and "warning: in_set(answer_type)" in ko.summary()
    doc = json.loads(ko.results_path.read_text())
    assert doc["success"] is False and doc["rows"] == 4 and doc["run_id"] == "run-bad"
    assert doc["validation_results"][0]["statistics"]["unsuccessful_expectations"] == 5

    # A critical distribution check: one domain on 3 of 4 rows (> 50%).
    strict = QualityConfig(max_answer_chars=50, distribution_min_rows=4, max_value_share=0.5, severity={"max_share(domain)": "critical"})
    skew = validate_qa(spark, bad, strict, out, run_id="run-skew")
    assert "max_share(domain)" in skew.failed and skew.unexpected["max_share(domain)"] == 1

    empty = validate_qa(spark, spark.createDataFrame([], SCHEMA), cfg, out, run_id="run-empty")
    assert empty.rows == 0 and empty.empty
    assert empty.success and empty.evaluated == 16
    assert "EMPTY" in empty.summary()
    assert (out / "qa_validation_run-empty.json").is_file()


def test_summary_lists_failures():
    o = ValidationOutcome(
        table="qa",
        success=False,
        evaluated=3,
        failed=["a", "b"],
        results_path=Path("x.json"),
        rows=5,
        passed=1,
        unexpected={"a": 2, "b": None},
    )
    assert o.summary() == "qa: 1/3 expectations passed (5 rows); FAILED: a [2 unexpected]; b"
    assert len(DOMAINS) == 10 and "Other" in DOMAINS


def test_every_qa_kind_reaches_gx_through_one_route():
    """Each kind of the `qa` suite is validated by GX either with GX's own class or with the
    gate's predicate from measures.py, never both and never neither (a kind would be skipped)."""
    native, by_predicate = set(expectations._GX_CLASSES), set(expectations._GATE_PREDICATE_DESCRIPTIONS)
    assert not native & by_predicate
    assert by_predicate <= {*measures.ROW_KINDS, "max_share"}
    qa_kinds = {e.kind for e in table_suites(QualityConfig())["qa"]}
    assert qa_kinds <= native | by_predicate, qa_kinds - native - by_predicate
