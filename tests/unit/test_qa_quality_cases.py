"""The labelled cases of the QA-quality benchmark (benchmarks/qa_quality/cases.jsonl) hold together:
enough of them, unique ids, labels and failures consistent, every failure kind represented, known
answer types, duplicates that name a good case of their own document, well-formed document refs.
Each check is also run on a broken copy of the data, so none of them passes whatever the data."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter, defaultdict

import pytest

from tests.support.paths import REPO
from webscale_rl.prompts import ANSWER_TYPES

CASES = REPO / "benchmarks" / "qa_quality" / "cases.jsonl"
FAILURES = ("wrong_answer", "not_in_document", "leaks_answer", "ambiguous", "refers_to_source", "type_mismatch", "duplicate_fact")
KEYS = {"case_id", "doc", "question", "answer", "answer_type", "label", "failure", "duplicate_of", "origin", "note"}
MIN_CASES = 100
MIN_PER_KIND = 8
MAX_GOOD_ANSWER_WORDS = 10


def load() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text(encoding="utf-8").splitlines() if line.strip()]


# Each check returns what is wrong (empty: nothing).


def enough_cases(cases: list[dict]) -> list[str]:
    return [] if len(cases) >= MIN_CASES else [f"{len(cases)} cases, need >= {MIN_CASES}"]


def unique_ids(cases: list[dict]) -> list[str]:
    return [f"{cid} used {n} times" for cid, n in Counter(c["case_id"] for c in cases).items() if n > 1]


def well_formed(cases: list[dict]) -> list[str]:
    out = []
    for c in cases:
        if set(c) != KEYS:
            out.append(f"{c.get('case_id')}: keys {sorted(set(c) ^ KEYS)} differ")
            continue
        if not re.fullmatch(r"c\d{3,}", c["case_id"]):
            out.append(f"{c['case_id']}: id is not like c001")
        if c["origin"] != "hand":
            out.append(f"{c['case_id']}: origin {c['origin']!r}")
        if any(not isinstance(c[k], str) or not c[k].strip() for k in ("question", "answer", "note")):
            out.append(f"{c['case_id']}: empty question, answer or note")
    return out


def labels_consistent(cases: list[dict]) -> list[str]:
    out = []
    for c in cases:
        if c["label"] == "good" and (c["failure"] is not None or c["duplicate_of"] is not None):
            out.append(f"{c['case_id']}: good with a failure or duplicate_of")
        elif c["label"] == "bad" and c["failure"] not in FAILURES:
            out.append(f"{c['case_id']}: bad with failure {c['failure']!r}")
        elif c["label"] not in ("good", "bad"):
            out.append(f"{c['case_id']}: label {c['label']!r}")
    return out


def every_kind_represented(cases: list[dict]) -> list[str]:
    counts = Counter(c["failure"] for c in cases if c["label"] == "bad")
    return [f"{kind}: {counts[kind]} cases, need >= {MIN_PER_KIND}" for kind in FAILURES if counts[kind] < MIN_PER_KIND]


def good_share_roughly_half(cases: list[dict]) -> list[str]:
    share = sum(c["label"] == "good" for c in cases) / len(cases)
    return [] if 0.45 <= share <= 0.65 else [f"good share {share:.2f}, want 0.45..0.65"]


def known_answer_types(cases: list[dict]) -> list[str]:
    return [f"{c['case_id']}: answer_type {c['answer_type']!r}" for c in cases if c["answer_type"] not in ANSWER_TYPES]


def short_good_answers(cases: list[dict]) -> list[str]:
    return [
        f"{c['case_id']}: answer of {len(c['answer'].split())} words"
        for c in cases
        if c["label"] == "good" and len(c["answer"].split()) > MAX_GOOD_ANSWER_WORDS
    ]


def duplicates_name_a_good_case_of_their_document(cases: list[dict]) -> list[str]:
    by_id = {c["case_id"]: c for c in cases}
    out = []
    for c in cases:
        if (c["failure"] == "duplicate_fact") != (c["duplicate_of"] is not None):
            out.append(f"{c['case_id']}: duplicate_of is set exactly for duplicate_fact cases")
        elif c["duplicate_of"] is not None:
            target = by_id.get(c["duplicate_of"])
            if target is None or target["label"] != "good" or target["doc"] != c["doc"]:
                out.append(f"{c['case_id']}: duplicate_of {c['duplicate_of']} is not a good case of the same document")
    return out


def document_refs(cases: list[dict]) -> list[str]:
    out = []
    shas = defaultdict(set)
    for c in cases:
        doc = c["doc"]
        if set(doc) != {"corpus", "id", "sha256"} or doc["corpus"] not in ("python_doc", "newspaper"):
            out.append(f"{c['case_id']}: doc ref {doc}")
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", doc["sha256"]):
            out.append(f"{c['case_id']}: sha256 {doc['sha256']!r} is not 64 hex digits")
        if not doc["id"].startswith({"python_doc": "pydoc-", "newspaper": "newspaper4k-"}[doc["corpus"]]):
            out.append(f"{c['case_id']}: id {doc['id']} does not belong to corpus {doc['corpus']}")
        shas[(doc["corpus"], doc["id"])].add(doc["sha256"])
    out += [f"{key[1]}: {len(v)} different sha256" for key, v in shas.items() if len(v) > 1]
    return out


def both_corpora_many_documents(cases: list[dict]) -> list[str]:
    docs = {(c["doc"]["corpus"], c["doc"]["id"]) for c in cases}
    corpora = {corpus for corpus, _ in docs}
    out = [] if len(docs) >= 25 else [f"{len(docs)} documents, want ~30"]
    return out + ([] if corpora == {"python_doc", "newspaper"} else [f"corpora {sorted(corpora)}"])


CHECKS = [
    enough_cases,
    unique_ids,
    well_formed,
    labels_consistent,
    every_kind_represented,
    good_share_roughly_half,
    known_answer_types,
    short_good_answers,
    duplicates_name_a_good_case_of_their_document,
    document_refs,
    both_corpora_many_documents,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_the_cases_hold(check):
    assert check(load()) == []


def _first(cases, **where):
    return next(c for c in cases if all(c[k] == v for k, v in where.items()))


def _break_duplicate_target(cases):
    dup = _first(cases, failure="duplicate_fact")
    dup["duplicate_of"] = _first(cases, failure="wrong_answer")["case_id"]  # a bad case


def _break_duplicate_document(cases):
    dup = _first(cases, failure="duplicate_fact")
    other = next(c for c in cases if c["label"] == "good" and c["doc"] != dup["doc"])
    dup["duplicate_of"] = other["case_id"]


def _break_sha_shape(cases):
    cases[0]["doc"]["sha256"] = cases[0]["doc"]["sha256"][:-1] + "Z"


def _break_sha_agreement(cases):
    doc = cases[0]["doc"]
    twin = next(c for c in cases[1:] if c["doc"]["id"] == doc["id"])
    twin["doc"]["sha256"] = "0" * 64


def _drop_kind(cases):
    kind = "leaks_answer"
    keep = [c for c in cases if c["failure"] != kind][: len(cases)]
    keep += [c for c in cases if c["failure"] == kind][: MIN_PER_KIND - 1]
    cases[:] = keep


def _too_many_good(cases):
    for c in cases:
        if c["failure"] not in (None, "duplicate_fact"):
            c.update(label="good", failure=None)
        if sum(x["label"] == "good" for x in cases) / len(cases) > 0.7:
            break


BREAKS = {
    "enough_cases": (enough_cases, lambda cases: cases.__delitem__(slice(MIN_CASES - 1, None))),
    "unique_ids": (unique_ids, lambda cases: cases[1].update(case_id=cases[0]["case_id"])),
    "well_formed/key": (well_formed, lambda cases: cases[0].pop("note")),
    "well_formed/origin": (well_formed, lambda cases: cases[0].update(origin="model")),
    "labels/good_with_failure": (labels_consistent, lambda cases: _first(cases, label="good").update(failure="ambiguous")),
    "labels/bad_without_failure": (labels_consistent, lambda cases: _first(cases, label="bad").update(failure=None)),
    "labels/unknown_failure": (labels_consistent, lambda cases: _first(cases, label="bad").update(failure="boring")),
    "every_kind_represented": (every_kind_represented, _drop_kind),
    "good_share": (good_share_roughly_half, _too_many_good),
    "answer_type": (known_answer_types, lambda cases: cases[0].update(answer_type="date")),
    "short_good_answers": (
        short_good_answers,
        lambda cases: _first(cases, label="good").update(answer=" ".join(["word"] * 11)),
    ),
    "duplicate/not_set": (duplicates_name_a_good_case_of_their_document, lambda cases: _first(cases, failure="duplicate_fact").update(duplicate_of=None)),
    "duplicate/bad_target": (duplicates_name_a_good_case_of_their_document, _break_duplicate_target),
    "duplicate/other_document": (duplicates_name_a_good_case_of_their_document, _break_duplicate_document),
    "duplicate/missing_target": (
        duplicates_name_a_good_case_of_their_document,
        lambda cases: _first(cases, failure="duplicate_fact").update(duplicate_of="c999"),
    ),
    "document_refs/sha_shape": (document_refs, _break_sha_shape),
    "document_refs/sha_agreement": (document_refs, _break_sha_agreement),
    "document_refs/corpus": (document_refs, lambda cases: cases[0]["doc"].update(corpus="web")),
    "corpora": (both_corpora_many_documents, lambda cases: cases.__setitem__(slice(None), [c for c in cases if c["doc"]["corpus"] == "python_doc"])),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_check_fails_on_broken_data(name):
    check, breaker = BREAKS[name]
    broken = copy.deepcopy(load())
    breaker(broken)
    assert check(broken), f"{check.__name__} did not notice: {name}"
