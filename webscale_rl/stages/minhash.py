"""MinHash signatures and LSH bands of word n-gram shingles, an Arrow batch at a time.

Words of a whole batch are split in Arrow and hashed at once (pandas' SipHash of each distinct word,
fixed key: the same on every worker and run), n-gram shingles are rolling combinations of word
hashes cut to 32 bits, and the permutations are universal hashes (a*x + b) mod (2^61 - 1) over
numpy matrices. A document shorter than n words is one shingle. Seeds fix the permutations, so
signatures never depend on partitioning. `minhash_columns` returns Arrow list columns for Spark.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import arrow_text

MERSENNE_61 = np.uint64((1 << 61) - 1)
MAX_32 = np.uint64(0xFFFFFFFF)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_ROWS = 2_048  # shingles per matrix block: 2k x 112 permutations x 8 bytes ≈ 2 MB, near the CPU cache
_32, _61, _ONE = np.uint64(32), np.uint64(61), np.uint64(1)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    a = rng.randint(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.randint(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_sets(texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct 32-bit shingle hashes of every document (an Arrow string array, a pandas Series or
    a list; null as ""): (values, offsets) with document i's shingles at
    values[offsets[i]:offsets[i+1]], sorted. Words as str.split() gives them, split and hashed in
    Arrow (`arrow_text`), so only the distinct words of the call become Python objects."""
    texts = arrow_text.as_strings(texts)
    n_docs = len(texts)
    words, doc_of = arrow_text.split_words(texts)
    n_words = len(words)
    if n_words == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(n_docs + 1, dtype=np.int64)
    word_hash = arrow_text.stable_word_hashes(words)
    doc_of = doc_of.astype(np.int64)
    counts = np.bincount(doc_of, minlength=n_docs)
    doc_start = np.cumsum(counts) - counts
    position = np.arange(n_words, dtype=np.int64) - doc_start[doc_of]
    rolling = word_hash.copy()
    for k in range(2, min(n, n_words) + 1):  # (fewer words than n in the whole call: no n-gram)
        # rolling[i] covers words i .. i+k-1 (positions past a document's end are never read).
        rolling[: n_words - k + 1] = rolling[: n_words - k + 1] * _MIX + word_hash[k - 1 :]
    docs_parts, shingle_parts = [], []
    # Documents shorter than n words are one shingle of all their words (rare: a Python loop).
    short = np.flatnonzero((counts > 0) & (counts < n))
    if short.size:
        short_hash = [
            np.bitwise_xor.reduce(word_hash[doc_start[d] : doc_start[d] + counts[d]] * (np.arange(1, counts[d] + 1, dtype=np.uint64) * _MIX)) for d in short
        ]
        docs_parts.append(short)
        shingle_parts.append(np.array(short_hash, dtype=np.uint64))
    starts = np.flatnonzero(position <= counts[doc_of] - n)
    docs_parts.append(doc_of[starts])
    shingle_parts.append(rolling[starts])
    # One sort of (document << 32 | shingle) orders by document, then shingle; equal neighbours
    # are repeated shingles. (np.sort, not np.unique or lexsort: several times faster here.)
    keys = (np.concatenate(docs_parts).astype(np.uint64) << _32) | (np.concatenate(shingle_parts) & MAX_32)
    keys.sort()
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
    docs = (keys >> _32).astype(np.int64)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(docs, minlength=n_docs), out=offsets[1:])
    return (keys & MAX_32).astype(np.uint32), offsets


def signatures(shingles: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash matrix (documents x permutations) of 32-bit values; documents without shingles get MAX_32.
    Permutation k of shingle x: ((a[k] * x + b[k]) mod 2^64 mod (2^61 - 1)) & 0xFFFFFFFF."""
    n_docs = len(offsets) - 1
    out = np.full((n_docs, len(a)), MAX_32, dtype=np.uint64)
    if shingles.size == 0:
        return out
    doc_of = np.repeat(np.arange(n_docs), np.diff(offsets))
    # Two scratch blocks reused for every chunk (in-place ufuncs: no allocation per step).
    y = np.empty((min(_CHUNK_ROWS, shingles.size), len(a)), dtype=np.uint64)
    scratch = np.empty_like(y)
    for lo in range(0, shingles.size, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, shingles.size)
        hashed = _low32_mod_mersenne_61(shingles[lo:hi].astype(np.uint64)[:, None], a, b, y[: hi - lo], scratch[: hi - lo])
        docs = doc_of[lo:hi]
        # Rows of one document are contiguous: reduce each run, then merge with earlier chunks.
        run_starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        mins = np.minimum.reduceat(hashed, run_starts, axis=0)
        run_docs = docs[run_starts]
        out[run_docs] = np.minimum(out[run_docs], mins)
    return out


def _low32_mod_mersenne_61(x: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """((a * x + b) mod 2^64 mod (2^61 - 1)) & 0xFFFFFFFF as uint32, by shifts instead of a
    division (numpy's uint64 % is slow): with p = 2^61 - 1, y = hi * 2^61 + lo ≡ hi + lo = r < 2p;
    r - p (when r >= p) has the low 32 bits of r + 1, and r >= p exactly when (r + 1) >> 61 is 1."""
    np.multiply(x, a, out=y)
    y += b
    np.right_shift(y, _61, out=scratch)
    y &= MERSENNE_61
    y += scratch
    np.add(y, _ONE, out=scratch)
    scratch >>= _61
    y += scratch
    return y.astype(np.uint32)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per band (documents x bands), as signed int64 for Spark."""
    blocks = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    h = np.zeros(blocks.shape[:2], dtype=np.uint64)
    for j in range(rows):
        h = h * _MIX + blocks[:, :, j]
    return h.view(np.int64)


def minhash_columns(texts, n: int, bands: int, rows: int, a: np.ndarray, b: np.ndarray, with_shingles: bool, with_signature: bool) -> dict[str, pa.Array]:
    """Arrow list columns of a batch of (normalised) texts: "bands" (int64 band hashes; null for a
    document without shingles), and on request "shingles" (int32) and "signature" (int64). Built
    from flat numpy arrays and offsets: no Python list per row."""
    shingles, offsets = shingle_sets(texts, n)
    sig = signatures(shingles, offsets, a, b)
    n_docs = len(offsets) - 1
    no_shingles = pa.array(np.diff(offsets) == 0)
    out = {"bands": _fixed_lists(band_hashes(sig, bands, rows), no_shingles)}
    if with_shingles:
        out["shingles"] = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(shingles.view(np.int32)))
    if with_signature:
        out["signature"] = _fixed_lists(sig.astype(np.int64), None)
    assert all(len(col) == n_docs for col in out.values())
    return out


def _fixed_lists(matrix: np.ndarray, mask: pa.Array | None) -> pa.ListArray:
    """A list per matrix row (mask True → null)."""
    n_rows, width = matrix.shape
    offsets = pa.array(np.arange(0, (n_rows + 1) * width, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).reshape(-1)), mask=mask)
