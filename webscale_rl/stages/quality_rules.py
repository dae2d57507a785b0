"""Document statistics for the heuristic filters that a Spark column expression cannot compute well:
Gopher repetition (duplicate lines and paragraphs, top and duplicate word n-grams) and the
language. They run on an Arrow batch at a time: words of the whole batch are hashed at once and
the n-gram counts are numpy sorts, so no Python loop walks over words.

Definitions follow DataTrove's GopherRepetitionFilter (words split on whitespace rather than by
spaCy): `top_<n>gram_char_ratio` = characters of the most frequent n-gram (joined by spaces) times
its count, over the document's characters; `duplicate_<n>gram_char_ratio` = characters of the words
covered by a repeated occurrence of an n-gram (each word once, without spaces), over the document's
characters; `duplicate_line_*`/`duplicate_paragraph_*` = repeated lines (split on newlines) and
paragraphs (split on blank lines) as a share of all of them and of the characters.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

TOP_NGRAMS = (2, 3, 4)
DUPLICATE_NGRAMS = (5, 6, 7, 8, 9, 10)
REPETITION_COLUMNS = (
    "duplicate_line_ratio",
    "duplicate_line_char_ratio",
    "duplicate_paragraph_ratio",
    "duplicate_paragraph_char_ratio",
    *(f"top_{n}gram_char_ratio" for n in TOP_NGRAMS),
    *(f"duplicate_{n}gram_char_ratio" for n in DUPLICATE_NGRAMS),
)
LANGUAGE_COLUMNS = ("language", "language_score")

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: rolling n-gram hash h' = h * MIX + word
_DOC_SALT = np.uint64(0xC2B2AE3D27D4EB4F)


def _duplicates(parts: list[str]) -> tuple[int, int]:
    """(number of repeated elements, their characters): every occurrence after the first counts."""
    distinct = set(parts)
    return len(parts) - len(distinct), sum(map(len, parts)) - sum(map(len, distinct))


def repetition_measures(texts: pd.Series) -> pd.DataFrame:
    n_docs = len(texts)
    out = {c: np.zeros(n_docs) for c in REPETITION_COLUMNS}
    if n_docs == 0:
        return pd.DataFrame(out)
    texts = texts.fillna("")
    n_chars = np.maximum(texts.str.len().to_numpy(dtype=np.float64), 1.0)
    for i, text in enumerate(texts):
        stripped = text.strip()
        lines = [ln for ln in _LINES.split(stripped) if ln]
        paragraphs = [p for p in _PARAGRAPHS.split(stripped) if p]
        dup_lines, dup_line_chars = _duplicates(lines)
        dup_paras, dup_para_chars = _duplicates(paragraphs)
        out["duplicate_line_ratio"][i] = dup_lines / max(len(lines), 1)
        # As FineWeb: characters without the newlines.
        out["duplicate_line_char_ratio"][i] = dup_line_chars / max(len(text) - text.count("\n"), 1)
        out["duplicate_paragraph_ratio"][i] = dup_paras / max(len(paragraphs), 1)
        out["duplicate_paragraph_char_ratio"][i] = dup_para_chars / max(len(text), 1)

    # Words of the whole batch in one array; doc_of[w] says which document word w belongs to.
    word_lists = texts.str.split()
    counts = word_lists.str.len().to_numpy(dtype=np.int64)
    n_words = int(counts.sum())
    if n_words == 0:
        return pd.DataFrame(out)
    words = np.fromiter((w for ws in word_lists for w in ws), dtype=object, count=n_words)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    position = np.arange(n_words, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    word_len = np.fromiter(map(len, words), dtype=np.int64, count=n_words)
    char_cum = np.concatenate(([0], np.cumsum(word_len)))
    word_hash = pd.util.hash_array(words, categorize=True)
    doc_hash = doc_of.astype(np.uint64) * _DOC_SALT

    ngram_hash = word_hash.copy()
    for n in range(2, max(DUPLICATE_NGRAMS) + 1):
        # ngram_hash[i] covers words i .. i+n-1; positions whose n-gram crosses a document end are invalid.
        ngram_hash[: n_words - n + 1] = ngram_hash[: n_words - n + 1] * _MIX + word_hash[n - 1 :]
        starts = np.flatnonzero(position <= (counts[doc_of] - n))
        if starts.size == 0:
            break
        keys = ngram_hash[starts] ^ doc_hash[starts]
        uniq, first, inverse, occurrences = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        if n in TOP_NGRAMS:
            first_start = starts[first]
            docs = doc_of[first_start]
            # Most frequent n-gram of each document; ties go to the one seen first (Counter.most_common).
            order = np.lexsort((first_start, -occurrences, docs))
            lead = order[np.r_[True, docs[order][1:] != docs[order][:-1]]]
            ngram_chars = char_cum[first_start[lead] + n] - char_cum[first_start[lead]] + (n - 1)
            top = np.zeros(n_docs)
            top[docs[lead]] = ngram_chars * occurrences[lead]
            out[f"top_{n}gram_char_ratio"] = top / n_chars
        if n in DUPLICATE_NGRAMS:
            repeated = starts[first[inverse] != np.arange(starts.size)]
            cover = np.bincount(repeated, minlength=n_words + 1) - np.bincount(repeated + n, minlength=n_words + 1)
            covered = np.cumsum(cover)[:n_words] > 0
            dup_chars = np.bincount(doc_of, weights=word_len * covered, minlength=n_docs)
            out[f"duplicate_{n}gram_char_ratio"] = dup_chars / n_chars
        del uniq
    return pd.DataFrame(out)


@lru_cache(maxsize=4)
def _identifier(languages: tuple[str, ...]):
    # Loaded once per Python worker; the model is inside the py3langid wheel (no download).
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def language_measures(texts: pd.Series, max_chars: int) -> pd.DataFrame:
    identifier = _identifier(())
    langs, scores = [], []
    for text in texts.fillna(""):
        lang, score = identifier.classify(text[:max_chars])
        langs.append(lang)
        scores.append(float(score))
    return pd.DataFrame({"language": langs, "language_score": scores})
