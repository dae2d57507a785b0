"""MinHash signatures and LSH bands of word n-gram shingles, an Arrow batch at a time.

Words of a whole batch are hashed at once (pandas' vectorised SipHash, fixed key: the same on every
worker and run), n-gram shingles are rolling combinations of word hashes cut to 32 bits, and the
permutations are universal hashes (a*x + b) mod (2^61 - 1) over numpy matrices. A document shorter
than n words is one shingle. Seeds fix the permutations, so signatures never depend on partitioning.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

MERSENNE_61 = np.uint64((1 << 61) - 1)
MAX_32 = np.uint64(0xFFFFFFFF)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_CHUNK_ROWS = 16_384  # shingles per matrix block: 16k x 112 permutations x 8 bytes ≈ 15 MB


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    a = rng.randint(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.randint(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


def shingle_sets(texts: pd.Series, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct 32-bit shingle hashes of every document: (values, offsets) with document i's
    shingles at values[offsets[i]:offsets[i+1]], sorted."""
    n_docs = len(texts)
    word_lists = texts.fillna("").str.split()
    counts = word_lists.str.len().to_numpy(dtype=np.int64)
    n_words = int(counts.sum())
    if n_words == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(n_docs + 1, dtype=np.int64)
    words = np.fromiter((w for ws in word_lists for w in ws), dtype=object, count=n_words)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    doc_start = np.cumsum(counts) - counts
    position = np.arange(n_words, dtype=np.int64) - doc_start[doc_of]
    word_hash = pd.util.hash_array(words, categorize=True)
    rolling = word_hash.copy()
    for k in range(2, n + 1):
        # rolling[i] covers words i .. i+k-1 (positions past a document's end are never read).
        rolling[: n_words - k + 1] = rolling[: n_words - k + 1] * _MIX + word_hash[k - 1 :]
    docs_parts, shingle_parts = [], []
    # Documents shorter than n words are one shingle of all their words (rare: a Python loop).
    short = np.flatnonzero((counts > 0) & (counts < n))
    if short.size:
        short_hash = [np.bitwise_xor.reduce(word_hash[doc_start[d] : doc_start[d] + counts[d]] * (np.arange(1, counts[d] + 1, dtype=np.uint64) * _MIX)) for d in short]
        docs_parts.append(short)
        shingle_parts.append(np.array(short_hash, dtype=np.uint64))
    starts = np.flatnonzero(position <= counts[doc_of] - n)
    docs_parts.append(doc_of[starts])
    shingle_parts.append(rolling[starts])
    docs = np.concatenate(docs_parts)
    shingles = (np.concatenate(shingle_parts) & MAX_32).astype(np.uint32)
    order = np.lexsort((shingles, docs))
    docs, shingles = docs[order], shingles[order]
    keep = np.r_[True, (docs[1:] != docs[:-1]) | (shingles[1:] != shingles[:-1])]
    docs, shingles = docs[keep], shingles[keep]
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.add.at(offsets, docs + 1, 1)
    return shingles, np.cumsum(offsets)


def signatures(shingles: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MinHash matrix (documents x permutations) of 32-bit values; documents without shingles get MAX_32."""
    n_docs = len(offsets) - 1
    out = np.full((n_docs, len(a)), MAX_32, dtype=np.uint64)
    if shingles.size == 0:
        return out
    doc_of = np.repeat(np.arange(n_docs), np.diff(offsets))
    for lo in range(0, shingles.size, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, shingles.size)
        x = shingles[lo:hi].astype(np.uint64)[:, None]
        hashed = ((x * a + b) % MERSENNE_61) & MAX_32
        docs = doc_of[lo:hi]
        # Rows of one document are contiguous: reduce each run, then merge with earlier chunks.
        run_starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        mins = np.minimum.reduceat(hashed, run_starts, axis=0)
        run_docs = docs[run_starts]
        out[run_docs] = np.minimum(out[run_docs], mins)
    return out


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per band (documents x bands), as signed int64 for Spark."""
    blocks = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    h = np.zeros(blocks.shape[:2], dtype=np.uint64)
    for j in range(rows):
        h = h * _MIX + blocks[:, :, j]
    return h.view(np.int64)


def signature_batches(batches: Iterator[pd.DataFrame], n: int, bands: int, rows: int, seed: int, with_shingles: bool, with_signature: bool):
    """mapInPandas body: (doc_id, norm_text) → doc_id, bands[, shingles][, signature]."""
    a, b = permutations(bands * rows, seed)
    for pdf in batches:
        shingles, offsets = shingle_sets(pdf["norm_text"], n)
        sig = signatures(shingles, offsets, a, b)
        has_shingles = np.diff(offsets) > 0
        out = pd.DataFrame({"doc_id": pdf["doc_id"].to_numpy()})
        band = band_hashes(sig, bands, rows)
        out["bands"] = [row if ok else None for row, ok in zip(band, has_shingles)]
        if with_shingles:
            as_int = shingles.view(np.int32)
            out["shingles"] = [as_int[offsets[i] : offsets[i + 1]] for i in range(len(pdf))]
        if with_signature:
            out["signature"] = list(sig.astype(np.int64))
        yield out
