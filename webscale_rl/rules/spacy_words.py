"""spaCy's blank English tokenizer (DataTrove's `split_into_words` for English) on an Arrow batch,
paying for each distinct whitespace-free chunk once.

spaCy splits text on whitespace first (Python's `str.isspace`) and tokenizes each chunk on its own
(prefixes, suffixes, infixes, exceptions: nothing crosses a space). So the tokens of a batch are
the tokens of its distinct chunks, repeated: the distinct chunks are tokenized in one call (joined
by single spaces, which spaCy absorbs) and every occurrence takes its chunk's tokens by numpy
gathers. Real text repeats most chunks ("the", "of", "="), so spaCy reads a fraction of the batch.
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Every character Python (and so spaCy) takes for whitespace, as an RE2 class body.
WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
WS_CLASS = "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE)


@lru_cache(maxsize=1)
def _nlp():
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "filter.preset 'datatrove' splits words as DataTrove does, with spaCy's blank English tokenizer: "
            "pip install 'webscale-rl[datatrove-preset]' (spacy)"
        ) from exc
    nlp = spacy.blank("en")
    # Lexical attributes (like_num, shape, ...) are computed for every new word and no split
    # depends on them: without them the tokenizer runs twice as fast and splits the same.
    nlp.vocab.lex_attr_getters = {}
    return nlp


@lru_cache(maxsize=1)
def sentence_punct_chars() -> frozenset[str]:
    from spacy.pipeline.sentencizer import Sentencizer

    return frozenset(Sentencizer.default_punct_chars)


def is_punct(text: str) -> bool:
    """spaCy's IS_PUNCT lexical attribute (every character in a Unicode P* category)."""
    return all(unicodedata.category(ch).startswith("P") for ch in text)


@dataclass
class Tokens:
    """Tokens of many chunk occurrences: `ids[i]` indexes `vocab` (token texts, unstripped),
    `chunk_of[i]` is the occurrence the token comes from."""

    ids: np.ndarray
    chunk_of: np.ndarray
    vocab: list[str]


def split_chunks(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(chunks, doc_of): the maximal runs of non-whitespace of every text, in order (str.split())."""
    lists = pc.split_pattern_regex(texts, f"[{WS_CLASS}]+")
    chunks = pc.list_flatten(lists)
    doc_of = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.binary_length(chunks), 0)
    return chunks.filter(nonempty), doc_of[nonempty.to_numpy(zero_copy_only=False)]


def _tokenize_distinct(distinct: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(token ids in order, number of tokens of each distinct chunk, vocab)."""
    if not distinct:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    joined = " ".join(distinct)
    starts = np.cumsum([0] + [len(c) + 1 for c in distinct[:-1]])
    vocab: dict[str, int] = {}
    nlp = _nlp()
    # Words seen in the zone are forgotten after it: memory stays flat over a long job.
    with nlp.memory_zone():
        doc = nlp.tokenizer(joined)
        ids = np.fromiter((vocab.setdefault(t.text, len(vocab)) for t in doc), dtype=np.int64, count=len(doc))
        offsets = np.fromiter((t.idx for t in doc), dtype=np.int64, count=len(doc))
    owner = np.searchsorted(starts, offsets, side="right") - 1
    return ids, np.bincount(owner, minlength=len(distinct)), list(vocab)


def tokenize(chunks: pa.Array) -> Tokens:
    """spaCy's tokens of every chunk occurrence in order (chunks hold no whitespace)."""
    encoded = pc.dictionary_encode(chunks)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids, n_tok, vocab = _tokenize_distinct(encoded.dictionary.to_pylist())
    first = np.concatenate(([0], np.cumsum(n_tok)[:-1])) if n_tok.size else n_tok
    counts = n_tok[codes]
    total = int(counts.sum())
    chunk_of = np.repeat(np.arange(codes.size), counts)
    # Position of each token within its occurrence, added to where its chunk's tokens start.
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return Tokens(ids[np.repeat(first[codes], counts) + within], chunk_of, vocab)
