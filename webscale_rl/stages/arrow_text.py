"""Text of an Arrow batch as flat arrays: the words (or lines) of every document in one array, and
which document each belongs to. Both the filter's measures and the MinHash shingles start here, so
they split text the same way, in Arrow's C++ kernels rather than a Python loop over words.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Slices of a batch are cut at about this much text: the per-word arrays of a slice are ~10x its
# text, so memory stays flat however large Spark's Arrow batch is.
SLICE_BYTES = 8 << 20
_SPLITMIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def as_strings(texts) -> pa.Array:
    """An Arrow string array (nulls as "") from a pandas Series, a list or an Arrow array."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr, "")


def slices(texts: pa.Array, max_bytes: int | None = None) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of about max_bytes (SLICE_BYTES) of text each; a larger document is
    a slice of its own."""
    max_bytes = max_bytes or SLICE_BYTES
    sizes = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        if acc and acc + size > max_bytes:
            yield start, i
            start, acc = i, 0
        acc += size
    if start < len(sizes) or not len(sizes):
        yield start, len(sizes)


def split_words(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(words, doc_of): the whitespace-separated words of all documents in order, and the index of
    each word's document. Same words as Python's str.split()."""
    lists = pc.utf8_split_whitespace(texts)
    words = pc.list_flatten(lists)
    doc_of = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.binary_length(words), 0)  # leading/trailing whitespace gives ""
    return words.filter(nonempty), doc_of[nonempty.to_numpy(zero_copy_only=False)]


def split_lines(texts: pa.Array, pattern: str = "\n") -> tuple[pa.Array, np.ndarray]:
    """(lines, doc_of) split on a literal pattern, empty pieces kept (callers decide)."""
    lists = pc.split_pattern(texts, pattern)
    return pc.list_flatten(lists), pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: spreads small integer ids over 64 bits."""
    z = x.astype(np.uint64) + _SPLITMIX[0]
    z = (z ^ (z >> np.uint64(30))) * _SPLITMIX[1]
    z = (z ^ (z >> np.uint64(27))) * _SPLITMIX[2]
    return z ^ (z >> np.uint64(31))


def word_ids(words: pa.Array) -> np.ndarray:
    """Batch-local 64-bit ids: equal words get equal ids within this call (not across calls)."""
    codes = pc.dictionary_encode(words).indices.to_numpy(zero_copy_only=False)
    return mix64(codes)


def first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, counts, first): codes number the distinct keys in order of first appearance, counts[c]
    is how often code c occurs, first[i] is True where keys[i] occurs for the first time. Hashing,
    not sorting."""
    import pandas as pd

    codes, _ = pd.factorize(keys, sort=False)
    counts = np.bincount(codes)
    if codes.size == 0:
        return codes, counts, np.zeros(0, dtype=bool)
    # factorize numbers keys in order of appearance, so a first occurrence raises the running max.
    seen = np.maximum.accumulate(codes)
    first = np.empty(codes.size, dtype=bool)
    first[0] = True
    first[1:] = codes[1:] > seen[:-1]
    return codes, counts, first


def stable_word_hashes(words: pa.Array) -> np.ndarray:
    """64-bit hashes of words that are the same on every worker, batch and run (pandas' SipHash with
    its fixed key). Only the distinct words of the call are hashed in Python-object form."""
    import pandas as pd

    encoded = pc.dictionary_encode(words)
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    return pd.util.hash_array(distinct, categorize=False)[encoded.indices.to_numpy(zero_copy_only=False)]


def sha256_hex(texts: pa.Array) -> pa.Array:
    """SHA-256 hex digest of every value's UTF-8 bytes (null stays null), read straight from the
    Arrow buffers: no Python str per document."""
    import hashlib

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    wide = pa.types.is_large_string(texts.type) or pa.types.is_large_binary(texts.type)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64 if wide else np.int32)[texts.offset : texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    data = memoryview(data) if data is not None else memoryview(b"")
    valid = texts.is_valid().to_numpy(zero_copy_only=False)
    starts, stops = offsets[:-1].tolist(), offsets[1:].tolist()
    digests = [hashlib.sha256(data[lo:hi]).hexdigest() if ok else None for lo, hi, ok in zip(starts, stops, valid.tolist())]
    return pa.array(digests, type=pa.string())
