"""The `datatrove` filter preset: DataTrove 0.10.1's GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter with their default parameters, in that order, as one
Arrow-batch pass (`measure_slice`) and a list of threshold rules (`RULES`).

Each measure is the quantity DataTrove compares, computed its way: words are spaCy's blank English
tokens (`spacy_words`); lines are `str.splitlines()` for Gopher quality and C4, `\\n+` pieces of the
raw text for Gopher repetition; the duplicate n-gram rule walks the words greedily as DataTrove's
`find_all_duplicate` (a repeat skips the n words it covers). C4 removes lines (no terminal
punctuation, under 3 words, javascript, policy) before counting sentences, and FineWeb judges that
cleaned text, so the FineWeb measures are taken on it. (The stage does not rewrite the text.)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..stages import arrow_text
from . import spacy_words
from .datatrove_chars import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from .spacy_words import WHITESPACE, WS_CLASS

PRESET = "datatrove"
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
SPLITLINES = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"
_SALT = np.uint64(0xC2B2AE3D27D4EB4F)
_MIX = np.uint64(0x9E3779B97F4A7C15)

# (rule name, measure, "min" | "max", threshold): DataTrove's defaults, in DataTrove's order.
RULES: tuple[tuple[str, str, str, float], ...] = (
    # GopherRepetitionFilter
    ("empty_text", "n_chars", "min", 1),
    ("duplicate_paragraphs_high", "dup_para_frac", "max", 0.3),
    ("duplicate_paragraph_chars_high", "dup_para_char_frac", "max", 0.2),
    ("duplicate_lines_high", "dup_line_frac", "max", 0.3),
    ("duplicate_line_chars_high", "dup_line_char_frac", "max", 0.2),
    ("top_2gram_chars_high", "top_2gram_char_frac", "max", 0.2),
    ("top_3gram_chars_high", "top_3gram_char_frac", "max", 0.18),
    ("top_4gram_chars_high", "top_4gram_char_frac", "max", 0.16),
    *((f"duplicate_{n}gram_chars_high", f"dup_{n}gram_char_frac", "max", t) for n, t in zip(range(5, 11), (0.15, 0.14, 0.13, 0.12, 0.11, 0.10))),
    # GopherQualityFilter
    ("too_few_words", "n_non_symbol_words", "min", 50),
    ("too_many_words", "n_non_symbol_words", "max", 100_000),
    ("mean_word_length_low", "mean_word_length", "min", 3),
    ("mean_word_length_high", "mean_word_length", "max", 10),
    ("hash_to_word_ratio_high", "hash_word_ratio", "max", 0.1),
    ("ellipsis_to_word_ratio_high", "ellipsis_word_ratio", "max", 0.1),
    ("bullet_lines_high", "bullet_line_ratio", "max", 0.9),
    ("ellipsis_lines_high", "ellipsis_line_ratio", "max", 0.3),
    ("few_alphabetic_words", "alpha_word_ratio", "min", 0.8),
    ("too_few_stop_words", "distinct_stop_words", "min", 2),
    # C4QualityFilter (lorem ipsum / a curly bracket on a line it keeps drops the page)
    ("lorem_ipsum", "c4_lorem_ipsum", "max", 0),
    ("curly_bracket", "c4_curly_bracket", "max", 0),
    ("too_few_sentences", "c4_sentences", "min", 5),
    # FineWebQualityFilter, on the lines C4 kept
    ("few_lines_end_in_punctuation", "fw_punct_line_ratio", "min", 0.12),
    ("short_line_ratio_high", "fw_short_line_ratio", "max", 0.67),
    ("fineweb_duplicate_line_chars_high", "fw_dup_line_char_ratio", "max", 0.01),
    ("newline_to_word_ratio_high", "fw_newline_word_ratio", "max", 0.3),
)
# n_words (DataTrove's words) is not a rule: the stage writes it on every row.
MEASURE_COLUMNS = (*dict.fromkeys(measure for _, measure, _, _ in RULES), "n_words")

# DataTrove's own reason for each rule (the agreement test maps DataTrove's answers through it).
DATATROVE_REASONS = dict(
    zip(
        ["empty", "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac", "top_2_gram", "top_3_gram", "top_4_gram"]
        + [f"duplicated_{n}_n_grams" for n in range(5, 11)]
        + ["gopher_short_doc", "gopher_long_doc", "gopher_below_avg_threshold", "gopher_above_avg_threshold", "gopher_too_many_hashes"]
        + ["gopher_too_many_ellipsis", "gopher_too_many_bullets", "gopher_too_many_end_ellipsis", "gopher_below_alpha_threshold"]
        + ["gopher_enough_stop_words", "lorem_ipsum", "curly_bracket", "too_few_sentences"]
        + ["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio"],
        [name for name, _, _, _ in RULES],
        strict=True,
    )
)


def _np(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _per_doc(doc_of: np.ndarray, n_docs: int, weights=None) -> np.ndarray:
    return np.bincount(doc_of, weights=weights, minlength=n_docs).astype(np.float64)


def _split(texts: pa.Array, pattern: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(pieces, doc_of, offsets) of a regex split, empty pieces kept."""
    lists = pc.split_pattern_regex(texts, pattern)
    return pc.list_flatten(lists), _np(pc.list_parent_indices(lists)), _np(lists.offsets)


def _splitlines(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Python's str.splitlines(): no empty piece after a final line break."""
    pieces, doc_of, offsets = _split(texts, SPLITLINES)
    last = offsets[1:] - 1
    drop = last[(np.diff(offsets) > 1) & (_np(pc.binary_length(pieces.take(pa.array(last)))) == 0)]
    keep = np.ones(len(pieces), dtype=bool)
    keep[drop] = False
    return pieces.filter(pa.array(keep)), doc_of[keep]


def _duplicates(pieces: pa.Array, doc_of: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DataTrove's find_duplicates per document: (pieces, repeated pieces, their characters)."""
    codes = _np(pc.dictionary_encode(pieces).indices).astype(np.uint64)
    _, _, first = arrow_text.first_occurrences(arrow_text.mix64(codes) ^ (doc_of.astype(np.uint64) * _SALT))
    rep = ~first
    length = _np(pc.utf8_length(pieces)).astype(np.float64)
    return _per_doc(doc_of, n_docs), _per_doc(doc_of[rep], n_docs), _per_doc(doc_of[rep], n_docs, length[rep])


def _repetition(texts: pa.Array, n_chars: np.ndarray, out: dict) -> None:
    n_docs, safe = len(texts), np.maximum(n_chars, 1)
    paras, para_doc, _ = _split(pc.utf8_trim(texts, WHITESPACE), r"\n{2,}")
    n, dup, dup_chars = _duplicates(paras, para_doc, n_docs)
    out["dup_para_frac"], out["dup_para_char_frac"] = dup / np.maximum(n, 1), dup_chars / safe
    lines, line_doc, _ = _split(texts, r"\n+")
    n, dup, dup_chars = _duplicates(lines, line_doc, n_docs)
    out["dup_line_frac"], out["dup_line_char_frac"] = dup / np.maximum(n, 1), dup_chars / safe


def _words(tokens: spacy_words.Tokens, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """DataTrove's words (tokens stripped, empty ones dropped): (vocab ids, owner of each, vocab)."""
    stripped = [t.strip() for t in tokens.vocab]
    keep = np.array([bool(t) for t in stripped], dtype=bool)[tokens.ids] if stripped else np.zeros(0, bool)
    return tokens.ids[keep], owner[tokens.chunk_of[keep]], stripped


def _top_ngrams(ids: np.ndarray, doc_of: np.ndarray, lengths: np.ndarray, n_docs: int, safe: np.ndarray, out: dict) -> None:
    """Characters of each document's most frequent n-gram (" "-joined) times its count; ties go to
    the n-gram seen first (Counter.most_common)."""
    counts = np.bincount(doc_of, minlength=n_docs)
    remaining = counts[doc_of] - (np.arange(ids.size) - np.repeat(np.cumsum(counts) - counts, counts))
    cum = np.concatenate(([0], np.cumsum(lengths)))
    h = arrow_text.mix64(ids)
    word_h = h.copy()
    for n in (2, 3, 4):
        out[f"top_{n}gram_char_frac"] = np.zeros(n_docs)
        h[: ids.size - n + 1] = h[: ids.size - n + 1] * _MIX + word_h[n - 1 :]
        starts = np.flatnonzero(remaining >= n)
        if starts.size == 0:
            continue
        codes, occ_of, _ = arrow_text.first_occurrences(h[starts] ^ (doc_of[starts].astype(np.uint64) * _SALT))
        occ, docs = occ_of[codes], doc_of[starts]
        doc_start = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        best = np.repeat(np.maximum.reduceat(occ, doc_start), np.diff(np.r_[doc_start, occ.size]))
        at_best = np.flatnonzero(occ == best)
        lead = at_best[np.r_[True, docs[at_best][1:] != docs[at_best][:-1]]]
        s = starts[lead]
        out[f"top_{n}gram_char_frac"][docs[lead]] = (cum[s + n] - cum[s] + n - 1) * occ[lead] / safe[docs[lead]]


def _dup_ngrams(ids: np.ndarray, doc_of: np.ndarray, lengths: np.ndarray, n_docs: int, safe: np.ndarray, out: dict) -> None:
    """DataTrove's find_all_duplicate: walk the n-grams; a repeat adds its characters ("".join) and
    skips n words, which are not remembered. Only n-grams occurring twice or more can be repeats, so
    the walk visits those positions alone (a Python loop over them)."""
    counts = np.bincount(doc_of, minlength=n_docs)
    remaining = counts[doc_of] - (np.arange(ids.size) - np.repeat(np.cumsum(counts) - counts, counts))
    cum = np.concatenate(([0], np.cumsum(lengths)))
    h = arrow_text.mix64(ids)
    word_h = h.copy()
    for n in range(2, 11):
        h[: ids.size - n + 1] = h[: ids.size - n + 1] * _MIX + word_h[n - 1 :]
        if n < 5:
            continue
        repeated = np.zeros(n_docs)
        starts = np.flatnonzero(remaining >= n)
        keys = h[starts] ^ (doc_of[starts].astype(np.uint64) * _SALT)
        codes, occ, _ = arrow_text.first_occurrences(keys)
        cands = starts[occ[codes] > 1] if starts.size else starts
        seen: set[int] = set()
        doc, skip_until = -1, -1
        for p, key in zip(cands.tolist(), h[cands].tolist()):
            if doc_of[p] != doc:
                doc, skip_until, seen = doc_of[p], -1, set()
            if p < skip_until:
                continue
            if key in seen:
                repeated[doc] += cum[p + n] - cum[p]
                skip_until = p + n
            else:
                seen.add(key)
        out[f"dup_{n}gram_char_frac"] = repeated / safe


def _quality(texts: pa.Array, words: np.ndarray, word_doc: np.ndarray, vocab: list[str], out: dict) -> None:
    """GopherQualityFilter's measures (words: vocab ids of DataTrove's words)."""
    n_docs = len(texts)
    non_symbol = np.array([any(c not in PUNCTUATION_SET for c in w) for w in vocab], dtype=bool)[words]
    alpha = np.array([any(c.isalpha() for c in w) for w in vocab], dtype=bool)[words]
    length = np.array([len(w) for w in vocab], dtype=np.float64)[words]
    n_words = np.maximum(_per_doc(word_doc, n_docs), 1)
    n_ns = _per_doc(word_doc[non_symbol], n_docs)
    out["n_non_symbol_words"] = n_ns
    out["mean_word_length"] = _per_doc(word_doc[non_symbol], n_docs, length[non_symbol]) / np.maximum(n_ns, 1)
    out["hash_word_ratio"] = _np(pc.count_substring(texts, "#")) / n_words
    out["ellipsis_word_ratio"] = (_np(pc.count_substring(texts, "...")) + _np(pc.count_substring(texts, "…"))) / n_words
    out["alpha_word_ratio"] = _per_doc(word_doc[alpha], n_docs) / n_words
    stop_ids = np.array([i for i, w in enumerate(vocab) if w in STOP_WORDS], dtype=np.int64)
    is_stop = np.isin(words, stop_ids)
    pairs = np.unique(word_doc[is_stop].astype(np.int64) * len(vocab) + words[is_stop])
    out["distinct_stop_words"] = _per_doc(pairs // max(len(vocab), 1), n_docs)
    lines, line_doc = _splitlines(texts)
    n_lines = np.maximum(_per_doc(line_doc, n_docs), 1)
    for name, pattern in (("bullet_line_ratio", f"^[{WS_CLASS}]*[•-]"), ("ellipsis_line_ratio", f"(?:\\.\\.\\.|…)[{WS_CLASS}]*$")):
        out[name] = _per_doc(line_doc[_np(pc.match_substring_regex(lines, pattern))], n_docs) / n_lines


def _c4_lines(texts: pa.Array, n_docs: int, out: dict) -> tuple[pa.Array, np.ndarray]:
    """C4QualityFilter's line walk: (the lines it keeps, their documents), and whether lorem ipsum or
    a curly bracket on a line it reaches drops the page (whichever comes first)."""
    lines, line_doc = _splitlines(texts)
    lines = pc.utf8_trim(lines, WHITESPACE)
    n_words = _np(pc.count_substring_regex(lines, f"[^{WS_CLASS}]+"))
    long_word = _np(pc.match_substring_regex(lines, f"[^{WS_CLASS}]{{1000}}[^{WS_CLASS}]"))
    lines = pc.replace_substring_regex(lines, r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]", "")
    ends = _np(pc.match_substring_regex(lines, "[.?!\"']$")) & ~_np(pc.ends_with(lines, "..."))
    reached = ~long_word & ends & (n_words >= 3)
    lorem = reached & _np(pc.match_substring(lines, "lorem ipsum", ignore_case=True))
    javascript = _np(pc.match_substring(lines, "javascript", ignore_case=True))
    curly = reached & ~lorem & ~javascript & _np(pc.match_substring(lines, "{"))
    policy = _np(pc.match_substring_regex(lines, "|".join(POLICY), ignore_case=True))
    stop = np.flatnonzero(lorem | curly)
    out["c4_lorem_ipsum"], out["c4_curly_bracket"] = np.zeros(n_docs), np.zeros(n_docs)
    dropped = np.zeros(n_docs, dtype=bool)
    if stop.size:
        first = stop[np.r_[True, line_doc[stop][1:] != line_doc[stop][:-1]]]
        out["c4_lorem_ipsum"][line_doc[first[lorem[first]]]] = 1
        out["c4_curly_bracket"][line_doc[first[curly[first]]]] = 1
        dropped[line_doc[first]] = True
    kept = reached & ~lorem & ~javascript & ~curly & ~policy & ~dropped[line_doc]
    return lines.filter(pa.array(kept)), line_doc[kept]


def _sentences_and_words(lines: pa.Array, line_doc: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per document: spaCy sentencizer sentences summed over its lines (C4 counts them line by line)
    and DataTrove's words of the lines joined by newlines (FineWeb's word count)."""
    chunks, chunk_line = spacy_words.split_chunks(lines)
    tokens = spacy_words.tokenize(chunks)
    # A whitespace run inside a line other than one space is a token of its own (spaCy keeps all
    # but a single space): a "word" for the sentencizer, which starts a sentence after a period.
    gaps, gap_line, gap_offsets = _split(lines, f"[^{WS_CLASS}]+")
    inner = np.ones(len(gaps), dtype=bool)
    inner[gap_offsets[:-1]] = inner[gap_offsets[1:] - 1] = False
    ws_token = _np(pc.not_equal(gaps, " ")) & inner & (_np(pc.binary_length(gaps)) > 0)
    # Token stream: each chunk's tokens, then the gap after it (chunk i of a line is followed by
    # its line's inner gap i).
    punct_chars = spacy_words.sentence_punct_chars()
    is_pc = np.array([t in punct_chars for t in tokens.vocab], dtype=bool)[tokens.ids]
    is_word = ~is_pc & ~np.array([spacy_words.is_punct(t) for t in tokens.vocab], dtype=bool)[tokens.ids]
    gap_of_chunk = ws_token[inner]  # one per chunk that is not the last of its line
    chunk_has_gap = np.ones(len(chunks), dtype=bool)
    last_chunk = np.r_[chunk_line[1:] != chunk_line[:-1], True]
    chunk_has_gap[last_chunk] = False
    gap_token = np.zeros(len(chunks), dtype=bool)
    gap_token[chunk_has_gap] = gap_of_chunk
    order = np.concatenate((tokens.chunk_of * 2, np.flatnonzero(gap_token) * 2 + 1))
    kind_pc = np.concatenate((is_pc, np.zeros(int(gap_token.sum()), dtype=bool)))[np.argsort(order, kind="stable")]
    kind_word = np.concatenate((is_word, np.ones(int(gap_token.sum()), dtype=bool)))[np.argsort(order, kind="stable")]
    line_of = np.sort(order) // 2
    line_of = chunk_line[line_of]
    seen = np.cumsum(kind_pc)
    words_at = np.flatnonzero(kind_word)
    line_start = np.r_[True, line_of[1:] != line_of[:-1]]
    # pc tokens since the previous word token of the same line (or the line's start)
    start_seen = np.maximum.accumulate(np.where(line_start, np.r_[0, seen[:-1]], 0))
    prev_word_seen = np.r_[0, seen[words_at][:-1]]
    same_line = np.r_[False, line_of[words_at][1:] == line_of[words_at][:-1]]
    before = np.where(same_line, prev_word_seen, start_seen[words_at])
    transitions = words_at[seen[words_at] - before > 0]
    sentences = np.bincount(line_of[transitions], minlength=len(lines)) + 1
    words, word_line, _ = _words(tokens, chunk_line)
    return _per_doc(line_doc, n_docs, sentences), _per_doc(line_doc[word_line], n_docs)


def _fineweb(lines: pa.Array, line_doc: np.ndarray, n_words: np.ndarray, n_docs: int, out: dict) -> None:
    """FineWebQualityFilter's measures of C4's output (its kept lines, stripped and not empty)."""
    n_lines = _per_doc(line_doc, n_docs)
    safe = np.maximum(n_lines, 1)
    ends = np.array([bool(s) and s[-1] in TERMINAL_PUNCTUATION for s in _np(pc.utf8_slice_codeunits(lines, -1)).tolist()], dtype=bool)
    length = _np(pc.utf8_length(lines)).astype(np.float64)
    out["fw_punct_line_ratio"] = _per_doc(line_doc[ends], n_docs) / safe
    out["fw_short_line_ratio"] = _per_doc(line_doc[length <= 30], n_docs) / safe
    _, _, dup_chars = _duplicates(lines, line_doc, n_docs)
    out["fw_dup_line_char_ratio"] = dup_chars / np.maximum(_per_doc(line_doc, n_docs, length), 1)
    out["fw_newline_word_ratio"] = np.maximum(n_lines - 1, 0) / np.maximum(n_words, 1)


def measure_slice(texts: pa.Array) -> dict[str, np.ndarray]:
    """Every measure of RULES for an Arrow slice of documents."""
    out: dict[str, np.ndarray] = {}
    n_docs = len(texts)
    n_chars = _np(pc.utf8_length(texts)).astype(np.float64)
    safe = np.maximum(n_chars, 1)
    out["n_chars"] = n_chars
    _repetition(texts, n_chars, out)
    chunks, chunk_doc = spacy_words.split_chunks(texts)
    words, word_doc, vocab = _words(spacy_words.tokenize(chunks), chunk_doc)
    out["n_words"] = _per_doc(word_doc, n_docs)
    lengths = np.array([len(w) for w in vocab], dtype=np.int64)[words]
    _top_ngrams(words, word_doc, lengths, n_docs, safe, out)
    _dup_ngrams(words, word_doc, lengths, n_docs, safe, out)
    _quality(texts, words, word_doc, vocab, out)
    kept, kept_doc = _c4_lines(texts, n_docs, out)
    out["c4_sentences"], fw_words = _sentences_and_words(kept, kept_doc, n_docs)
    _fineweb(kept, kept_doc, fw_words, n_docs, out)
    return {name: out[name] for name in MEASURE_COLUMNS}
