"""Every document statistic the heuristic filters judge, computed an Arrow batch at a time.

One pass per batch slice: Arrow's C++ kernels split words and lines and run the regular expressions
(RE2, linear time), numpy counts per document with `bincount`, and n-gram repetition is hashing of
word ids: no Python loop walks over words or lines; only the language identifier reads a document
as a Python string. (The same measures as Spark
column expressions ran 5x slower: higher-order functions over word arrays and a backtracking
Java regex.)

Definitions follow DataTrove's Gopher / C4 / FineWeb filters (words split on whitespace rather than
by spaCy):
- words: whitespace-separated; lines: split on newlines, trimmed, empty ones ignored (the
  line-ratio rules); the repetition rules split the stripped text on newlines (lines) or blank
  lines (paragraphs) without trimming each piece.
- `top_<n>gram_char_ratio` = characters of the most frequent n-gram (joined by spaces) times its
  count, over the document's characters; `duplicate_<n>gram_char_ratio` = characters of the words
  covered by a repeated occurrence of an n-gram (each word once, without spaces), over the
  document's characters; `duplicate_line_*`/`duplicate_paragraph_*` = repeated lines and
  paragraphs as a share of all of them and of the characters.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..injection import PROMPT_INJECTION
from . import arrow_text, langid

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
# Gopher / C4 / FineWeb document statistics (besides repetition).
TEXT_COLUMNS = (
    "n_words",
    "mean_word_length",
    "alpha_word_ratio",
    "symbol_word_ratio",
    "bullet_line_ratio",
    "ellipsis_line_ratio",
    "stop_words",
    "lorem_ipsum",
    "curly_brackets",
    "javascript_line_ratio",
    "policy_line_ratio",
    "punct_line_ratio",
    "short_line_ratio",
    "newline_word_ratio",
    "separator_word_ratio",
)
MEASURE_COLUMNS = TEXT_COLUMNS + REPETITION_COLUMNS
LANGUAGE_COLUMNS = ("language", "language_score")
INJECTION_COLUMN = "injection"  # the passage addressed to an LLM, "" when there is none

# Gopher's stop words: real prose uses at least a couple of them.
STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# C4's policy lines (cookie banners, terms of use).
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
SHORT_LINE_CHARS = 30

_LINE_PATTERNS = {
    "bullet_line_ratio": r"^[•‣●○▪◦*-]",
    "ellipsis_line_ratio": r"(\.\.\.|…)$",
    "javascript_line_ratio": r"(?i)javascript",
    "policy_line_ratio": "(?i)" + "|".join(re.escape(s) for s in POLICY_SUBSTRINGS),
    "punct_line_ratio": r"[.!?\"'”’:)]$",
}
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd constant: rolling n-gram hash h' = h * MIX + word
_DOC_SALT = np.uint64(0xC2B2AE3D27D4EB4F)


def _re2(pattern: str) -> str:
    """A Python/Java pattern for Arrow's RE2: groups made non-capturing (RE2 extraction wants only
    named groups), the rest of the syntax is shared."""
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)


_INJECTION_RE2 = _re2(PROMPT_INJECTION)


def _np(arr: pa.Array) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _per_doc(doc_of: np.ndarray, n_docs: int, weights=None) -> np.ndarray:
    return np.bincount(doc_of, weights=weights, minlength=n_docs).astype(np.float64)


def _text_measures(
    texts: pa.Array, words: pa.Array, word_doc: np.ndarray, lines: pa.Array, line_doc: np.ndarray, newlines: np.ndarray, out: dict[str, np.ndarray]
) -> None:
    n_docs = len(texts)
    n_words = _per_doc(word_doc, n_docs)
    safe_n = np.maximum(n_words, 1.0)
    word_len = _np(pc.utf8_length(words)).astype(np.float64)
    out["n_words"] = n_words
    out["mean_word_length"] = _per_doc(word_doc, n_docs, word_len) / safe_n
    out["alpha_word_ratio"] = _per_doc(word_doc[_np(pc.match_substring_regex(words, r"\pL"))], n_docs) / safe_n
    stop = _np(pc.is_in(pc.utf8_lower(words), value_set=pa.array(STOP_WORDS)))
    out["stop_words"] = _per_doc(word_doc[stop], n_docs)

    def count(pattern: str, regex: bool = True, ignore_case: bool = False) -> np.ndarray:
        fn = pc.count_substring_regex if regex else pc.count_substring
        return _np(fn(texts, pattern, ignore_case=ignore_case)).astype(np.float64)

    out["symbol_word_ratio"] = count(r"#|\.\.\.|…") / safe_n
    out["separator_word_ratio"] = count("[|»›•·]") / safe_n
    out["newline_word_ratio"] = newlines / safe_n
    out["lorem_ipsum"] = count("lorem ipsum", regex=False, ignore_case=True)
    out["curly_brackets"] = count("{", regex=False)

    lines = pc.utf8_trim_whitespace(lines)
    line_len = _np(pc.utf8_length(lines))
    present = line_len > 0
    lines, line_doc, line_len = lines.filter(pa.array(present)), line_doc[present], line_len[present]
    n_lines = np.maximum(_per_doc(line_doc, n_docs), 1.0)
    for name, pattern in _LINE_PATTERNS.items():
        out[name] = _per_doc(line_doc[_np(pc.match_substring_regex(lines, pattern))], n_docs) / n_lines
    out["short_line_ratio"] = _per_doc(line_doc[line_len < SHORT_LINE_CHARS], n_docs) / n_lines


def _duplicates(pieces: pa.Array, piece_doc: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per document: (number of pieces, repeated pieces, characters of the repeated pieces); every
    occurrence after the first counts."""
    present = _np(pc.binary_length(pieces)) > 0
    pieces, piece_doc = pieces.filter(pa.array(present)), piece_doc[present]
    keys = arrow_text.word_ids(pieces) ^ (piece_doc.astype(np.uint64) * _DOC_SALT)
    _, _, first = arrow_text.first_occurrences(keys)
    length = _np(pc.utf8_length(pieces)).astype(np.float64)
    repeated = ~first
    return _per_doc(piece_doc, n_docs), _per_doc(piece_doc[repeated], n_docs), _per_doc(piece_doc[repeated], n_docs, length[repeated])


def _line_repetition(stripped: pa.Array, lines: pa.Array, line_doc: np.ndarray, n_chars: np.ndarray, newlines: np.ndarray, out: dict[str, np.ndarray]) -> None:
    n_docs = len(stripped)
    n, dup, dup_chars = _duplicates(lines, line_doc, n_docs)
    out["duplicate_line_ratio"] = dup / np.maximum(n, 1)
    # As FineWeb: characters without the newlines.
    out["duplicate_line_char_ratio"] = dup_chars / np.maximum(n_chars - newlines, 1)
    paragraphs = pc.split_pattern_regex(stripped, r"\n{2,}")
    n, dup, dup_chars = _duplicates(pc.list_flatten(paragraphs), _np(pc.list_parent_indices(paragraphs)), n_docs)
    out["duplicate_paragraph_ratio"] = dup / np.maximum(n, 1)
    out["duplicate_paragraph_char_ratio"] = dup_chars / np.maximum(n_chars, 1)


def _ngram_repetition(n_chars: np.ndarray, words: pa.Array, doc_of: np.ndarray, out: dict[str, np.ndarray]) -> None:
    n_docs = len(n_chars)
    for n in TOP_NGRAMS:
        out[f"top_{n}gram_char_ratio"] = np.zeros(n_docs)
    for n in DUPLICATE_NGRAMS:
        out[f"duplicate_{n}gram_char_ratio"] = np.zeros(n_docs)
    n_words = len(words)
    if n_words == 0:
        return
    n_chars = np.maximum(n_chars, 1.0)
    counts = np.bincount(doc_of, minlength=n_docs)
    position = np.arange(n_words, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    remaining = counts[doc_of] - position  # words from here to the document's end
    word_len = _np(pc.utf8_length(words)).astype(np.int64)
    char_cum = np.concatenate(([0], np.cumsum(word_len)))
    word_hash = arrow_text.word_ids(words)
    salted = doc_of.astype(np.uint64) * _DOC_SALT

    ngram_hash = word_hash.copy()
    # A repeated n-gram's occurrences all start where an (n-1)-gram occurs twice or more, so for
    # the longer duplicate n-grams only those positions are hashed and counted.
    candidates = None
    for n in range(2, max(DUPLICATE_NGRAMS) + 1):
        # ngram_hash[i] covers words i .. i+n-1 wherever an n-gram starts at i.
        ngram_hash[: n_words - n + 1] = ngram_hash[: n_words - n + 1] * _MIX + word_hash[n - 1 :]
        starts = np.flatnonzero(remaining >= n) if candidates is None else candidates[remaining[candidates] >= n]
        if starts.size == 0:
            break
        codes, occurrences, first = arrow_text.first_occurrences(ngram_hash[starts] ^ salted[starts])
        if n in TOP_NGRAMS:
            # Most frequent n-gram of each document; ties go to the one seen first (Counter.most_common):
            # the first position whose n-gram has the document's highest count.
            occ = occurrences[codes]
            docs = doc_of[starts]
            doc_start = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            best = np.maximum.reduceat(occ, doc_start)
            at_best = np.flatnonzero(occ == np.repeat(best, np.diff(np.r_[doc_start, occ.size])))
            lead = at_best[np.r_[True, docs[at_best][1:] != docs[at_best][:-1]]]
            s = starts[lead]
            out[f"top_{n}gram_char_ratio"][docs[lead]] = (char_cum[s + n] - char_cum[s] + (n - 1)) * occ[lead] / n_chars[docs[lead]]
        if n in DUPLICATE_NGRAMS:
            repeated = starts[~first]
            cover = np.bincount(repeated, minlength=n_words + 1) - np.bincount(repeated + n, minlength=n_words + 1)
            covered = np.cumsum(cover)[:n_words] > 0
            out[f"duplicate_{n}gram_char_ratio"] = np.bincount(doc_of, weights=word_len * covered, minlength=n_docs) / n_chars
        if n >= min(DUPLICATE_NGRAMS) - 1:
            candidates = starts[occurrences[codes] > 1]


def injections(texts: pa.Array) -> list[str]:
    """The passage addressed to an LLM in each document ("" for none), found by RE2 (linear time;
    Python's `re` and Java's backtracking engine take ~100x longer over whole documents)."""
    hits = np.flatnonzero(_np(pc.match_substring_regex(texts, _INJECTION_RE2)))
    found = [""] * len(texts)
    if hits.size:
        passages = pc.struct_field(pc.extract_regex(texts.take(pa.array(hits)), f"(?P<m>{_INJECTION_RE2})"), [0])
        for i, passage in zip(hits, passages.to_pylist()):
            found[i] = " ".join(passage.split())
    return found


def measure_slice(texts: pa.Array) -> dict[str, np.ndarray | list]:
    out: dict[str, np.ndarray | list] = {}
    stripped = pc.utf8_trim_whitespace(texts)
    # Each split and count is made once and shared by the measures that read it.
    words, word_doc = arrow_text.split_words(texts)
    lines, line_doc = arrow_text.split_lines(stripped)
    n_chars = _np(pc.utf8_length(texts)).astype(np.float64)
    newlines = _np(pc.count_substring(texts, "\n")).astype(np.float64)
    _text_measures(texts, words, word_doc, lines, line_doc, newlines, out)
    _line_repetition(stripped, lines, line_doc, n_chars, newlines, out)
    _ngram_repetition(n_chars, words, word_doc, out)
    out[INJECTION_COLUMN] = injections(texts)
    return out


def document_measures(texts, language_max_chars: int | None = None) -> pd.DataFrame:
    """All filter measures of a batch (MEASURE_COLUMNS, INJECTION_COLUMN, and LANGUAGE_COLUMNS when
    `language_max_chars` is given), one row per document, in slices of bounded size."""
    arr = arrow_text.as_strings(texts)
    parts = [pd.DataFrame(measure_slice(arr.slice(lo, hi - lo))) for lo, hi in arrow_text.slices(arr)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*MEASURE_COLUMNS, INJECTION_COLUMN])
    if language_max_chars is not None:
        source = texts if isinstance(texts, pd.Series) else pd.Series(arr.to_pylist(), dtype=object)
        frame = pd.concat([frame, language_measures(source.reset_index(drop=True), language_max_chars)], axis=1)
    return frame


def repetition_measures(texts: pd.Series) -> pd.DataFrame:
    """The Gopher repetition measures alone (REPETITION_COLUMNS)."""
    return document_measures(texts)[list(REPETITION_COLUMNS)]


def language_measures(texts: pd.Series, max_chars: int) -> pd.DataFrame:
    """py3langid's language and probability of each document's first `max_chars` characters."""
    langs, scores = langid.classify(texts.fillna("").tolist(), max_chars)
    return pd.DataFrame({"language": langs, "language_score": scores})
