"""py3langid's language identifier run on a whole batch at once.

py3langid walks a byte-level automaton over each document in a Python loop (~5 MB/s), which made
language ID the slowest filter measure. The walk is sequential within a document but independent
across documents, so here one numpy step advances every document of the batch by one byte; the
few long documents left when most have ended finish in a plain loop. The naive Bayes scoring is one
sparse matrix product. Same model, same encoding and same arithmetic as `LanguageIdentifier.classify`
(`tests/spark/test_filter_rules.py` compares them; probabilities agree to float32 rounding).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np

# Below this many documents still walking, a numpy step costs more than a Python loop over them.
_MIN_VECTOR_DOCS = 24


@lru_cache(maxsize=1)
def _model():
    # Loaded once per Python worker; the model is inside the py3langid wheel (no download).
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    nextmove = np.frombuffer(ident.tk_nextmove, dtype=np.uint32).astype(np.int64)
    rowbase = np.asarray(ident._rowbase, dtype=np.int64)
    output = np.asarray(ident.tk_output, dtype=np.int64)
    table = np.asarray(ident.nb_ptc, dtype=np.float32)
    return ident, nextmove, rowbase, output, table


def _encode(text: str, max_chars: int) -> bytes:
    # As LanguageIdentifier._encode.
    text = text[:max_chars]
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


def _feature_counts(encoded: list[bytes], nextmove, rowbase, output, n_features: int):
    """Sparse (documents x features) matrix of how often the automaton emits each feature."""
    from scipy import sparse

    n_docs = len(encoded)
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n_docs)
    flat = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n_docs else np.zeros(0, dtype=np.int64)
    emitted = np.full(flat.size, -1, dtype=np.int64)  # feature emitted after each byte, -1 for none
    order = np.argsort(-lengths, kind="stable")  # longest first: the walking documents are a prefix
    walking_starts, walking_lengths = starts[order], lengths[order]
    state = np.zeros(n_docs, dtype=np.int64)
    step = 0
    active = int(np.count_nonzero(walking_lengths > 0))
    while active >= _MIN_VECTOR_DOCS:
        at = walking_starts[:active] + step
        s = nextmove[rowbase[state[:active]] + flat[at]]
        state[:active] = s
        emitted[at] = output[s]
        step += 1
        while active and walking_lengths[active - 1] <= step:
            active -= 1
    if active:
        # py3langid's own arrays (array.array and lists) index fast in a Python loop.
        ident = _model()[0]
        nm, rb, out = ident.tk_nextmove, ident._rowbase, ident.tk_output
        for k in range(active):
            s, lo = int(state[k]), int(walking_starts[k])
            doc = encoded[int(order[k])]
            for offset in range(step, len(doc)):
                s = nm[rb[s] + doc[offset]]
                emitted[lo + offset] = out[s]
    doc_of = np.repeat(np.arange(n_docs), lengths)
    hit = emitted >= 0
    counts = sparse.csr_matrix((np.ones(int(hit.sum()), dtype=np.float32), (doc_of[hit], emitted[hit])), shape=(n_docs, n_features))
    counts.sum_duplicates()
    return counts, lengths


def classify(texts: list[str], max_chars: int) -> tuple[list[str], list[float]]:
    """(language, probability) of each text, exactly as py3langid's normalised `classify`."""
    ident, nextmove, rowbase, output, table = _model()
    if not texts:
        return [], []
    encoded = [_encode(t or "", max_chars) for t in texts]
    counts, lengths = _feature_counts(encoded, nextmove, rowbase, output, table.shape[0])
    counts.data = np.log1p(counts.data)
    scores = np.asarray(counts @ table, dtype=np.float32) + ident.nb_pc
    # A document without features scores 0 for every language (uniform: py3langid abstains).
    scores[np.diff(counts.indptr) == 0] = 0.0
    scores *= (1.0 / np.sqrt(np.maximum(lengths, 1))).astype(np.float32)[:, None]
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    scores /= scores.sum(axis=1, keepdims=True)
    for i, j in ident._alias_pairs:
        scores[:, i] += scores[:, j]
        scores[:, j] = 0.0
    best = scores.argmax(axis=1)
    return [ident.nb_classes[b] for b in best], scores[np.arange(len(texts)), best].astype(float).tolist()
