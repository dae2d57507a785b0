"""The Arrow-batch text helpers shared by the filter measures and MinHash."""

from __future__ import annotations

import numpy as np
import pandas as pd

from webscale_rl.stages import arrow_text, quality_rules


def test_words_are_python_split_words_with_their_documents():
    texts = ["  two  words\t", "", None, "non\u00a0breaking space", "x"]
    words, doc_of = arrow_text.split_words(arrow_text.as_strings(pd.Series(texts)))
    expected = [(i, w) for i, t in enumerate(texts) for w in (t or "").split()]
    assert list(zip(doc_of.tolist(), words.to_pylist())) == expected


def test_first_occurrences_by_hashing():
    codes, counts, first = arrow_text.first_occurrences(np.array([7, 3, 7, 9, 3, 7], dtype=np.uint64))
    assert codes.tolist() == [0, 1, 0, 2, 1, 0]
    assert counts.tolist() == [3, 2, 1]
    assert first.tolist() == [True, True, False, True, False, False]
    assert arrow_text.first_occurrences(np.zeros(0, dtype=np.uint64))[2].size == 0


def test_slices_bound_the_text_per_slice_and_cover_every_row():
    texts = arrow_text.as_strings(pd.Series(["a" * 5, "b" * 5, "c" * 20, "d", "e"]))
    assert list(arrow_text.slices(texts, max_bytes=10)) == [(0, 2), (2, 3), (3, 5)]
    assert list(arrow_text.slices(arrow_text.as_strings(pd.Series([], dtype=object)))) == [(0, 0)]


def test_measures_do_not_depend_on_how_a_batch_is_sliced(monkeypatch):
    rng = np.random.default_rng(3)
    vocab = np.array("the river of stone and a bridge over water in the town".split())
    texts = pd.Series([" ".join(rng.choice(vocab, rng.integers(0, 80))) + "\n" + "a line\na line" for _ in range(50)])
    whole = quality_rules.document_measures(texts)
    monkeypatch.setattr(arrow_text, "SLICE_BYTES", 300)
    sliced = quality_rules.document_measures(texts)
    pd.testing.assert_frame_equal(whole, sliced)
