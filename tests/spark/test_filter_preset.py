"""`filter.preset: datatrove` against DataTrove's own classes on real documents from two sources:
the same keep/remove decision and the same first failing rule on >= 99 % of each source, every
remaining difference named here. Needs the dev extra (datatrove, spacy, orjson)."""

from __future__ import annotations

import random

import pytest
from pyspark.sql import Row

from tests.support import datatrove_reference, real_corpora
from webscale_rl.config import Config
from webscale_rl.rules import datatrove
from webscale_rl.stages import filter as filter_stage
from webscale_rl.stages.base import DETAIL, REASON, StageContext

pytest.importorskip("datatrove")
pytest.importorskip("spacy")

PYTHON_DOC_SAMPLE = 600  # of ~3,500 documents: DataTrove takes ~0.06 s a document here
# doc_id -> (our reason, DataTrove's reason mapped to ours): the differences left, each explained.
# Both are our prompt-injection check, which runs before any preset's rules and is not one of
# DataTrove's filters: these two pages of the Python docs quote text addressed to a model.
KNOWN_DIFFERENCES: dict[str, tuple[str | None, str | None]] = {
    "pydoc-3.5-6": ("prompt_injection", "few_alphabetic_words"),
    "pydoc-xml.etree.elementtree-2": ("prompt_injection", "duplicate_5gram_chars_high"),
}


@pytest.fixture(scope="module")
def corpora() -> dict[str, list[dict[str, str]]]:
    pydoc = random.Random(18).sample(real_corpora.python_doc(), PYTHON_DOC_SAMPLE)
    return {"python3.11-doc": pydoc, "newspaper4k": real_corpora.newspaper_pages()}


def our_reasons(spark, docs: list[dict[str, str]], preset: str = "datatrove") -> dict[str, tuple[str | None, str | None]]:
    cfg = Config()
    cfg.filter.preset = preset
    cfg.filter.language.enabled = False  # DataTrove's four filters only, no LanguageFilter
    frame = spark.createDataFrame([Row(doc_id=d["id"], text=d["text"]) for d in docs])
    marked = filter_stage.filter_documents(frame, StageContext(cfg=cfg, run_id="r")).marked
    return {r["doc_id"]: (r[REASON], r[DETAIL]) for r in marked.select("doc_id", REASON, DETAIL).collect()}


def test_datatrove_preset_agrees_with_datatrove(spark, corpora):
    chain = datatrove_reference.filters()
    for source, docs in corpora.items():
        ours = our_reasons(spark, docs)
        theirs = {d["id"]: datatrove_reference.first_failure(d["text"], chain) for d in docs}
        theirs = {k: datatrove.DATATROVE_REASONS[v] if v else None for k, v in theirs.items()}
        differences = {k: (ours[k][0], theirs[k]) for k in theirs if ours[k][0] != theirs[k]}
        assert differences == {k: v for k, v in KNOWN_DIFFERENCES.items() if k in theirs}, source
        assert 1 - len(differences) / len(docs) >= 0.99, source
        # Real documents that both keep and both reject for several reasons: not a vacuous match.
        assert sum(v is None for v in theirs.values()) >= 5 and len(set(theirs.values())) >= 3, (source, set(theirs.values()))
        assert all(detail.startswith("preset=datatrove; ") for reason, detail in ours.values() if reason), source


def test_default_preset_records_itself(spark):
    docs = [{"id": "short", "text": "Too short to keep."}]
    ((reason, detail),) = our_reasons(spark, docs, preset="default").values()
    assert (reason, detail) == ("too_few_words", "preset=default; n_words=4.0, required >= 50")
